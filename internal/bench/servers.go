package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth/server"
)

// Both servers listen on 127.0.0.1, print their address once listening,
// and serve two endpoints of their own beside the WebSocket path:
//
//	GET  /bench/stats      memory and goroutines at rest, live connections
//	POST /bench/close-all  (reference server) CloseAll with 1008, and when
//
// They shut down when their stdin ends.

// wsPath is the WebSocket path of both servers (the reference server's
// default).
const wsPath = "/ws"

// serverStats is the answer of /bench/stats.
type serverStats struct {
	RSS        int64 `json:"rss"`
	Heap       int64 `json:"heap"`
	Goroutines int   `json:"goroutines"`
	Live       int64 `json:"live"`       // WebSockets open and authenticated
	Handshakes int64 `json:"handshakes"` // authenticated handshakes so far
	// CPU is the user plus system time the process has used, in
	// nanoseconds.
	CPU time.Duration `json:"cpu_ns"`
}

// closeAllAnswer is the answer of /bench/close-all: when CloseAll was
// called, as Unix nanoseconds (the wall clock is the one clock two
// processes share), and how many connections it closed.
type closeAllAnswer struct {
	At     int64 `json:"at"`
	Closed int   `json:"closed"`
}

// closeAllCode is the close code /bench/close-all sends: policy violation,
// which tells a client to authenticate again.
const closeAllCode = websocket.StatusPolicyViolation

// pprofEnv, set to a directory, makes every bench server serve
// net/http/pprof and write its address there.
const pprofEnv = "WSAUTH_BENCH_PPROF"

func serveRole(ctx context.Context, s spec, ctl *control, out *emitter) error {
	issuer, err := issuerFromEnv()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	var (
		hs       *http.Server
		stats    func() (live, handshakes int64)
		shutdown func()
	)
	switch s.Role {
	case roleRefServer:
		srv, err := server.New(server.Config{
			Verifier: issuer,
			Handler:  server.Echo(),
			// Generous limits: the bench measures memory and speed, not
			// refusals. No per-principal cap is the default.
			HandshakeRate:   -1,
			MaxPreAuthPerIP: -1,
			ReadLimit:       -1,
		})
		if err != nil {
			return err
		}
		lim, err := server.NewConnLimiter(server.ConnLimits{MaxPerIP: -1, MaxTotal: -1})
		if err != nil {
			return err
		}
		mux.Handle(wsPath, srv)
		mux.HandleFunc("POST /bench/close-all", func(w http.ResponseWriter, r *http.Request) {
			at := time.Now().UnixNano()
			n := srv.CloseAll(closeAllCode, "bench")
			writeJSON(w, closeAllAnswer{At: at, Closed: n})
		})
		hs = server.NewHTTPServer(mux, lim)
		stats = func() (int64, int64) { st := srv.Stats(); return st.Live, st.Authenticated }
		shutdown = func() { _ = srv.Close() }
	case roleRawServer:
		raw := newRawServer(issuer)
		mux.Handle(wsPath, raw)
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: server.DefaultReadHeaderTimeout}
		stats = func() (int64, int64) { return raw.live.Load(), raw.handshakes.Load() }
		shutdown = raw.closeAll
	}
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, r *http.Request) {
		// CPU first: the collection restingFootprint forces is the
		// bench's, not the server's.
		cpu := cpuTime()
		live, handshakes := stats()
		fp := restingFootprint()
		writeJSON(w, serverStats{RSS: fp.rss, Heap: fp.heap, Goroutines: fp.goroutines, Live: live, Handshakes: handshakes, CPU: cpu})
	})

	if os.Getenv(pprofEnv) != "" {
		// For finding where a server figure comes from: go tool pprof
		// http://ADDR/debug/pprof/heap, ADDR in the file DIR/ROLE.addr.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if dir := os.Getenv(pprofEnv); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, s.Role+".addr"), []byte(ln.Addr().String()), 0o644); err != nil {
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	out.emit(line{Kind: "ready", Addr: ln.Addr().String()})

	select {
	case <-ctx.Done(): // stdin ended: the parent is done with us
	case err := <-served:
		return err
	}
	// WebSockets first: Shutdown does not know hijacked connections.
	stopped := make(chan struct{})
	go func() {
		shutdown()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// rawServer is the baseline: a coder/websocket echo server that checks
// "Authorization: Bearer" against the same issuer before the upgrade, and
// does nothing else. Reads and writes carry no context, so coder arms no
// timer per frame; the connection's end ends them.
type rawServer struct {
	issuer           *server.HMACIssuer
	live, handshakes atomic.Int64

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}
}

func newRawServer(issuer *server.HMACIssuer) *rawServer {
	return &rawServer{issuer: issuer, conns: make(map[*websocket.Conn]struct{})}
}

func (s *rawServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		http.Error(w, "no credential", http.StatusUnauthorized)
		return
	}
	if _, err := s.issuer.Verify(r.Context(), tok); err != nil {
		http.Error(w, "bad credential", http.StatusUnauthorized)
		return
	}
	// Counted before the 101 goes out, so that a client that has its
	// connection is always counted.
	s.live.Add(1)
	defer s.live.Add(-1)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	ws.SetReadLimit(-1)
	s.mu.Lock()
	s.conns[ws] = struct{}{}
	s.mu.Unlock()
	s.handshakes.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.conns, ws)
		s.mu.Unlock()
		_ = ws.CloseNow()
	}()
	ctx := context.Background()
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return
		}
		if ws.Write(ctx, typ, data) != nil {
			return
		}
	}
}

// closeAll drops every connection, for shutdown.
func (s *rawServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ws := range s.conns {
		_ = ws.CloseNow()
	}
}

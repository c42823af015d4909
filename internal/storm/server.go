package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/wsauth/wsauth/server"
)

// The reference server runs in a child process, this same executable
// with a hidden subcommand, so that it can be killed and started again
// like the real thing: "storm _server ADDR". The child speaks JSON lines
// on stdout (ready, records, stopped, error) and takes commands on stdin
// ("report", "going_away": Server.GoingAway on every connection); SIGTERM or the end of stdin is a graceful stop, as
// `wsauth serve` does it: every WebSocket closed with 1001, then
// http.Server.Shutdown. SIGKILL is the abrupt one.

// serverArg is the hidden subcommand.
const serverArg = "_server"

// keyEnv carries the HMAC key, hex encoded, that the server verifies
// tokens with and the parent mints them with: a secret stays out of argv.
const keyEnv = "WSAUTH_STORM_KEY"

// isServerChild reports whether args (os.Args[1:]) ask for the server
// child.
func isServerChild(args []string) bool { return len(args) == 2 && args[0] == serverArg }

// msg is one JSON line of the server child.
type msg struct {
	Kind string `json:"kind"` // "ready", "records", "stopped", "error"
	// At is when the server was listening (ready) or had closed every
	// WebSocket (stopped), Unix nanoseconds: the wall clock is the one
	// clock two processes share.
	At      int64    `json:"at,omitempty"`
	Records *records `json:"records,omitempty"`
	// N is on how many connections the going_away notice was delivered.
	N   int    `json:"n,omitempty"`
	Err string `json:"err,omitempty"`
}

// records is what one server instance saw, times in Unix nanoseconds.
type records struct {
	// Tickets are the ticket-endpoint requests the server decided on,
	// granted or refused.
	Tickets []int64 `json:"tickets"`
	// TicketsRefused counts the refused ones among them.
	TicketsRefused int `json:"tickets_refused"`
	// Handshakes are the authenticated WebSocket handshakes.
	Handshakes []int64 `json:"handshakes"`
	// HandshakesRefused counts handshakes refused before or after the
	// upgrade (a 503 during shutdown, a bad ticket).
	HandshakesRefused int `json:"handshakes_refused"`
	// InvalidTickets counts handshakes closed 1008 "Invalid or expired
	// ticket": a ticket offered twice would be one.
	InvalidTickets int `json:"invalid_tickets"`
	// Issued and Consumed are the server's own ticket counters.
	Issued   int64 `json:"issued"`
	Consumed int64 `json:"consumed"`
}

// recorder collects records from Config.OnAuth, which runs on many
// goroutines at once.
type recorder struct {
	mu sync.Mutex
	r  records
}

func (rc *recorder) onAuth(ev server.AuthEvent) {
	at := ev.Time.UnixNano()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch ev.Stage {
	case server.StageTicket:
		rc.r.Tickets = append(rc.r.Tickets, at)
		if !ev.OK {
			rc.r.TicketsRefused++
		}
	case server.StageHandshake:
		switch {
		case ev.OK:
			rc.r.Handshakes = append(rc.r.Handshakes, at)
		case ev.Reason == server.ReasonInvalidTicket:
			rc.r.InvalidTickets++
			rc.r.HandshakesRefused++
		default:
			rc.r.HandshakesRefused++
		}
	}
}

func (rc *recorder) snapshot(st server.Stats) *records {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.r
	r.Tickets = append([]int64(nil), r.Tickets...)
	r.Handshakes = append([]int64(nil), r.Handshakes...)
	r.Issued, r.Consumed = st.TicketsIssued, st.TicketsConsumed
	return &r
}

// serverConfig is the reference server of the storm. The per-IP limits
// are opened: the storm measures how the reconnects are spread, not how
// the limits refuse them (docs/storm.md says what the defaults would do).
func serverConfig(v server.Verifier, onAuth func(server.AuthEvent)) server.Config {
	return server.Config{
		Verifier:        v,
		Handler:         server.Echo(),
		Methods:         []server.Method{server.MethodTicket},
		HandshakeRate:   -1,
		TicketRate:      -1,
		MaxPreAuthPerIP: -1,
		OnAuth:          onAuth,
	}
}

// runServerChild is the child process; it returns the exit code.
func runServerChild(addr string, stdin io.Reader, stdout io.Writer) int {
	var wmu sync.Mutex
	emit := func(m msg) {
		b, _ := json.Marshal(m)
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = stdout.Write(append(b, '\n'))
	}
	if err := serveChild(addr, stdin, emit); err != nil {
		emit(msg{Kind: "error", Err: err.Error()})
		return 1
	}
	return 0
}

func serveChild(addr string, stdin io.Reader, emit func(msg)) error {
	if _, err := raiseFileLimit(); err != nil {
		return fmt.Errorf("file limit: %w", err)
	}
	key, err := hex.DecodeString(os.Getenv(keyEnv))
	if err != nil || len(key) == 0 {
		return errors.New(keyEnv + " is not set to a hex key")
	}
	issuer, err := server.NewHMACIssuer(key)
	if err != nil {
		return err
	}
	rec := &recorder{}
	srv, err := server.New(serverConfig(issuer, rec.onAuth))
	if err != nil {
		return err
	}
	// No cap on TCP connections either: the defaults (100 per IP, 1000 in
	// all) would refuse most of the fleet.
	lim, err := server.NewConnLimiter(server.ConnLimits{MaxPerIP: -1, MaxTotal: -1})
	if err != nil {
		return err
	}
	hs := server.NewHTTPServer(srv, lim)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	emit(msg{Kind: "ready", At: time.Now().UnixNano()})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cmds := make(chan string)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
loop:
	for {
		select {
		case cmd := <-cmds:
			switch cmd {
			case "report":
				emit(msg{Kind: "records", Records: rec.snapshot(srv.Stats())})
			case "going_away":
				at := time.Now().UnixNano()
				emit(msg{Kind: "going_away", At: at, N: srv.GoingAway("storm")})
			}
		case <-gone:
			break loop
		case <-sigs:
			break loop
		case err := <-served:
			return err
		}
	}
	// As `wsauth serve`: the WebSockets first (1001), since Shutdown does
	// not know hijacked connections.
	_ = srv.Close()
	at := time.Now().UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	emit(msg{Kind: "stopped", At: at})
	return nil
}

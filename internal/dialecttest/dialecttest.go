// Package dialecttest runs loopback servers that speak the authentication
// protocols of real services, each written from the service's public
// protocol documentation, for the tests of the client's built-in dialects:
// Home Assistant's WebSocket API, graphql-ws (graphql-transport-ws),
// Centrifugo's JSON client protocol, and Slack Socket Mode with its
// apps.connections.open endpoint.
//
// Each server is an httptest server on 127.0.0.1 built on coder/websocket's
// Accept, stopped by t.Cleanup (WebSockets included: httptest does not
// close hijacked connections). They record what the tests assert on —
// connections, the tokens presented, keepalive answers — and have knobs to
// refuse, close with a given code and expire sessions. They do not import
// package wsauth: they are the other side of the wire.
package dialecttest

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// writeTimeout bounds the servers' own writes.
const writeTimeout = 5 * time.Second

// base is what every test server shares: the listener, the set of live
// WebSockets, the records, and a way to wait for a record to change.
type base struct {
	hs     *httptest.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	peers   map[*peer]struct{}
	conns   int      // upgrades
	authed  int      // authenticated connections
	tokens  []string // every credential presented, in order
	pongs   int      // keepalive answers received
	changed chan struct{}
}

// peer is one accepted WebSocket.
type peer struct {
	ws *websocket.Conn
	// wmu orders writes: a server that announces a connection before its
	// greeting is written holds wmu across both, so that nothing written
	// by a test that saw the announcement overtakes the greeting.
	wmu    sync.Mutex
	mu     sync.Mutex
	token  string
	authed bool
}

func (p *peer) setAuthed(token string) {
	p.mu.Lock()
	p.token, p.authed = token, true
	p.mu.Unlock()
}

func (p *peer) isAuthed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.authed
}

func (p *peer) write(ctx context.Context, msg []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.writeLocked(ctx, msg)
}

// writeLocked is write for a caller holding wmu.
func (p *peer) writeLocked(ctx context.Context, msg []byte) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return p.ws.Write(wctx, websocket.MessageText, msg)
}

// start serves h on 127.0.0.1 until the test ends.
func (b *base) start(t testing.TB, h http.Handler) {
	t.Helper()
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.peers = make(map[*peer]struct{})
	b.changed = make(chan struct{})
	b.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		b.wg.Add(1)
		b.mu.Unlock()
		defer b.wg.Done()
		h.ServeHTTP(w, r)
	}))
	b.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.hs.Start()
	t.Cleanup(b.Close)
}

// Close closes every WebSocket at once and the listener, and waits for
// the server's goroutines. It is called by t.Cleanup.
func (b *base) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	peers := b.snapshot(false)
	b.mu.Unlock()
	b.cancel()
	for _, p := range peers {
		_ = p.ws.CloseNow()
	}
	b.hs.Close()
	b.wg.Wait()
}

// HTTPURL is the server's base URL, http://127.0.0.1:port.
func (b *base) HTTPURL() string { return b.hs.URL }

func (b *base) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(b.hs.URL, "http") + path
}

// accept upgrades r and registers the WebSocket; the caller must call
// b.drop when it is done with it.
func (b *base) accept(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions) (*peer, bool) {
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		return nil, false
	}
	p := &peer{ws: ws}
	b.update(func() {
		b.peers[p] = struct{}{}
		b.conns++
	})
	return p, true
}

func (b *base) drop(p *peer) {
	_ = p.ws.CloseNow()
	b.update(func() { delete(b.peers, p) })
}

// update changes the records under the lock and wakes Await.
func (b *base) update(fn func()) {
	b.mu.Lock()
	fn()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *base) presented(token string) { b.update(func() { b.tokens = append(b.tokens, token) }) }

func (b *base) authenticated(p *peer, token string) {
	p.setAuthed(token)
	b.update(func() { b.authed++ })
}

func (b *base) ponged() { b.update(func() { b.pongs++ }) }

// snapshot lists the live peers; authedOnly keeps the authenticated ones.
// The caller holds b.mu.
func (b *base) snapshot(authedOnly bool) []*peer {
	out := make([]*peer, 0, len(b.peers))
	for p := range b.peers {
		if !authedOnly || p.isAuthed() {
			out = append(out, p)
		}
	}
	return out
}

func (b *base) authedPeers() []*peer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshot(true)
}

// Await waits until cond, checked after every change of the server's
// records, holds, or timeout passes; it reports whether cond held. cond
// must not call methods that wait.
func (b *base) Await(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return cond()
		}
	}
}

// Connections counts the WebSocket upgrades so far.
func (b *base) Connections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

// Authenticated counts the connections that authenticated so far.
func (b *base) Authenticated() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.authed
}

// Live counts the open WebSockets.
func (b *base) Live() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.peers)
}

// Tokens returns every credential presented so far, in order, accepted or
// not.
func (b *base) Tokens() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.tokens...)
}

// Pongs counts the answers to the server's protocol-level keepalives.
func (b *base) Pongs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pongs
}

// CloseAll closes every authenticated connection with code and reason and
// returns how many it closed.
func (b *base) CloseAll(code websocket.StatusCode, reason string) int {
	peers := b.authedPeers()
	for _, p := range peers {
		b.spawn(func() { _ = p.ws.Close(code, reason) })
	}
	return len(peers)
}

// spawn runs fn on a goroutine that Close waits for; after Close it does
// nothing.
func (b *base) spawn(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// PingAll sends a WebSocket ping to every authenticated connection and
// returns how many answered with a pong within timeout: the transport-level
// keepalive the services without one of their own rely on.
func (b *base) PingAll(timeout time.Duration) int {
	peers := b.authedPeers()
	var mu sync.Mutex
	var wg sync.WaitGroup
	answered := 0
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(b.ctx, timeout)
			defer cancel()
			if p.ws.Ping(ctx) == nil {
				mu.Lock()
				answered++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return answered
}

// allowList is a set of valid tokens.
type allowList struct {
	mu    sync.Mutex
	valid map[string]bool
}

func (a *allowList) Allow(tokens ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.valid == nil {
		a.valid = make(map[string]bool)
	}
	for _, t := range tokens {
		a.valid[t] = true
	}
}

func (a *allowList) Revoke(tokens ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range tokens {
		delete(a.valid, t)
	}
}

func (a *allowList) ok(token string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return token != "" && a.valid[token]
}

// readWithin reads one message; when none arrives within timeout (zero
// means no limit) the connection is closed with code and reason, the way a
// server enforces its authentication deadline. A read whose context ends
// would close the connection without a code (a coder/websocket rule), so
// the deadline is a timer, not a context.
func readWithin(ctx context.Context, ws *websocket.Conn, timeout time.Duration, code websocket.StatusCode, reason string) (websocket.MessageType, []byte, error) {
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { _ = ws.Close(code, reason) })
		defer t.Stop()
	}
	return ws.Read(ctx)
}

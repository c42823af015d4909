// Package testenv runs the reference server on loopback for the tests of
// the client and of the test kit: a real listener, a real HMAC issuer, a
// record of every authentication decision, and a restart on the same port.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/server"
)

// Env is a reference server on 127.0.0.1, stopped by t.Cleanup.
type Env struct {
	t      testing.TB
	Issuer *server.HMACIssuer
	cfg    server.Config

	mu     sync.Mutex
	srv    *server.Server
	hs     *httptest.Server
	addr   string
	tls    bool
	events []server.AuthEvent
}

// New starts a server with every pattern enabled, the App handler, a
// SessionTTL of an hour, generous rate limits, and password "pw" for users
// "alice" and "bob". mutate may change the configuration before start.
func New(t testing.TB, mutate func(*server.Config)) *Env {
	return start(t, false, mutate)
}

// NewTLS is New behind TLS with httptest's self-signed certificate.
func NewTLS(t testing.TB, mutate func(*server.Config)) *Env {
	return start(t, true, mutate)
}

func start(t testing.TB, useTLS bool, mutate func(*server.Config)) *Env {
	t.Helper()
	iss, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Issuer: iss, tls: useTLS}
	e.cfg = server.Config{
		Verifier:       iss,
		Issuer:         iss,
		Handler:        App(),
		Users:          map[string]string{"alice": "pw-alice-secret", "bob": "pw-bob-secret"},
		Clients:        map[string]string{"svc": "svc-client-secret"},
		Subprotocols:   []string{"chat.v1"},
		HandshakeRate:  -1,
		TicketRate:     -1,
		LoginRate:      -1,
		RefreshRate:    -1,
		TestControls:   true,
		AllowedOrigins: []string{"https://app.example.com"},
	}
	if mutate != nil {
		mutate(&e.cfg)
	}
	user := e.cfg.OnAuth
	e.cfg.OnAuth = func(ev server.AuthEvent) {
		e.mu.Lock()
		e.events = append(e.events, ev)
		e.mu.Unlock()
		if user != nil {
			user(ev)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.serve(ln)
	t.Cleanup(e.Stop)
	return e
}

func (e *Env) serve(ln net.Listener) {
	srv, err := server.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	// Failed TLS handshakes and the like are the tests' business.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.Listener.Close()
	hs.Listener = ln
	if e.tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	e.mu.Lock()
	e.srv, e.hs = srv, hs
	e.mu.Unlock()
}

// Stop closes every WebSocket (1001) and the listener. The port stays
// reserved for Start only by convention: nothing else on the machine
// should bind it in between.
func (e *Env) Stop() {
	e.mu.Lock()
	srv, hs := e.srv, e.hs
	e.srv, e.hs = nil, nil
	e.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	hs.Close()
}

// Start serves again on the same address, with a fresh server (empty
// ticket and session stores, same issuer). It retries the bind for a while:
// the old listener's port can take a moment to be free.
func (e *Env) Start() {
	e.t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", e.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a port, not synchronising goroutines
	}
	if err != nil {
		e.t.Fatalf("rebinding %s: %v", e.addr, err)
	}
	e.serve(ln)
}

// Server is the running server.
func (e *Env) Server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// Client is an HTTP client that trusts the server's certificate.
func (e *Env) Client() *http.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hs.Client()
}

// Addr is host:port.
func (e *Env) Addr() string { return e.addr }

// HTTPURL is the base URL, http:// or https://.
func (e *Env) HTTPURL() string {
	if e.tls {
		return "https://" + e.addr
	}
	return "http://" + e.addr
}

// WSURL is the WebSocket URL, ws:// or wss://.
func (e *Env) WSURL() string {
	return "ws" + strings.TrimPrefix(e.HTTPURL(), "http") + "/ws"
}

// TicketURL, LoginURL and TokenURL are the REST endpoints.
func (e *Env) TicketURL() string { return e.HTTPURL() + "/api/ws-ticket" }
func (e *Env) LoginURL() string  { return e.HTTPURL() + "/api/login" }
func (e *Env) TokenURL() string  { return e.HTTPURL() + "/oauth/token" }

// Token mints a token for sub valid for ttl.
func (e *Env) Token(sub string, ttl time.Duration) string {
	tok, err := e.Issuer.Issue(sub, ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// Minter is a token source that mints a new token on every call and
// remembers them all.
type Minter struct {
	env  *Env
	sub  string
	ttl  time.Duration
	fail atomic.Int32
	mu   sync.Mutex
	toks []string
}

// Minter returns a source of fresh tokens for sub.
func (e *Env) Minter(sub string, ttl time.Duration) *Minter {
	return &Minter{env: e, sub: sub, ttl: ttl}
}

// Token implements oauth2.TokenSource.
func (m *Minter) Token() (*oauth2.Token, error) {
	if m.fail.Load() > 0 {
		m.fail.Add(-1)
		return nil, fmt.Errorf("token source unavailable")
	}
	tok, err := m.env.Issuer.Issue(m.sub, m.ttl)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.toks = append(m.toks, tok)
	m.mu.Unlock()
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: time.Now().Add(m.ttl)}, nil
}

// FailNext makes the next n calls fail.
func (m *Minter) FailNext(n int) { m.fail.Store(int32(n)) }

// Minted returns every token handed out so far.
func (m *Minter) Minted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.toks...)
}

// AuthEvents returns every authentication decision so far.
func (e *Env) AuthEvents() []server.AuthEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]server.AuthEvent(nil), e.events...)
}

// Successes counts successful handshake-stage authentications.
func (e *Env) Successes() int {
	n := 0
	for _, ev := range e.AuthEvents() {
		if ev.OK && ev.Stage == server.StageHandshake {
			n++
		}
	}
	return n
}

// App is the test application: it echoes every message, except that
// "whoami" is answered with "<subject> <method>".
func App() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText && string(data) == "whoami" {
				p := c.Principal()
				data = []byte(p.Subject + " " + string(p.Method))
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	})
}

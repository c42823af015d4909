// Package wsauthtest runs the wsauth reference server for integration
// tests, the way net/http/httptest runs an HTTP server: a real listener on
// 127.0.0.1, closed by t.Cleanup, no mocks of the network.
//
// A Server enables every credential pattern, mints tokens that it accepts,
// knows demo users and an OAuth 2.0 client, records every authentication
// decision, and has the fault hooks a client's tests need: close every
// connection with a code, expire or revoke sessions, refuse handshakes,
// pause, send a going-away notice, stop and restart on the same port, and
// a fault proxy in front of it that adds latency, cuts, black-holes and
// stalls connections.
//
//	func TestBot(t *testing.T) {
//		srv := wsauthtest.NewServer(t)
//		c, err := wsauth.Dial(t.Context(), srv.URL(), &wsauth.Options{
//			Auth: &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource("alice", time.Hour)},
//		})
//		…
//		srv.CloseAll(websocket.StatusPolicyViolation, "Unauthorized") // the client must re-authenticate
//		…
//	}
//
// Wait on events, never on time: WaitAuthEvents on the server's side, the
// client's own events on the other. In particular a client may consider
// itself connected before the server has registered the connection (with
// the patterns that authenticate on the handshake, a client need not wait
// for the server's auth_ok), so a fault meant for that connection should
// follow WaitAuthEvents for its successful handshake, or a message's
// round trip.
//
// The package does not import the client (package wsauth): it works for a
// client of any kind, and the client's own tests use it.
package wsauthtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/internal/faultproxy"
	"github.com/wsauth/wsauth/server"
)

// Demo credentials and names every Server accepts.
const (
	// Alice is a user of the login endpoint, with password AlicePassword.
	Alice = "alice"
	// AlicePassword is Alice's password.
	AlicePassword = "pw-alice-secret"
	// Bob is a second user of the login endpoint, with password BobPassword.
	Bob = "bob"
	// BobPassword is Bob's password.
	BobPassword = "pw-bob-secret"
	// ClientID is the OAuth 2.0 client of the token endpoint
	// (client-credentials grant); its tokens have ClientID as their subject.
	ClientID = "svc"
	// ClientSecret is ClientID's secret.
	ClientSecret = "svc-client-secret"
	// Origin is the browser origin the server allows, besides requests
	// without an Origin header and same-host origins. Cookie clients send it.
	Origin = "https://app.example.com"
	// Subprotocol is the application subprotocol the server selects when a
	// client offers it.
	Subprotocol = "chat.v1"
)

// restartTimeout bounds how long Start keeps trying to bind the old port.
const restartTimeout = 10 * time.Second

// Server is the reference server on 127.0.0.1 for one test. Its methods are
// safe for concurrent use, also from goroutines other than the test's.
type Server struct {
	cfg    server.Config
	issuer *server.HMACIssuer
	useTLS bool
	addr   string
	cert   *x509.Certificate // nil without TLS
	client *http.Client

	// run serialises Start, Stop and the final close.
	run sync.Mutex

	mu      sync.Mutex
	srv     *server.Server
	hs      *httptest.Server
	closed  bool
	revoked map[string]bool
	past    server.Stats // counters of the instances stopped so far
	events  []server.AuthEvent
	newAuth chan struct{} // closed and replaced on every recorded AuthEvent
	proxy   *Proxy
}

// NewServer starts the reference server on 127.0.0.1 and closes it, with
// every WebSocket it serves, when the test ends. The server:
//
//   - enables every credential pattern (header, subprotocol, ticket, query,
//     cookie, first message) and serves the ticket, login, logout and token
//     endpoints at their default paths;
//   - verifies and mints HMAC tokens (Token, TokenSource, Issuer);
//   - accepts the users Alice and Bob (AlicePassword, BobPassword) at the
//     login endpoint and the client ClientID/ClientSecret at the token
//     endpoint;
//   - allows the browser origin Origin and selects the subprotocol
//     Subprotocol;
//   - keeps the reference server's defaults for the rest (one-hour
//     sessions, a 5s auth deadline, 30s tickets) except that its rate
//     limits are off, because a test dials many times from one address;
//   - mounts the fault hooks' HTTP endpoints under /control/;
//   - serves connections with server.Echo() unless WithHandler says
//     otherwise.
//
// WithConfig changes any of it. A configuration the server refuses fails
// the test at once.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var set settings
	for _, o := range opts {
		o(&set)
	}
	if set.handler == nil {
		set.handler = server.Echo()
	}
	iss, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		t.Fatalf("wsauthtest: %v", err)
	}
	cfg := server.Config{
		Verifier:       iss,
		Issuer:         iss,
		Handler:        set.handler,
		Users:          map[string]string{Alice: AlicePassword, Bob: BobPassword},
		Clients:        map[string]string{ClientID: ClientSecret},
		AllowedOrigins: []string{Origin},
		Subprotocols:   []string{Subprotocol},
		HandshakeRate:  -1,
		TicketRate:     -1,
		LoginRate:      -1,
		RefreshRate:    -1,
		TestControls:   true,
		// Stores made here outlive a restart, like a deployment's shared
		// stores do.
		TicketStore:   server.NewMemoryTicketStore(),
		SessionStore:  server.NewMemorySessionStore(),
		WSPath:        "/ws",
		TicketPath:    "/api/ws-ticket",
		LoginPath:     "/api/login",
		LogoutPath:    "/api/logout",
		TokenPath:     "/oauth/token",
		ControlPrefix: "/control/",
	}
	for _, hook := range set.hooks {
		hook(&cfg)
	}
	s := &Server{
		issuer:  iss,
		useTLS:  set.tls,
		revoked: make(map[string]bool),
		newAuth: make(chan struct{}),
	}
	userOnAuth := cfg.OnAuth
	cfg.OnAuth = func(ev server.AuthEvent) {
		s.record(ev)
		if userOnAuth != nil {
			userOnAuth(ev)
		}
	}
	s.cfg = cfg

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("wsauthtest: %v", err)
	}
	s.addr = ln.Addr().String()
	if err := s.serve(ln); err != nil {
		t.Fatalf("wsauthtest: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.TLSConfig()
	s.client = &http.Client{Transport: tr}
	t.Cleanup(s.close)
	return s
}

// serve starts a fresh reference server on ln.
func (s *Server) serve(ln net.Listener) error {
	srv, err := server.New(s.cfg)
	if err != nil {
		ln.Close()
		return err
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener.Close()
	hs.Listener = ln
	// Failed TLS handshakes and the like are what tests provoke; net/http's
	// log lines about them would be noise.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	// Revocations are in place before the first handshake, and Revoke and
	// Unrevoke (which take mu) cannot slip in between.
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.revoked {
		srv.Revoke(sub)
	}
	if s.useTLS {
		// httptest's certificate is the same on every start, so a client
		// that trusted the first one trusts the restarted server too.
		hs.StartTLS()
		if s.cert == nil {
			s.cert = hs.Certificate()
		}
	} else {
		hs.Start()
	}
	s.srv, s.hs = srv, hs
	return nil
}

// Stop takes the server down, as an outage would: every WebSocket is
// closed with 1001 "Server shutting down", the listener is closed, and
// connection attempts are refused until Start. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.run.Lock()
	defer s.run.Unlock()
	s.stop()
}

func (s *Server) stop() {
	s.mu.Lock()
	srv, hs := s.srv, s.hs
	s.srv, s.hs = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	hs.Close()
	st := srv.Stats()
	s.mu.Lock()
	s.past = addStats(s.past, st)
	s.mu.Unlock()
}

// Start brings a stopped server back on the same address with a new
// instance of the reference server. What a deployment keeps outside its
// processes survives: the issuer's key (tokens stay valid), the ticket and
// cookie-session stores, and revocations. What lives in the process does
// not: connections, rate-limit state, RefuseHandshakes and Pause. Starting
// a running server does nothing; after the test has ended Start returns an
// error.
//
// Start keeps trying to bind the port for up to 10s; the error says when
// it could not (something else took the port meanwhile).
func (s *Server) Start() error {
	s.run.Lock()
	defer s.run.Unlock()
	s.mu.Lock()
	closed, running := s.closed, s.srv != nil
	s.mu.Unlock()
	switch {
	case closed:
		return errors.New("wsauthtest: Start after the test ended")
	case running:
		return nil
	}
	ln, err := listenAgain(s.addr)
	if err != nil {
		return err
	}
	return s.serve(ln)
}

// listenAgain binds addr, retrying while the port is still taken.
func listenAgain(addr string) (net.Listener, error) {
	deadline := time.Now().Add(restartTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("wsauthtest: restarting on %s: %w", addr, err)
		}
		<-tick.C
	}
}

// Restart is Stop followed by Start.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// close is the test's cleanup.
func (s *Server) close() {
	s.run.Lock()
	defer s.run.Unlock()
	s.mu.Lock()
	s.closed = true
	px := s.proxy
	s.mu.Unlock()
	if px != nil {
		px.Close()
	}
	s.stop()
	s.client.CloseIdleConnections()
}

// current returns the running instance, nil while stopped.
func (s *Server) current() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Addr is the server's "127.0.0.1:port"; it stays the same across restarts.
func (s *Server) Addr() string { return s.addr }

// HTTPURL is the base URL of the endpoints, "http://127.0.0.1:port" (https
// with WithTLS), without a trailing slash.
func (s *Server) HTTPURL() string {
	if s.useTLS {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// URL is the WebSocket URL, "ws://127.0.0.1:port/ws" (wss with WithTLS).
func (s *Server) URL() string { return wsScheme(s.useTLS) + "://" + s.addr + s.cfg.WSPath }

// TicketURL is the ticket endpoint, for wsauth.TicketAuth.Endpoint.
func (s *Server) TicketURL() string { return s.HTTPURL() + s.cfg.TicketPath }

// LoginURL is the login endpoint, for wsauth.CookieAuth.LoginURL. It takes
// {"username":…,"password":…} (see Alice, Bob) or {"token":…}.
func (s *Server) LoginURL() string { return s.HTTPURL() + s.cfg.LoginPath }

// LogoutURL is the logout endpoint; it ends the cookie session and closes
// the connections it authenticated with 1008 "Logged out".
func (s *Server) LogoutURL() string { return s.HTTPURL() + s.cfg.LogoutPath }

// TokenURL is the OAuth 2.0 token endpoint (client-credentials grant), for
// clientcredentials.Config.TokenURL with ClientID and ClientSecret.
func (s *Server) TokenURL() string { return s.HTTPURL() + s.cfg.TokenPath }

func wsScheme(useTLS bool) string {
	if useTLS {
		return "wss"
	}
	return "ws"
}

// Client returns an HTTP client that trusts the server's certificate (a
// plain client without WithTLS). Its idle connections are closed when the
// test ends.
func (s *Server) Client() *http.Client { return s.client }

// TLSConfig returns a new TLS configuration whose root CAs hold only the
// server's certificate, for wsauth.Options.TLSConfig; nil without
// WithTLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Issuer is the HMAC issuer whose tokens the server accepts, for tokens
// Token cannot make (IssueWithExpiry).
func (s *Server) Issuer() *server.HMACIssuer { return s.issuer }

// Token mints a token for subject that expires ttl from now, in whole
// seconds rounded down. A ttl of zero or less gives a token that has
// already expired, which the server refuses. subject must not be empty.
func (s *Server) Token(subject string, ttl time.Duration) string {
	tok, _ := s.mint(subject, ttl)
	return tok
}

func (s *Server) mint(subject string, ttl time.Duration) (string, time.Time) {
	exp := time.Unix(time.Now().Add(ttl).Unix(), 0)
	tok, err := s.issuer.IssueWithExpiry(subject, exp)
	if err != nil {
		// Only an empty subject gets here.
		panic(fmt.Sprintf("wsauthtest: minting a token: %v", err))
	}
	return tok, exp
}

// TokenSource returns a token source that mints a new token for subject,
// valid for ttl, on every call, with its Expiry set. Clients cache tokens
// themselves; a source that always has a fresh one lets a test see when
// the client asks. subject must not be empty.
func (s *Server) TokenSource(subject string, ttl time.Duration) oauth2.TokenSource {
	return tokenSource(func() (*oauth2.Token, error) {
		tok, exp := s.mint(subject, ttl)
		return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: exp}, nil
	})
}

type tokenSource func() (*oauth2.Token, error)

func (f tokenSource) Token() (*oauth2.Token, error) { return f() }

// CloseAll closes every open WebSocket, authenticated or still
// authenticating, with code and reason, and returns how many. A 1008 tells
// a client to re-authenticate; 1001 or 1012 to reconnect.
func (s *Server) CloseAll(code websocket.StatusCode, reason string) int {
	if srv := s.current(); srv != nil {
		return srv.CloseAll(code, reason)
	}
	return 0
}

// ExpireSessions ends the sessions of subject ("" for everyone) now: their
// connections close with 1008 "Session expired". It returns how many.
func (s *Server) ExpireSessions(subject string) int {
	if srv := s.current(); srv != nil {
		return srv.ExpireSessions(subject)
	}
	return 0
}

// Revoke closes the connections of subject with 1008 "Revoked" and refuses
// its tokens, tickets, cookie sessions and logins until Unrevoke, also
// after a restart. It returns how many connections it closed.
func (s *Server) Revoke(subject string) int {
	s.mu.Lock()
	s.revoked[subject] = true
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		return srv.Revoke(subject)
	}
	return 0
}

// Unrevoke lifts Revoke.
func (s *Server) Unrevoke(subject string) {
	s.mu.Lock()
	delete(s.revoked, subject)
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Unrevoke(subject)
	}
}

// RefuseHandshakes answers the next n WebSocket handshakes with status
// before looking at them (429 and 503 with Retry-After: 1); n <= 0 cancels
// an earlier call.
func (s *Server) RefuseHandshakes(status, n int) {
	if srv := s.current(); srv != nil {
		srv.RefuseHandshakes(status, n)
	}
}

// Pause answers every WebSocket handshake with 503 and a Retry-After until
// d has passed, while open connections carry on; d <= 0 ends a pause.
func (s *Server) Pause(d time.Duration) {
	if srv := s.current(); srv != nil {
		srv.Pause(d)
	}
}

// GoingAway sends {"type":"going_away","reason":…} on every authenticated
// connection, the cue for a client to move to a new connection, and
// returns on how many it was delivered. The connections stay open.
func (s *Server) GoingAway(reason string) int {
	if srv := s.current(); srv != nil {
		return srv.GoingAway(reason)
	}
	return 0
}

// Stats returns the server's counters, summed over restarts; Live and
// Pending are those of the running instance.
func (s *Server) Stats() server.Stats {
	srv := s.current()
	s.mu.Lock()
	st := s.past
	s.mu.Unlock()
	if srv != nil {
		st = addStats(st, srv.Stats())
	}
	return st
}

func addStats(a, b server.Stats) server.Stats {
	return server.Stats{
		Handshakes:           a.Handshakes + b.Handshakes,
		Authenticated:        a.Authenticated + b.Authenticated,
		Refused:              a.Refused + b.Refused,
		Live:                 b.Live,
		Pending:              b.Pending,
		TicketsIssued:        a.TicketsIssued + b.TicketsIssued,
		TicketsConsumed:      a.TicketsConsumed + b.TicketsConsumed,
		Refreshes:            a.Refreshes + b.Refreshes,
		RefreshesRefused:     a.RefreshesRefused + b.RefreshesRefused,
		RefreshesRateLimited: a.RefreshesRateLimited + b.RefreshesRateLimited,
		LoginsOK:             a.LoginsOK + b.LoginsOK,
		LoginsFailed:         a.LoginsFailed + b.LoginsFailed,
		TokensIssued:         a.TokensIssued + b.TokensIssued,
	}
}

func (s *Server) record(ev server.AuthEvent) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	close(s.newAuth)
	s.newAuth = make(chan struct{})
	s.mu.Unlock()
}

// AuthEvents returns every authentication decision so far, successes and
// refusals, in order: handshakes, refreshes, and the ticket, login and
// token endpoints. They never carry a credential.
func (s *Server) AuthEvents() []server.AuthEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]server.AuthEvent(nil), s.events...)
}

// WaitAuthEvents waits until n authentication decisions, counted from the
// server's start, satisfy match, and returns them in order; or it returns
// ctx's error if ctx ends first. Tests wait on it instead of sleeping: for
// example, for the second successful handshake after a forced
// re-authentication.
func (s *Server) WaitAuthEvents(ctx context.Context, n int, match func(server.AuthEvent) bool) ([]server.AuthEvent, error) {
	var found []server.AuthEvent
	seen := 0
	for {
		s.mu.Lock()
		events, wake := s.events[seen:], s.newAuth
		s.mu.Unlock()
		for _, ev := range events {
			if len(found) < n && match(ev) {
				found = append(found, ev)
			}
		}
		seen += len(events)
		if len(found) >= n {
			return found, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return found, fmt.Errorf("wsauthtest: %d of %d matching auth events: %w", len(found), n, ctx.Err())
		}
	}
}

// Proxy returns the fault proxy in front of the server, starting it on
// first use; every call returns the same one. Clients that dial
// Proxy().URL() go through it, so that a test can add latency, cut,
// black-hole or stall their connections. It is closed when the test ends.
func (s *Server) Proxy() *Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		panic("wsauthtest: Proxy called after the test ended")
	}
	if s.proxy == nil {
		p, err := faultproxy.New(s.addr)
		if err != nil {
			// Only a failure to listen on loopback gets here.
			panic(fmt.Sprintf("wsauthtest: starting the proxy: %v", err))
		}
		s.proxy = &Proxy{p: p, useTLS: s.useTLS, wsPath: s.cfg.WSPath}
	}
	return s.proxy
}

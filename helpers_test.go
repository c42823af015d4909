package wsauth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// requireLong skips a long soak or fleet test unless WSAUTH_LONG=1, which
// the soak step of .ci/run sets.
func requireLong(t *testing.T) {
	t.Helper()
	if os.Getenv("WSAUTH_LONG") != "1" {
		t.Skip("long test: set WSAUTH_LONG=1 to run it (.ci/run's soak step does)")
	}
}

// waitLong bounds every wait on an event: CI is a busy two-core machine,
// and a wait that times out is a failure, never a sleep.
const waitLong = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
	t.Cleanup(cancel)
	return ctx
}

// recorder collects a client's events and lets a test wait for one.
type recorder struct {
	mu     sync.Mutex
	events []Event
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) count(kind EventKind) int {
	n := 0
	for _, e := range r.all() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// waitFor waits until the n-th event (counting from 1) matching pred has
// been seen, and returns it.
func (r *recorder) waitFor(t *testing.T, n int, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		seen := 0
		for _, e := range r.all() {
			if pred(e) {
				seen++
				if seen == n {
					return e
				}
			}
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for event; have: %v", r.all())
		}
	}
}

func kind(k EventKind) func(Event) bool { return func(e Event) bool { return e.Kind == k } }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func debugLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newServer starts the reference server with the test application (app)
// through wsauthtest, as any user of the kit would; later options may
// replace the handler.
func newServer(t *testing.T, opts ...wsauthtest.Option) *wsauthtest.Server {
	t.Helper()
	return wsauthtest.NewServer(t, append([]wsauthtest.Option{wsauthtest.WithHandler(app())}, opts...)...)
}

// withConfig is wsauthtest.WithConfig, shorter.
func withConfig(fn func(*server.Config)) wsauthtest.Option { return wsauthtest.WithConfig(fn) }

// app is the test application: it echoes every message, except that
// "whoami" is answered with "<subject> <method>".
func app() server.Handler {
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

// loginBody is the login endpoint's JSON body for a demo user.
func loginBody(user, password string) []byte {
	return []byte(`{"username":"` + user + `","password":"` + password + `"}`)
}

// minter wraps the server's token source: it remembers every token handed
// out and can fail on demand.
type minter struct {
	src  oauth2.TokenSource
	fail atomic.Int32
	mu   sync.Mutex
	toks []string
}

func newMinter(srv *wsauthtest.Server, sub string, ttl time.Duration) *minter {
	return &minter{src: srv.TokenSource(sub, ttl)}
}

// Token implements oauth2.TokenSource.
func (m *minter) Token() (*oauth2.Token, error) {
	if m.fail.Load() > 0 {
		m.fail.Add(-1)
		return nil, errors.New("token source unavailable")
	}
	tok, err := m.src.Token()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.toks = append(m.toks, tok.AccessToken)
	m.mu.Unlock()
	return tok, nil
}

// failNext makes the next n calls fail.
func (m *minter) failNext(n int) { m.fail.Store(int32(n)) }

// minted returns every token handed out so far.
func (m *minter) minted() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.toks...)
}

// successes counts successful handshake-stage authentications.
func successes(srv *wsauthtest.Server) int {
	n := 0
	for _, ev := range srv.AuthEvents() {
		if ev.OK && ev.Stage == server.StageHandshake {
			n++
		}
	}
	return n
}

// dialed connects a client and closes it at the end of the test.
func dialed(t *testing.T, srv *wsauthtest.Server, o *Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), srv.URL(), o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends msg and expects it back.
func echo(t *testing.T, c *Client, msg string) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.SendText(ctx, msg))
	typ, data, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, MessageText, typ)
	require.Equal(t, msg, string(data))
}

// ask sends a text message and returns the answer.
func ask(t *testing.T, c *Client, msg string) string {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.SendText(ctx, msg))
	_, data, err := c.Receive(ctx)
	require.NoError(t, err)
	return string(data)
}

// waitDone waits for the client to stop on its own.
func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatalf("client did not stop; state %s", c.State())
	}
}

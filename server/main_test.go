package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests; generous, because CI is a busy 2-core machine.
const waitLimit = 15 * time.Second

// env is a reference server on loopback with an issuer and a handler that counts its calls.
type env struct {
	srv    *Server
	hs     *httptest.Server
	issuer *HMACIssuer
	calls  atomic.Int64
	conns  chan *Conn // every connection the handler was called with
}

type envOption func(*Config)

// newEnv starts a server whose handler records each connection and then echoes. Rate limits
// are off unless an option turns them on, because tests dial many times from one IP.
func newEnv(t *testing.T, opts ...envOption) *env {
	return startEnv(t, false, opts...)
}

func startEnv(t *testing.T, tls bool, opts ...envOption) *env {
	t.Helper()
	issuer, err := NewHMACIssuer(RandomKey())
	require.NoError(t, err)
	e := &env{issuer: issuer, conns: make(chan *Conn, 128)}
	cfg := Config{
		Verifier: issuer,
		Issuer:   issuer,
		Handler: HandlerFunc(func(ctx context.Context, c *Conn) {
			e.calls.Add(1)
			select {
			case e.conns <- c:
			default:
			}
			Echo().ServeWS(ctx, c)
		}),
		HandshakeRate: -1,
		TicketRate:    -1,
		LoginRate:     -1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.srv, err = New(cfg)
	require.NoError(t, err)
	e.hs = httptest.NewUnstartedServer(e.srv)
	// net/http's own log (TLS handshake errors of the client without the certificate, the
	// recovered panic of a handler) is noise here; tests assert on behaviour.
	e.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		e.hs.StartTLS()
	} else {
		e.hs.Start()
	}
	// Cleanups run last-registered first: the WebSockets close before the listener does.
	t.Cleanup(e.hs.Close)
	t.Cleanup(func() { require.NoError(t, e.srv.Close()) })
	return e
}

// token mints a one-hour token for subject.
func (e *env) token(t *testing.T, subject string) string {
	t.Helper()
	tok, err := e.issuer.Issue(subject, time.Hour)
	require.NoError(t, err)
	return tok
}

// wsURL is the WebSocket URL with an optional query ("?ticket=…").
func (e *env) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(e.hs.URL, "http") + "/ws" + query
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a raw coder/websocket client connection; it is closed at the end of the test.
func (e *env) dial(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = e.hs.Client()
	c, resp, err := websocket.Dial(ctxT(t), url, opts)
	if c != nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, resp, err
}

// mustDial dials and requires the upgrade to succeed.
func (e *env) mustDial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, _, err := e.dial(t, url, opts)
	require.NoError(t, err)
	return c
}

// mustDialAuthed dials with a credential on the handshake (header, subprotocol, ticket, query
// or cookie), requires the upgrade and the auth_ok that every successful authentication
// starts with, and returns the connection ready for application traffic.
func (e *env) mustDialAuthed(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c := e.mustDial(t, url, opts)
	authOK(t, c)
	return c
}

// dialRefused dials and requires the handshake to be refused with status.
func (e *env) dialRefused(t *testing.T, url string, opts *websocket.DialOptions, status int) *http.Response {
	t.Helper()
	c, resp, err := e.dial(t, url, opts)
	require.Error(t, err)
	require.Nil(t, c)
	require.NotNil(t, resp)
	require.Equal(t, status, resp.StatusCode)
	return resp
}

// headerOpts sends the token in an Authorization header.
func headerOpts(token string) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}}
}

// k8sProtocol is the Kubernetes bearer subprotocol entry for token.
func k8sProtocol(token string) string {
	return "base64url.bearer.authorization.k8s.io." + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// nextConn waits for the handler's next connection.
func (e *env) nextConn(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-e.conns:
		return c
	case <-time.After(waitLimit):
		t.Fatal("handler was not called")
		return nil
	}
}

// expectClose reads until the connection ends and returns the close frame the server sent.
func expectClose(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx := ctxT(t)
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
		return ce
	}
}

// requireRefused expects the connection's first frame to be a close with code and reason: a
// refused connection gets no message at all, auth_ok least of all.
func requireRefused(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	typ, data, err := c.Read(ctxT(t))
	require.Error(t, err, "a refused connection got a %v message %q before its close", typ, data)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	require.Equal(t, code, ce.Code, "close reason %q", ce.Reason)
	require.Equal(t, reason, ce.Reason)
}

// requireClose expects a close with code and reason.
func requireClose(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	ce := expectClose(t, c)
	require.Equal(t, code, ce.Code, "close reason %q", ce.Reason)
	require.Equal(t, reason, ce.Reason)
}

// msg is a decoded server message.
type msg struct {
	Type      string   `json:"type"`
	ExpiresIn *float64 `json:"expires_in"`
	Reason    string   `json:"reason"`
}

// readMsg reads the next message and decodes it as a server message.
func readMsg(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	typ, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	var m msg
	require.NoError(t, json.Unmarshal(data, &m), "message %q", data)
	return m
}

// writeJSONMsg sends v as a JSON text message.
func writeJSONMsg(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, data))
}

// echo sends text and requires it back: the connection is authenticated and served.
func echo(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte(text)))
	typ, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	require.Equal(t, text, string(data))
}

// authOK reads the next message and requires it to be auth_ok, which the server sends after
// every successful authentication, whatever the pattern, before the handler sees the
// connection. It returns the message.
func authOK(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	m := readMsg(t, c)
	require.Equal(t, "auth_ok", m.Type, "the first message after authentication is auth_ok")
	return m
}

// firstMessageAuth sends the auth message and requires auth_ok.
func firstMessageAuth(t *testing.T, c *websocket.Conn, token string) msg {
	t.Helper()
	writeJSONMsg(t, c, map[string]string{"type": "auth", "token": token})
	return authOK(t, c)
}

// post sends a request to the server and returns the response with its body read.
func (e *env) post(t *testing.T, path, contentType string, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, e.hs.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// ticket asks the ticket endpoint for a ticket with token.
func (e *env) ticket(t *testing.T, token string) string {
	t.Helper()
	resp, body := e.post(t, e.srv.cfg.TicketPath, "", "", http.Header{"Authorization": {"Bearer " + token}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
	var tr struct {
		Ticket    string  `json:"ticket"`
		ExpiresIn float64 `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal(body, &tr))
	require.Len(t, tr.Ticket, 43)
	return tr.Ticket
}

// login starts a cookie session with token and returns the cookie.
func (e *env) login(t *testing.T, body string) (*http.Response, *http.Cookie) {
	t.Helper()
	resp, _ := e.post(t, e.srv.cfg.LoginPath, "application/json", body, nil)
	for _, ck := range resp.Cookies() {
		if ck.Name == e.srv.cfg.CookieName {
			return resp, ck
		}
	}
	return resp, nil
}

// cookieOpts sends the session cookie on the handshake, with the server's own origin as a
// browser page served by it would: the server refuses cookies without an Origin.
func (e *env) cookieOpts(ck *http.Cookie) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{
		"Cookie": {ck.Name + "=" + ck.Value},
		"Origin": {e.hs.URL},
	}}
}

// bareCookieOpts sends the session cookie without an Origin, as a non-browser client might.
func bareCookieOpts(ck *http.Cookie) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {ck.Name + "=" + ck.Value}}}
}

// eventLog collects AuthEvents.
type eventLog struct {
	mu     sync.Mutex
	events []AuthEvent
}

func (l *eventLog) add(ev AuthEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) all() []AuthEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]AuthEvent(nil), l.events...)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a log handler.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

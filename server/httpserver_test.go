package server

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// hardened is the reference server behind NewHTTPServer on a loopback listener.
type hardened struct {
	srv    *Server
	lim    *ConnLimiter
	hs     *http.Server
	addr   string
	issuer *HMACIssuer
}

// startHardened serves a reference server (echo) and GET /healthz through NewHTTPServer
// with limits; tune may change the http.Server before it serves.
func startHardened(t *testing.T, limits ConnLimits, tune func(*http.Server)) *hardened {
	t.Helper()
	issuer := newIssuer(t)
	srv, err := New(Config{Verifier: issuer, Handler: Echo(), HandshakeRate: -1})
	require.NoError(t, err)
	lim, err := NewConnLimiter(limits)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/", srv)
	hs := NewHTTPServer(mux, lim)
	hs.ErrorLog = log.New(io.Discard, "", 0)
	if tune != nil {
		tune(hs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, hs.Close())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return &hardened{srv: srv, lim: lim, hs: hs, addr: ln.Addr().String(), issuer: issuer}
}

// rawConn is a client TCP connection speaking HTTP/1.1 by hand, with a deadline on
// everything so that a server that never answers or never closes fails the test.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(waitLimit)))
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// get sends GET path on the connection and reads the response.
func (c *rawConn) get(t *testing.T, path string) *http.Response {
	t.Helper()
	_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// requireClosedByServer reads until the server closes the connection: EOF, or a reset.
// The connection's deadline bounds the wait; a server that keeps it open fails here.
func (c *rawConn) requireClosedByServer(t *testing.T) {
	t.Helper()
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open")
}

func (h *hardened) wsURL(query string) string { return "ws://" + h.addr + "/ws" + query }

func (h *hardened) dialWS(t *testing.T, subject string) *websocket.Conn {
	t.Helper()
	tok, err := h.issuer.Issue(subject, time.Hour)
	require.NoError(t, err)
	c, _, err := websocket.Dial(ctxT(t), h.wsURL(""), headerOpts(tok))
	require.NoError(t, err)
	t.Cleanup(func() { c.CloseNow() })
	authOK(t, c)
	return c
}

func (h *hardened) waitOpen(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return h.lim.Stats().Open == n }, waitLimit, 5*time.Millisecond,
		"want %d open connections, have %+v", n, h.lim.Stats())
}

func TestNewHTTPServerDefaults(t *testing.T) {
	hs := NewHTTPServer(http.NotFoundHandler(), nil)
	require.Equal(t, 10*time.Second, hs.ReadHeaderTimeout)
	require.Equal(t, 60*time.Second, hs.IdleTimeout)
	require.Equal(t, 64<<10, hs.MaxHeaderBytes)
	require.Zero(t, hs.ReadTimeout, "a read timeout would cut every WebSocket")
	require.Zero(t, hs.WriteTimeout)
	require.NotNil(t, hs.ConnContext)
	require.NotNil(t, hs.ConnState)

	lim, err := NewConnLimiter(ConnLimits{})
	require.NoError(t, err)
	require.Equal(t, ConnLimits{MaxPerIP: 100, MaxTotal: 1000, RetryAfter: 10 * time.Second, MaxRefusing: 64}, lim.limits)
	_, err = NewConnLimiter(ConnLimits{TrustedProxies: []string{"not an ip"}})
	require.Error(t, err)

	// Install keeps the hooks it finds and fills in a missing ReadHeaderTimeout.
	var states []http.ConnState
	plain := &http.Server{ConnState: func(_ net.Conn, st http.ConnState) { states = append(states, st) }}
	lim.Install(plain)
	require.Equal(t, DefaultReadHeaderTimeout, plain.ReadHeaderTimeout)
	plain.ConnState(nil, http.StateIdle)
	require.Equal(t, []http.ConnState{http.StateIdle}, states)
}

// TestIdleKeepAliveClosed: after one plain request a keep-alive socket is closed once idle.
func TestIdleKeepAliveClosed(t *testing.T) {
	h := startHardened(t, ConnLimits{}, func(hs *http.Server) { hs.IdleTimeout = 100 * time.Millisecond })
	c := dialRaw(t, h.addr)
	require.Equal(t, http.StatusOK, c.get(t, "/healthz").StatusCode)
	c.requireClosedByServer(t)
	h.waitOpen(t, 0)
}

// TestSlowHeadersClosed: a client that never finishes its headers is closed.
func TestSlowHeadersClosed(t *testing.T) {
	h := startHardened(t, ConnLimits{}, func(hs *http.Server) { hs.ReadHeaderTimeout = 100 * time.Millisecond })
	c := dialRaw(t, h.addr)
	_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
	require.NoError(t, err)
	c.requireClosedByServer(t)
	h.waitOpen(t, 0)
}

// TestConnCapPerIP: over the per-IP cap a connection gets 503 with Retry-After and is
// closed; connections of every kind count (an idle keep-alive one, a WebSocket), and a
// slot comes back when its connection closes.
func TestConnCapPerIP(t *testing.T) {
	h := startHardened(t, ConnLimits{MaxPerIP: 2, RetryAfter: 7 * time.Second}, nil)
	idle := dialRaw(t, h.addr)
	require.Equal(t, http.StatusOK, idle.get(t, "/healthz").StatusCode)
	ws := h.dialWS(t, "alice")
	echo(t, ws, "a WebSocket holds a slot")
	h.waitOpen(t, 2)

	over := dialRaw(t, h.addr)
	resp := over.get(t, "/healthz")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))
	require.True(t, resp.Close, "Connection: close")
	over.requireClosedByServer(t)
	// A WebSocket handshake over the cap is refused the same way, before the upgrade.
	tok, err := h.issuer.Issue("bob", time.Hour)
	require.NoError(t, err)
	_, wresp, err := websocket.Dial(ctxT(t), h.wsURL(""), headerOpts(tok))
	require.Error(t, err)
	require.Equal(t, http.StatusServiceUnavailable, wresp.StatusCode)
	require.EqualValues(t, 1, h.srv.Stats().Handshakes, "only alice's handshake reached the WebSocket handler")

	require.NoError(t, ws.Close(websocket.StatusNormalClosure, ""))
	h.waitOpen(t, 1)
	again := dialRaw(t, h.addr)
	require.Equal(t, http.StatusOK, again.get(t, "/healthz").StatusCode)
	st := h.lim.Stats()
	require.EqualValues(t, 2, st.Refused)
	require.Zero(t, st.Dropped)
}

// TestConnCapTotal: the total cap holds for trusted proxies too, which are exempt from the
// per-IP one.
func TestConnCapTotal(t *testing.T) {
	h := startHardened(t, ConnLimits{MaxPerIP: 1, MaxTotal: 3, TrustedProxies: []string{"127.0.0.1"}}, nil)
	for range 3 {
		require.Equal(t, http.StatusOK, dialRaw(t, h.addr).get(t, "/healthz").StatusCode)
	}
	resp := dialRaw(t, h.addr).get(t, "/healthz")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "10", resp.Header.Get("Retry-After"))
}

// TestConnCapDropsBeyondMaxRefusing: connections over the cap that would wait to be
// answered beyond MaxRefusing are closed at once.
func TestConnCapDropsBeyondMaxRefusing(t *testing.T) {
	h := startHardened(t, ConnLimits{MaxPerIP: 1, MaxRefusing: 1}, nil)
	require.Equal(t, http.StatusOK, dialRaw(t, h.addr).get(t, "/healthz").StatusCode)
	waiting := dialRaw(t, h.addr) // over the cap, answered once it sends a request
	require.Eventually(t, func() bool {
		h.lim.mu.Lock()
		defer h.lim.mu.Unlock()
		return h.lim.refusing == 1
	}, waitLimit, 5*time.Millisecond)
	dropped := dialRaw(t, h.addr)
	dropped.requireClosedByServer(t)
	require.EqualValues(t, 1, h.lim.Stats().Dropped)
	require.Equal(t, http.StatusServiceUnavailable, waiting.get(t, "/healthz").StatusCode)
}

// TestHijackedConnReleasedAtClose: a slot held by a WebSocket comes back whichever side
// closes it.
func TestHijackedConnReleasedAtClose(t *testing.T) {
	h := startHardened(t, ConnLimits{}, nil)
	a := h.dialWS(t, "alice")
	b := h.dialWS(t, "bob")
	echo(t, a, "x")
	echo(t, b, "x")
	h.waitOpen(t, 2)
	require.Equal(t, 1, h.srv.Revoke("alice"))
	requireClose(t, a, websocket.StatusPolicyViolation, ReasonRevoked)
	h.waitOpen(t, 1)
	require.NoError(t, b.Close(websocket.StatusNormalClosure, ""))
	h.waitOpen(t, 0)
}

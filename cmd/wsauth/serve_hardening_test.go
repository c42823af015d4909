package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

// These tests check the hardening of `wsauth serve` from outside, over
// loopback: timeouts, connection caps, the keepalive, the Origin rule for
// cookies, trusted proxies and the per-principal cap.

// heldConn is a raw HTTP/1.1 client connection to serve, with a deadline on
// everything.
type heldConn struct {
	net.Conn
	br *bufio.Reader
}

func dialHeld(t *testing.T, base string) *heldConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(waitTimeout)))
	t.Cleanup(func() { c.Close() })
	return &heldConn{Conn: c, br: bufio.NewReader(c)}
}

// get sends GET /healthz and reads the answer.
func (c *heldConn) get(t *testing.T) *http.Response {
	t.Helper()
	_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// closedByServer reads until serve closes the connection; the deadline
// bounds the wait, and a timeout fails.
func (c *heldConn) closedByServer(t *testing.T) {
	t.Helper()
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "serve kept the connection open")
}

// holdOne opens a keep-alive connection that serve has admitted. The health
// checks of startServe may still hold their slots for a moment after they
// closed, so a 503 is tried again, on a new connection, until the deadline.
func holdOne(t *testing.T, base string) *heldConn {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c := dialHeld(t, base)
		resp := c.get(t)
		if resp.StatusCode == http.StatusOK {
			return c
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		c.Close()
		require.True(t, time.Now().Before(deadline), "serve never freed the health checks' slots")
	}
}

func TestServeClosesIdleKeepAlive(t *testing.T) {
	s := startServe(t, "--idle-timeout", "200ms")
	c := dialHeld(t, s.base)
	require.Equal(t, http.StatusOK, c.get(t).StatusCode)
	c.closedByServer(t)
}

func TestServeClosesSlowHeaders(t *testing.T) {
	s := startServe(t, "--read-header-timeout", "200ms")
	c := dialHeld(t, s.base)
	_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
	require.NoError(t, err)
	c.closedByServer(t)
}

func TestServeCapsConnectionsPerIP(t *testing.T) {
	s := startServe(t, "--max-conns-per-ip", "2")
	holdOne(t, s.base)
	holdOne(t, s.base)
	over := dialHeld(t, s.base)
	resp := over.get(t)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "10", resp.Header.Get("Retry-After"))
	over.closedByServer(t)
}

// dialServeWS opens a WebSocket to serve with a header token for subject.
func dialServeWS(t *testing.T, s *serveProc, subject string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	iss, err := server.NewHMACIssuer([]byte(testSecret))
	require.NoError(t, err)
	tok, err := iss.Issue(subject, time.Hour)
	require.NoError(t, err)
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	if opts.HTTPHeader == nil {
		opts.HTTPHeader = http.Header{}
	}
	opts.HTTPHeader.Set("Authorization", "Bearer "+tok)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.ws, opts)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// readText reads one text message.
func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, data, err := c.Read(ctx)
	require.NoError(t, err)
	return string(data)
}

func TestServePingsSilentPeers(t *testing.T) {
	s := startServe(t, "--ping-interval", "100ms", "--pong-timeout", "200ms")
	c, _, err := dialServeWS(t, s, "silent", nil)
	require.NoError(t, err)
	require.Contains(t, readText(t, c), "auth_ok")
	// The client reads no more, so it answers no ping.
	s.waitLog(t, "ping timeout", func(r logRecord) bool { return r.str("msg") == "ping timeout" && r.str("subject") == "silent" })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.StatusGoingAway, ce.Code)
	require.Equal(t, server.ReasonPingTimeout, ce.Reason)
}

func TestServeCookieNeedsOrigin(t *testing.T) {
	s := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/login", strings.NewReader(`{"username":"demo","password":"demo-password"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	cookie := resp.Header.Get("Set-Cookie")
	cookie, _, _ = strings.Cut(cookie, ";")

	_, wresp, err := websocket.Dial(ctx, s.ws, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {cookie}}})
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, wresp.StatusCode)
	c, _, err := websocket.Dial(ctx, s.ws, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {cookie}, "Origin": {s.base}}})
	require.NoError(t, err)
	defer c.CloseNow()
	require.Contains(t, readText(t, c), "auth_ok")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

func TestServeTrustsOnlyListedProxies(t *testing.T) {
	forwarded := &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"203.0.113.5"}}}
	trusting := startServe(t, "--trusted-proxy", "127.0.0.1")
	c, _, err := dialServeWS(t, trusting, "proxied", forwarded)
	require.NoError(t, err)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	rec := trusting.waitLog(t, "accepted handshake", func(r logRecord) bool {
		return r.str("msg") == "auth accepted" && r.str("subject") == "proxied"
	})
	require.Equal(t, "203.0.113.5", rec.str("client_ip"))

	plain := startServe(t)
	forwarded = &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"203.0.113.5"}}}
	c, _, err = dialServeWS(t, plain, "direct", forwarded)
	require.NoError(t, err)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	rec = plain.waitLog(t, "accepted handshake", func(r logRecord) bool {
		return r.str("msg") == "auth accepted" && r.str("subject") == "direct"
	})
	require.Empty(t, rec.str("client_ip"), "the header of an untrusted peer is ignored")
}

func TestServeCapsConnectionsPerPrincipal(t *testing.T) {
	s := startServe(t, "--max-conns-per-principal", "1")
	c, _, err := dialServeWS(t, s, "alice", nil)
	require.NoError(t, err)
	require.Contains(t, readText(t, c), "auth_ok")
	_, resp, err := dialServeWS(t, s, "alice", nil)
	require.Error(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	other, _, err := dialServeWS(t, s, "bob", nil)
	require.NoError(t, err)
	require.Contains(t, readText(t, other), "auth_ok")
}

func TestServeHardeningUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--max-conns-per-ip", "0"},
		{"serve", "--max-conns", "-2"},
		{"serve", "--max-conns-per-principal", "0"},
		{"serve", "--ping-interval", "0s"},
		{"serve", "--pong-timeout", "0s"},
		{"serve", "--idle-timeout", "0s"},
		{"serve", "--read-header-timeout", "-1s"},
		{"serve", "--trusted-proxy", "not-a-cidr"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runBin(t, nil, args...)
			require.Equal(t, exitUsage, code, "stderr: %s", errOut)
			require.Empty(t, out)
			require.Contains(t, errOut, strings.TrimPrefix(args[1], "--"))
		})
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/redistest"
	"github.com/wsauth/wsauth/server"
)

// These tests run `wsauth serve --redis` as the README does: two processes behind one real
// redis-server (internal/redistest starts it; without the binary they skip, or fail under
// WSAUTH_REQUIRE_REDIS=1).

// revocationBound is the generous upper bound of a cross-instance revocation: the tests log
// the time measured, and only fail when it is unbounded in practice.
const revocationBound = 10 * time.Second

// wsDial opens a WebSocket to url with header, closed when the test ends.
func wsDial(t *testing.T, url string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// bearerHeader is the header of a token handshake or request.
func bearerHeader(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// wsAuthed dials and requires the auth_ok that starts every authenticated connection.
func wsAuthed(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	c, _, err := wsDial(t, url, header)
	require.NoError(t, err)
	require.Contains(t, readText(t, c), `"auth_ok"`)
	return c
}

// wsRefused dials and requires the handshake to be answered status with Retry-After.
func wsRefused(t *testing.T, url string, header http.Header, status int) *http.Response {
	t.Helper()
	c, resp, err := wsDial(t, url, header)
	require.Error(t, err)
	require.Nil(t, c)
	require.NotNil(t, resp, "an HTTP answer, not a network error: %v", err)
	require.Equal(t, status, resp.StatusCode)
	return resp
}

// closeOf reads until the connection ends and returns the close frame.
func closeOf(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
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

// wsEcho sends text and requires it back.
func wsEcho(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(text)))
	require.Equal(t, text, readText(t, c))
}

// post sends a request to serve and returns the response, its body read and closed.
func (s *serveProc) post(t *testing.T, path, contentType, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	require.NoError(t, err)
	http.DefaultClient.CloseIdleConnections()
	return resp, buf.Bytes()
}

// ticketResp asks serve's ticket endpoint for a ticket with token.
func (s *serveProc) ticketResp(t *testing.T, token string) (*http.Response, string) {
	t.Helper()
	resp, body := s.post(t, "/api/ws-ticket", "", "", bearerHeader(token))
	var tr struct {
		Ticket string `json:"ticket"`
	}
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &tr))
	}
	return resp, tr.Ticket
}

// ticket gets a ticket, which must succeed.
func (s *serveProc) ticket(t *testing.T, token string) string {
	t.Helper()
	resp, ticket := s.ticketResp(t, token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, ticket)
	return ticket
}

// waitSubscribed waits until serve's cluster subscription to Redis is up for the n-th time,
// so that it receives the other instances' revocations as they happen.
func (s *serveProc) waitSubscribed(t *testing.T, n int) {
	t.Helper()
	next := 0
	for range n {
		next = 1 + s.stderr.waitFor(t, "cluster subscription", next, func(line string) bool {
			var r logRecord
			return json.Unmarshal([]byte(line), &r) == nil && r.str("msg") == "redisstore: cluster subscribed"
		})
	}
}

// waitTicketsBack asks for tickets until serve answers 200 again and returns how long it
// took. It asks every 100 ms, not every Retry-After as a client would, to see the recovery
// sooner; a 429 of the ticket rate limit (5 a second per IP) is not yet, too.
func (s *serveProc) waitTicketsBack(t *testing.T, token string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, _ := s.ticketResp(t, token)
		if resp.StatusCode == http.StatusOK {
			return time.Since(start)
		}
		require.Contains(t, []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}, resp.StatusCode)
		require.True(t, time.Now().Before(deadline), "tickets did not come back within %s of Redis", waitTimeout)
		<-tick.C
	}
}

// requireOnlyLogRecords requires every line serve wrote to stderr to be one of its JSON log
// records: nothing (go-redis's own logger, say) writes to stderr past the log.
func requireOnlyLogRecords(t *testing.T, s *serveProc) {
	t.Helper()
	for _, line := range s.stderr.snapshot() {
		var r logRecord
		require.NoError(t, json.Unmarshal([]byte(line), &r), "a stderr line that is not a log record: %q", line)
	}
}

// TestServeRedisTwoInstances: two `wsauth serve --redis` processes behind one redis-server
// act as one server. A ticket minted by A is redeemed on B and its replay on A refused; a
// revoke on B closes the socket held on A with 1008 (the time is logged); a Redis outage
// gives 503 with Retry-After to ticket and cookie handshakes and the ticket endpoint, leaves
// established connections and header handshakes working, and ends without restarting
// either process.
func TestServeRedisTwoInstances(t *testing.T) {
	rs := redistest.Start(t)
	a := startServe(t, "--redis", rs.URL(), "--ticket-ttl", "10m")
	b := startServe(t, "--redis", rs.URL(), "--ticket-ttl", "10m")
	a.waitSubscribed(t, 1)
	b.waitSubscribed(t, 1)
	alice := tokenFor(t, "alice")

	ticket := a.ticket(t, alice)
	wsEcho(t, wsAuthed(t, b.ws+"?ticket="+ticket, nil), "minted on A, redeemed on B")
	replay, _, err := wsDial(t, a.ws+"?ticket="+ticket, nil)
	require.NoError(t, err, "ticket failures are refused after the upgrade")
	ce := closeOf(t, replay)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, server.ReasonInvalidTicket, ce.Reason, "a replay on A is refused")

	held := wsAuthed(t, a.ws, bearerHeader(tokenFor(t, "carol")))
	start := time.Now()
	require.Zero(t, b.control(t, "revoke", map[string]string{"subject": "carol"}), "carol has no socket on B")
	ce = closeOf(t, held)
	elapsed := time.Since(start)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, server.ReasonRevoked, ce.Reason)
	t.Logf("revoke on B closed carol's socket on A (1008 %q) after %v, the control request included", ce.Reason, elapsed)
	require.Less(t, elapsed, revocationBound)
	wsRefused(t, a.ws, bearerHeader(tokenFor(t, "carol")), http.StatusUnauthorized)

	// Before the outage: a ticket kept for later, a cookie session, and a socket on each
	// instance.
	kept := a.ticket(t, alice)
	resp, _ := a.post(t, "/api/login", "application/json", `{"token":"`+alice+`"}`, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "wsauth_session" {
			cookie = ck
		}
	}
	require.NotNil(t, cookie)
	cookieB := func() http.Header {
		return http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}, "Origin": {b.base}}
	}
	onA := wsAuthed(t, a.ws, bearerHeader(alice))
	onB := wsAuthed(t, b.ws, cookieB())

	rs.Stop(t)
	for _, r := range []*http.Response{
		wsRefused(t, b.ws+"?ticket="+kept, nil, http.StatusServiceUnavailable),
		wsRefused(t, b.ws, cookieB(), http.StatusServiceUnavailable),
		func() *http.Response { r, _ := a.ticketResp(t, alice); return r }(),
	} {
		require.Equal(t, http.StatusServiceUnavailable, r.StatusCode, "fail closed")
		require.Equal(t, "2", r.Header.Get("Retry-After"))
	}
	wsEcho(t, onA, "established on A, Redis down")
	wsEcho(t, onB, "established on B, Redis down")
	wsEcho(t, wsAuthed(t, b.ws, bearerHeader(alice)), "a header handshake needs no store")

	rs.Restart(t)
	t.Logf("tickets on A back %v after Redis", a.waitTicketsBack(t, alice))
	wsEcho(t, wsAuthed(t, b.ws+"?ticket="+kept, nil), "the ticket refused with 503 was not spent")
	wsEcho(t, wsAuthed(t, b.ws, cookieB()), "the session survived the outage")
	wsEcho(t, onA, "still established on A")

	// Revocations cross again once the subscriptions are back.
	held = wsAuthed(t, b.ws, bearerHeader(tokenFor(t, "dave")))
	start = time.Now()
	a.control(t, "revoke", map[string]string{"subject": "dave"})
	ce = closeOf(t, held)
	t.Logf("after the outage, revoke on A closed dave's socket on B after %v", time.Since(start))
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, server.ReasonRevoked, ce.Reason)

	for _, s := range []*serveProc{a, b} {
		requireOnlyLogRecords(t, s)
	}
}

// TestServeRedisStartsWithoutRedis: serve starts while Redis is down, serves what needs no
// store, answers the rest 503 with Retry-After, and catches up by itself once Redis is
// there: no restart.
func TestServeRedisStartsWithoutRedis(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop(t)
	s := startServe(t, "--redis", rs.URL())
	s.waitLog(t, "the warning", func(r logRecord) bool { return strings.HasPrefix(r.str("msg"), "redis unavailable") })
	alice := tokenFor(t, "alice")
	resp, _ := s.ticketResp(t, alice)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
	wsEcho(t, wsAuthed(t, s.ws, bearerHeader(alice)), "up without Redis")

	rs.Restart(t)
	t.Logf("tickets back %v after Redis started", s.waitTicketsBack(t, alice))
	wsEcho(t, wsAuthed(t, s.ws+"?ticket="+s.ticket(t, alice), nil), "without a restart")
	s.waitSubscribed(t, 1)
	requireOnlyLogRecords(t, s)
}

// TestServeRedisPasswordNeverShown: the password of the Redis URL (a canary) appears in no
// output of serve, with debug logs on: not while it works, not with a wrong password, not
// through an outage, not in a usage error. The URL is shown with the password replaced.
func TestServeRedisPasswordNeverShown(t *testing.T) {
	canary, wrong := "canary-"+randomHex(t), "wrong-"+randomHex(t)
	rs := redistest.Start(t, redistest.Password(canary))
	a := startServe(t, "--redis", rs.URL(), "--log-level", "debug")
	b := startServe(t, "--redis", rs.URL(), "--log-level", "debug")
	alice := tokenFor(t, "alice")
	wsEcho(t, wsAuthed(t, b.ws+"?ticket="+a.ticket(t, alice), nil), "through a Redis with a password")
	require.Contains(t, a.stdout.text(), "unix://:xxxxx@/", "the banner shows the URL, not the password")

	badURL := (&url.URL{Scheme: "unix", User: url.UserPassword("", wrong), Path: rs.Options().Addr}).String()
	bad := startServe(t, "--redis", badURL, "--log-level", "debug")
	bad.waitLog(t, "redis unavailable", func(r logRecord) bool { return strings.HasPrefix(r.str("msg"), "redis unavailable") })
	resp, _ := bad.ticketResp(t, alice)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a wrong password fails closed")

	rs.Stop(t)
	resp, _ = a.ticketResp(t, alice)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	rs.Restart(t)
	a.waitTicketsBack(t, alice)

	code, out, errOut := runBin(t, nil, "serve", "--addr", "127.0.0.1:0", "--redis", rs.URL())
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--secret", "several instances need one key")
	code, out2, errOut2 := runBin(t, []string{envRedisURL + "=redis://default:" + canary + "#x@127.0.0.1/0"},
		"serve", "--addr", "127.0.0.1:0", "--secret", testSecret)
	require.Equal(t, exitUsage, code, errOut2)

	a.sync(t) // every log line so far is in
	b.sync(t)
	bad.waitLog(t, "the refused ticket", func(r logRecord) bool {
		return r.str("stage") == "ticket" && r.num("status") == http.StatusServiceUnavailable
	})
	outputs := []string{out, errOut, out2, errOut2}
	for _, s := range []*serveProc{a, b, bad} {
		outputs = append(outputs, s.stdout.text(), s.stderr.text())
		requireOnlyLogRecords(t, s)
	}
	for _, text := range outputs {
		for _, secret := range []string{canary, wrong} {
			for _, form := range redact.Forms(secret) {
				require.NotContains(t, text, form)
			}
		}
	}
	require.Contains(t, bad.stderr.text(), "WRONGPASS", "the refusal itself is logged")
}

// tokenFor issues a one-hour token for subject with the serve processes' key, in the
// test process (mint runs the binary, which is slow under -race).
func tokenFor(t *testing.T, subject string) string {
	t.Helper()
	iss, err := server.NewHMACIssuer([]byte(testSecret))
	require.NoError(t, err)
	tok, err := iss.Issue(subject, time.Hour)
	require.NoError(t, err)
	return tok
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// parseServe parses serve's flags and builds the setup, as runServe does.
func parseServe(t *testing.T, s stdio, args ...string) (*serveSetup, error) {
	t.Helper()
	fs, f := serveCommand().flags()
	fs.SetOutput(&bytes.Buffer{})
	require.NoError(t, fs.Parse(args))
	return newServeSetup(f.(*serveFlags), s)
}

func TestServeRedisSetup(t *testing.T) {
	const canary = "canary-0f1e2d3c"
	st, err := parseServe(t, env(envSecret+"="+testSecret, envRedisURL+"=redis://:"+canary+"@10.0.0.7:6380/2?dial_timeout=1s"))
	require.NoError(t, err)
	require.NotNil(t, st.redisOpt, "the URL comes from "+envRedisURL)
	require.Equal(t, "10.0.0.7:6380", st.redisOpt.Addr)
	require.Equal(t, 2, st.redisOpt.DB)
	require.Equal(t, canary, st.redisOpt.Password)
	require.True(t, st.redisOpt.ContextTimeoutEnabled, "redisstore.ParseURL's settings")
	require.Equal(t, "redis://:xxxxx@10.0.0.7:6380/2", st.redisShown)

	st, err = parseServe(t, env(envSecret+"="+testSecret, envRedisURL+"=redis://10.0.0.7/0"), "--redis", "unix:///run/redis.sock")
	require.NoError(t, err)
	require.Equal(t, "/run/redis.sock", st.redisOpt.Addr, "the flag wins over the variable")

	st, err = parseServe(t, env(envSecret+"="+testSecret))
	require.NoError(t, err)
	require.Nil(t, st.redisOpt)
	require.Nil(t, st.cfg.Limits, "without Redis everything stays in the process")

	_, err = parseServe(t, env(envRedisURL+"=redis://10.0.0.7/0"))
	require.ErrorAs(t, err, new(*usageError))
	require.Contains(t, err.Error(), "--secret")

	for _, bad := range []string{"redis://:" + canary + "#x@host", "http://:" + canary + "@host", "redis://host:" + canary} {
		_, err = parseServe(t, env(envSecret+"="+testSecret), "--redis", bad)
		require.ErrorAs(t, err, new(*usageError), bad)
		require.NotContains(t, err.Error(), canary)
	}
}

// TestScrubHandler: the records of redisstore and go-redis lose the password wherever it
// is: the message, strings, errors, groups and attributes added beforehand.
func TestScrubHandler(t *testing.T) {
	const canary = "canary-9a8b7c6d"
	set := &redact.Set{}
	set.Add(canary)
	var buf bytes.Buffer
	lg := slog.New(scrubHandler{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), set})
	lg = lg.With("url", "redis://:"+canary+"@h")
	lg.Warn("auth "+canary, "error", errors.New("WRONGPASS "+canary), "n", 3,
		slog.Group("g", "s", url.QueryEscape(canary)))
	redisLogger{lg}.Printf(context.Background(), "dial %s: refused\n", canary)
	require.NotContains(t, buf.String(), canary)
	require.Contains(t, buf.String(), `"n":3`)
	require.Contains(t, buf.String(), `"msg":"go-redis"`)
	require.Equal(t, 2, strings.Count(buf.String(), "\n"))
}

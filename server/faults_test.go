package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestRevoke(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Users = map[string]string{"alice": "pw"} })
	aliceTok := e.token(t, "alice")
	ticket := e.ticket(t, aliceTok)
	_, ck := e.login(t, `{"token":"`+aliceTok+`"}`)
	a1 := e.mustDialAuthed(t, e.wsURL("?token="+aliceTok), nil)
	a2 := e.mustDialAuthed(t, e.wsURL(""), headerOpts(aliceTok))
	b := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")), nil)
	for _, c := range []*websocket.Conn{a1, a2, b} {
		echo(t, c, "hi")
	}

	require.Equal(t, 2, e.srv.Revoke("alice"))
	requireClose(t, a1, websocket.StatusPolicyViolation, ReasonRevoked)
	requireClose(t, a2, websocket.StatusPolicyViolation, ReasonRevoked)
	echo(t, b, "bob is unaffected")

	// Every credential of alice is refused while revoked.
	requireRefused(t, e.mustDial(t, e.wsURL("?token="+aliceTok), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)
	e.dialRefused(t, e.wsURL(""), headerOpts(aliceTok), http.StatusUnauthorized)
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket="+ticket), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
	requireRefused(t, e.mustDial(t, e.wsURL(""), e.cookieOpts(ck)), websocket.StatusPolicyViolation, ReasonUnauthorized)
	c := e.mustDial(t, e.wsURL(""), nil)
	writeJSONMsg(t, c, map[string]string{"type": "auth", "token": aliceTok})
	requireRefused(t, c, websocket.StatusPolicyViolation, ReasonUnauthorized)
	resp, _ := e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer " + aliceTok}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.login(t, `{"username":"alice","password":"pw"}`)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.login(t, `{"token":"`+aliceTok+`"}`)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	e.srv.Unrevoke("alice")
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+aliceTok), nil), "back")
	echo(t, e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck)), "cookie session back")
}

func TestRevokedRefresh(t *testing.T) {
	// A refresh that arrives for a revoked subject closes with "Revoked". The connection is
	// made to look live-but-revoked by revoking between verification and the refresh.
	e := newEnv(t)
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	echo(t, c, "hi")
	e.srv.mu.Lock()
	e.srv.revoked["alice"] = true // revoked without closing, as in a race with Revoke
	e.srv.mu.Unlock()
	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "alice")})
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonRevoked)

	// Another subject's token is a mismatch, revoked or not: the connection's own principal
	// was not revoked.
	b := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")), nil)
	echo(t, b, "hi")
	writeJSONMsg(t, b, map[string]string{"type": "refresh", "token": e.token(t, "alice")})
	requireClose(t, b, websocket.StatusPolicyViolation, ReasonPrincipalMismatch)
}

func TestCloseAll(t *testing.T) {
	e := newEnv(t)
	a := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	b := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")), nil)
	echo(t, a, "x")
	echo(t, b, "x")
	require.Equal(t, 2, e.srv.CloseAll(4000, "bye"))
	requireClose(t, a, 4000, "bye")
	requireClose(t, b, 4000, "bye")
}

func TestExpireSessions(t *testing.T) {
	e := newEnv(t)
	a := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	b := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")), nil)
	echo(t, a, "x")
	echo(t, b, "x")
	require.Equal(t, 1, e.srv.ExpireSessions("alice"))
	requireClose(t, a, websocket.StatusPolicyViolation, ReasonSessionExpired)
	echo(t, b, "bob still here")
	require.Equal(t, 1, e.srv.ExpireSessions(""))
	requireClose(t, b, websocket.StatusPolicyViolation, ReasonSessionExpired)
	// Expiry is not revocation: alice may come back.
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil), "back")
}

func TestRefuseHandshakes(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "alice")
	e.srv.RefuseHandshakes(http.StatusServiceUnavailable, 2)
	for range 2 {
		resp := e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusServiceUnavailable)
		require.Equal(t, "1", resp.Header.Get("Retry-After"))
	}
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "third goes through")

	e.srv.RefuseHandshakes(http.StatusForbidden, 1)
	resp := e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusForbidden)
	require.Empty(t, resp.Header.Get("Retry-After"))
	e.srv.RefuseHandshakes(http.StatusTooManyRequests, 1)
	resp = e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusTooManyRequests)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.EqualValues(t, 1, e.calls.Load())
}

func TestPause(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "alice")
	e.srv.Pause(time.Hour)
	resp := e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusServiceUnavailable)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.Greater(t, secs, 3000)
	e.srv.Pause(0)
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "unpaused")
}

func TestGoingAway(t *testing.T) {
	e := newEnv(t)
	a := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	echo(t, a, "x")
	require.Equal(t, 1, e.srv.GoingAway("maintenance"))
	m := readMsg(t, a)
	require.Equal(t, "going_away", m.Type)
	require.Equal(t, "maintenance", m.Reason)
	echo(t, a, "still open")
}

func TestServerClose(t *testing.T) {
	handlerDone := make(chan struct{})
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			defer close(handlerDone)
			Echo().ServeWS(ctx, c)
		})
	})
	a := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	echo(t, a, "x")
	pending := e.mustDial(t, e.wsURL(""), nil) // waiting for its auth message

	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	requireClose(t, a, websocket.StatusGoingAway, ReasonShuttingDown)
	requireRefused(t, pending, websocket.StatusGoingAway, ReasonShuttingDown)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
	select {
	case <-handlerDone:
	default:
		t.Fatal("Close returned before the handler did")
	}
	st := e.srv.Stats()
	require.Zero(t, st.Live)
	require.Zero(t, st.Pending)

	resp := e.dialRefused(t, e.wsURL("?token="+e.token(t, "alice")), nil, http.StatusServiceUnavailable)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.NoError(t, e.srv.Close(), "Close is idempotent")

	// Nothing of the server outlives Close and the listener's Close.
	e.hs.Close()
	goleak.VerifyNone(t)
}

func control(t *testing.T, e *env, name, body string) (int, int) {
	t.Helper()
	resp, data := e.post(t, "/control/"+name, "application/json", body, nil)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, -1
	}
	var out struct {
		Affected int `json:"affected"`
	}
	require.NoError(t, json.Unmarshal(data, &out))
	return resp.StatusCode, out.Affected
}

func TestControlEndpointsNeedTestControls(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"close-all", "revoke", "unrevoke", "expire", "refuse", "pause", "going-away"} {
		status, _ := control(t, e, name, `{}`)
		require.Equal(t, http.StatusNotFound, status, name)
	}
}

func TestControlEndpoints(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TestControls = true })
	tok := e.token(t, "alice")
	dialAlice := func() *websocket.Conn {
		c := e.mustDialAuthed(t, e.wsURL("?token="+tok), nil)
		echo(t, c, "x")
		return c
	}

	c := dialAlice()
	status, n := control(t, e, "going-away", `{"reason":"deploy"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1, n)
	require.Equal(t, "going_away", readMsg(t, c).Type)

	status, n = control(t, e, "close-all", `{"code":1012,"reason":"restart"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1, n)
	requireClose(t, c, websocket.StatusServiceRestart, "restart")

	c = dialAlice()
	_, n = control(t, e, "revoke", `{"subject":"alice"}`)
	require.Equal(t, 1, n)
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonRevoked)
	_, n = control(t, e, "unrevoke", `{"subject":"alice"}`)
	require.Equal(t, 0, n)

	c = dialAlice()
	_, n = control(t, e, "expire", `{"subject":""}`)
	require.Equal(t, 1, n)
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonSessionExpired)

	status, _ = control(t, e, "refuse", `{"status":503,"count":1}`)
	require.Equal(t, http.StatusOK, status)
	e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusServiceUnavailable)

	status, _ = control(t, e, "pause", `{"seconds":3600}`)
	require.Equal(t, http.StatusOK, status)
	e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusServiceUnavailable)
	control(t, e, "pause", `{"seconds":0}`)
	dialAlice()

	for name, body := range map[string]string{
		"close-all": `{"code":1006}`,
		"revoke":    `{}`,
		"refuse":    `{"status":200,"count":1}`,
		"pause":     `not json`,
	} {
		status, _ := control(t, e, name, body)
		require.Equal(t, http.StatusBadRequest, status, name)
	}
	status, _ = control(t, e, "no-such-hook", `{}`)
	require.Equal(t, http.StatusNotFound, status)
	get, err := e.hs.Client().Get(e.hs.URL + "/control/close-all")
	require.NoError(t, err)
	get.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, get.StatusCode)
}

package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// TestSecretsNeverLogged runs refusal and success paths with canary secrets and a JSON log
// handler at debug level, then searches the log and the events for the canaries.
func TestSecretsNeverLogged(t *testing.T) {
	logs := &syncBuffer{}
	events := &eventLog{}
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.OnAuth = events.add
		c.Users = map[string]string{"alice": "canary-password-right"}
		c.Clients = map[string]string{"bot": "canary-client-secret"}
	})
	valid := e.token(t, "alice")
	canaries := []string{
		"canary-token-header", "canary-token-subprotocol", "canary-token-query",
		"canary-token-first-message", "canary-ticket", "canary-cookie", "canary-password-wrong",
		"canary-password-right", "canary-client-secret", "canary-client-wrong", "canary-refresh-token",
	}

	e.dialRefused(t, e.wsURL(""), headerOpts("canary-token-header"), http.StatusUnauthorized)
	e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{k8sProtocol("canary-token-subprotocol")}}, http.StatusUnauthorized)
	expectClose(t, e.mustDial(t, e.wsURL("?token=canary-token-query"), nil))
	c := e.mustDial(t, e.wsURL(""), nil)
	writeJSONMsg(t, c, map[string]string{"type": "auth", "token": "canary-token-first-message"})
	expectClose(t, c)
	expectClose(t, e.mustDial(t, e.wsURL("?ticket=canary-ticket"), nil))
	expectClose(t, e.mustDial(t, e.wsURL(""), e.cookieOpts(&http.Cookie{Name: "wsauth_session", Value: "canary-cookie"})))
	e.login(t, `{"username":"alice","password":"canary-password-wrong"}`)
	e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer canary-token-header"}})
	e.post(t, "/oauth/token", "application/x-www-form-urlencoded",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"bot"}, "client_secret": {"canary-client-wrong"}}.Encode(), nil)
	e.dialRefused(t, e.wsURL("?token=canary-token-query"), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.test"}}}, http.StatusForbidden)

	// Successes, whose real secrets must not be logged either.
	_, ck := e.login(t, `{"username":"alice","password":"canary-password-right"}`)
	require.NotNil(t, ck)
	ticket := e.ticket(t, valid)
	tc := e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil)
	echo(t, tc, "x")
	cc := e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck))
	echo(t, cc, "x")
	resp, body := e.post(t, "/oauth/token", "application/x-www-form-urlencoded",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"bot"}, "client_secret": {"canary-client-secret"}}.Encode(), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r := e.mustDialAuthed(t, e.wsURL("?token="+valid), nil)
	writeJSONMsg(t, r, map[string]string{"type": "refresh", "token": valid})
	require.Equal(t, "refresh_ok", readMsg(t, r).Type)
	writeJSONMsg(t, r, map[string]string{"type": "refresh", "token": "canary-refresh-token"})
	requireClose(t, r, websocket.StatusPolicyViolation, ReasonUnauthorized)

	for _, c := range []*websocket.Conn{tc, cc} {
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}
	require.NoError(t, e.srv.Close()) // every log line is written once Close returns
	out := logs.String()
	require.NotEmpty(t, out)
	require.Contains(t, out, "auth refused")
	secrets := append(canaries, valid, ticket, ck.Value, string(body))
	for _, ev := range events.all() {
		for _, s := range secrets {
			require.NotContains(t, ev.Reason+ev.Detail+ev.Subject+string(ev.Method), s)
		}
	}
	for _, s := range secrets {
		require.NotContains(t, out, s)
	}
	// Parts of the issued access token are not logged either.
	require.NotContains(t, out, strings.Split(valid, ".")[2])
}

func TestNewValidation(t *testing.T) {
	iss := newIssuer(t)
	base := func() Config { return Config{Verifier: iss, Handler: Echo()} }
	bad := map[string]func(c *Config){
		"no verifier":             func(c *Config) { c.Verifier = nil },
		"no handler":              func(c *Config) { c.Handler = nil },
		"empty methods":           func(c *Config) { c.Methods = []Method{} },
		"unknown method":          func(c *Config) { c.Methods = []Method{"smoke-signal"} },
		"clients without issuer":  func(c *Config) { c.Clients = map[string]string{"a": "b"} },
		"wildcard origin":         func(c *Config) { c.AllowedOrigins = []string{"https://*.example.com"} },
		"bearer subprotocol":      func(c *Config) { c.Subprotocols = []string{"base64url.bearer.phx.x"} },
		"bad subprotocol":         func(c *Config) { c.Subprotocols = []string{"a,b"} },
		"negative ttl":            func(c *Config) { c.TicketTTL = -time.Second },
		"negative auth timeout":   func(c *Config) { c.AuthTimeout = -time.Second },
		"negative notice":         func(c *Config) { c.ExpiryNotice = -time.Second },
		"no pre-auth limit":       func(c *Config) { c.PreAuthReadLimit = -1 },
		"bad read limit":          func(c *Config) { c.ReadLimit = -2 },
		"control prefix":          func(c *Config) { c.ControlPrefix = "/control" },
		"same params":             func(c *Config) { c.TicketParam, c.TokenParams = "t", []string{"t"} },
		"empty bearer prefix":     func(c *Config) { c.BearerPrefixes = []string{""} },
		"bearer prefix with list": func(c *Config) { c.BearerPrefixes = []string{"a, b"} },
	}
	for name, mutate := range bad {
		cfg := base()
		mutate(&cfg)
		_, err := New(cfg)
		require.Error(t, err, name)
	}

	s, err := New(base())
	require.NoError(t, err)
	cfg := s.cfg
	require.Equal(t, AllMethods(), cfg.Methods)
	require.Equal(t, []string{"base64url.bearer.authorization.k8s.io.", "base64url.bearer.phx."}, cfg.BearerPrefixes)
	require.Equal(t, 30*time.Second, cfg.TicketTTL)
	require.Equal(t, 24*time.Hour, cfg.LoginTTL)
	require.Equal(t, time.Hour, cfg.TokenTTL)
	require.Equal(t, 5*time.Second, cfg.AuthTimeout)
	require.Equal(t, time.Hour, cfg.SessionTTL)
	require.EqualValues(t, 4096, cfg.PreAuthReadLimit)
	require.EqualValues(t, 1<<20, cfg.ReadLimit)
	require.Equal(t, 1.0, cfg.RefreshRate)
	require.Equal(t, 5, cfg.RefreshBurst)
	require.Equal(t, 10.0, cfg.HandshakeRate)
	require.Equal(t, 20, cfg.HandshakeBurst)
	require.Equal(t, 16, cfg.MaxPreAuthPerIP)
	require.Equal(t, "/ws", cfg.WSPath)
	require.Equal(t, "wsauth_session", cfg.CookieName)
	require.NotNil(t, cfg.TicketStore)
	require.NotNil(t, cfg.SessionStore)
	require.NoError(t, s.Close())
}

func TestNoExpiryAtAll(t *testing.T) {
	// No server-imposed lifetime and a credential without expiry: no expiry, and auth_ok
	// omits expires_in rather than claiming zero seconds.
	v := verifierFunc(func(ctx context.Context, token string) (Identity, error) {
		return Identity{Subject: "alice"}, nil
	})
	e := newEnv(t, func(c *Config) { c.Verifier, c.SessionTTL = v, -1 })
	c := e.mustDial(t, e.wsURL(""), nil)
	writeJSONMsg(t, c, map[string]string{"type": "auth", "token": "anything"})
	_, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"auth_ok"}`, string(data))
	require.True(t, e.nextConn(t).Principal().ExpiresAt.IsZero())
	echo(t, c, "open")
}

func TestRoutes(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/", "/nope", "/ws/extra", "/control/close-all"} {
		resp, err := e.hs.Client().Get(e.hs.URL + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}
	resp, err := e.hs.Client().Get(e.hs.URL + "/api/login")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestCustomPathsAndParams(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.WSPath, c.TicketPath, c.TicketParam, c.TokenParams, c.CookieName = "/socket", "/t", "tk", []string{"access_token"}, "sid"
	})
	u := "ws" + strings.TrimPrefix(e.hs.URL, "http") + "/socket"
	echo(t, e.mustDialAuthed(t, u+"?access_token="+e.token(t, "alice"), nil), "custom token param")
	resp, body := e.post(t, "/t", "", "", http.Header{"Authorization": {"Bearer " + e.token(t, "alice")}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "ticket")
	_, ck := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	require.NotNil(t, ck)
	require.Equal(t, "sid", ck.Name)
	echo(t, e.mustDialAuthed(t, u, e.cookieOpts(ck)), "custom cookie")
}

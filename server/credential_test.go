package server

import (
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// TestQueryTokenParamsByDefault: the query pattern accepts "token" and "access_token" by
// default, token first.
func TestQueryTokenParamsByDefault(t *testing.T) {
	e := newEnv(t)
	echo(t, e.mustDialAuthed(t, e.wsURL("?access_token="+e.token(t, "alice")), nil), "access_token")
	require.Equal(t, MethodQuery, e.nextConn(t).Principal().Method)
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")+"&access_token=bad"), nil), "token wins")
	require.Equal(t, "bob", e.nextConn(t).Principal().Subject)
	requireRefused(t, e.mustDial(t, e.wsURL("?access_token=bad"), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)
}

func TestTokenParamsConfig(t *testing.T) {
	iss := newIssuer(t)
	s, err := New(Config{Verifier: iss, Handler: Echo(), TokenParams: []string{"api_token"}})
	require.NoError(t, err)
	require.Equal(t, []string{"api_token"}, s.cfg.TokenParams)
	require.NoError(t, s.Close())
	s, err = New(Config{Verifier: iss, Handler: Echo(), TokenParams: []string{"jwt"}})
	require.NoError(t, err)
	require.Equal(t, []string{"jwt"}, s.cfg.TokenParams, "the deprecated single name")
	require.NoError(t, s.Close())
	s, err = New(Config{Verifier: iss, Handler: Echo()})
	require.NoError(t, err)
	require.Equal(t, []string{"token", "access_token"}, s.cfg.TokenParams)
	require.NoError(t, s.Close())
	for name, cfg := range map[string]Config{
		"empty list":       {TokenParams: []string{}},
		"empty name":       {TokenParams: []string{""}},
		"same as ticket":   {TokenParams: []string{"ticket"}},
		"ticket collision": {TicketParam: "access_token"},
	} {
		cfg.Verifier, cfg.Handler = iss, Echo()
		_, err := New(cfg)
		require.Error(t, err, name)
	}

	e := newEnv(t, func(c *Config) { c.TokenParams = []string{"api_token"} })
	echo(t, e.mustDialAuthed(t, e.wsURL("?api_token="+e.token(t, "alice")), nil), "configured name")
	// The default names are no longer the query pattern's, but still named like credentials.
	requireRefused(t, e.mustDial(t, e.wsURL("?token="+e.token(t, "alice")), nil), websocket.StatusPolicyViolation, ReasonNoCredential)
}

// TestUnrecognisedCredentialRefusedAtOnce: a handshake that carries something meant as a
// credential, which no enabled pattern accepts, is refused at once and says so, instead of
// waiting AuthTimeout for an auth message that will not come. The auth timeout here is an
// hour, longer than the test's own deadline: a server that waited would fail the test.
func TestUnrecognisedCredentialRefusedAtOnce(t *testing.T) {
	events := &eventLog{}
	e := newEnv(t, func(c *Config) {
		c.AuthTimeout = time.Hour
		c.OnAuth = events.add
	})
	tok := e.token(t, "alice")
	for _, q := range []string{"api_key=" + tok, "jwt=" + tok, "auth=" + tok, "id_token=" + tok, "AccessToken=" + tok, "password=x"} {
		t.Run("query "+q[:5], func(t *testing.T) {
			requireRefused(t, e.mustDial(t, e.wsURL("?"+q), nil), websocket.StatusPolicyViolation, ReasonNoCredential)
		})
	}
	for name, h := range map[string]http.Header{
		"basic":            {"Authorization": {"Basic " + basic("alice", "pw")}},
		"empty bearer":     {"Authorization": {"Bearer "}},
		"other scheme":     {"Authorization": {"Token " + tok}},
		"unknown prefix":   {"Sec-WebSocket-Protocol": {"base64url.bearer.example.dG9r"}},
		"plain bearer sub": {"Sec-WebSocket-Protocol": {"chat.v1, bearer, " + tok}},
	} {
		t.Run(name, func(t *testing.T) {
			resp := e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{HTTPHeader: h}, http.StatusUnauthorized)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Contains(t, string(body), "no credential")
			require.NotContains(t, string(body), tok)
			require.Equal(t, "Bearer", resp.Header.Get("WWW-Authenticate"))
		})
	}
	// Ordinary query parameters and unrelated cookies still mean first-message auth.
	c := e.mustDial(t, e.wsURL("?room=lobby&v=2"), &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"theme=dark"}}})
	firstMessageAuth(t, c, tok)
	echo(t, c, "first message")
	require.EqualValues(t, 1, e.calls.Load())
	for _, ev := range events.all() {
		require.NotContains(t, ev.Reason+ev.Detail, tok)
	}

	// Credentials of disabled patterns: refused as unrecognised rather than ignored.
	d := newEnv(t, func(c *Config) {
		c.Methods = []Method{MethodCookie, MethodFirstMessage}
		c.AuthTimeout = time.Hour
	})
	dtok := d.token(t, "alice")
	requireRefused(t, d.mustDial(t, d.wsURL("?token="+url.QueryEscape(dtok)), nil), websocket.StatusPolicyViolation, ReasonNoCredential)
	requireRefused(t, d.mustDial(t, d.wsURL("?ticket=x"), nil), websocket.StatusPolicyViolation, ReasonNoCredential)
	d.dialRefused(t, d.wsURL(""), headerOpts(dtok), http.StatusUnauthorized)
	d.dialRefused(t, d.wsURL(""), &websocket.DialOptions{Subprotocols: []string{k8sProtocol(dtok)}}, http.StatusUnauthorized)
	require.Zero(t, d.calls.Load())
}

// TestNoCredentialWithoutFirstMessage: with first-message auth off, a handshake without any
// credential gets 401 whose body names the problem.
func TestNoCredentialWithoutFirstMessage(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Methods = []Method{MethodHeader} })
	resp := e.dialRefused(t, e.wsURL(""), nil, http.StatusUnauthorized)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "Unauthorized: no credential\n", string(body))
}

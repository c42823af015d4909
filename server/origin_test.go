package server

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

func withOrigin(origin string) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}}
}

// TestOriginSameHostComparesScheme: the server's own origin is its scheme, host and port. A
// page served over plain http is not the TLS server's own, though its host is the same.
func TestOriginSameHostComparesScheme(t *testing.T) {
	tlsEnv := startEnv(t, true)
	host := tlsEnv.hs.Listener.Addr().String()
	wss := "wss" + strings.TrimPrefix(tlsEnv.hs.URL, "https") + "/ws"
	tok := tlsEnv.token(t, "alice")

	echo(t, tlsEnv.mustDialAuthed(t, wss+"?token="+tok, withOrigin("https://"+host)), "own origin")
	echo(t, tlsEnv.mustDialAuthed(t, wss+"?token="+tok, withOrigin("HTTPS://"+strings.ToUpper(host))), "case")
	for _, bad := range []string{"http://" + host, "ws://" + host, "wss://" + host, "https://" + strings.Split(host, ":")[0]} {
		t.Run("tls refuses "+bad, func(t *testing.T) {
			tlsEnv.dialRefused(t, wss+"?token="+tok, withOrigin(bad), http.StatusForbidden)
		})
	}

	plain := newEnv(t)
	phost := plain.hs.Listener.Addr().String()
	ptok := plain.token(t, "alice")
	echo(t, plain.mustDialAuthed(t, plain.wsURL("?token="+ptok), withOrigin("http://"+phost)), "own origin")
	plain.dialRefused(t, plain.wsURL("?token="+ptok), withOrigin("https://"+phost), http.StatusForbidden)
}

// TestOriginDefaultPorts: "https://h:443" is "https://h" and "http://h:80" is "http://h",
// in the Host header, in the Origin header and in AllowedOrigins alike.
func TestOriginDefaultPorts(t *testing.T) {
	tlsEnv := startEnv(t, true, func(c *Config) {
		c.AllowedOrigins = []string{"https://app.example.com", "https://other.example.com:443"}
	})
	wss := "wss" + strings.TrimPrefix(tlsEnv.hs.URL, "https") + "/ws?token=" + tlsEnv.token(t, "alice")
	plain := newEnv(t)
	ws := plain.wsURL("?token=" + plain.token(t, "alice"))
	cases := []struct {
		e            *env
		url          string
		host, origin string
	}{
		{tlsEnv, wss, "", "https://app.example.com:443"},
		{tlsEnv, wss, "", "https://other.example.com"},
		{tlsEnv, wss, "", "https://other.example.com:443"},
		{tlsEnv, wss, "www.example.com", "https://www.example.com:443"},
		{tlsEnv, wss, "www.example.com:443", "https://www.example.com"},
		{plain, ws, "www.example.com:80", "http://www.example.com"},
		{plain, ws, "www.example.com", "http://www.example.com:80"},
	}
	for _, tc := range cases {
		t.Run(tc.host+" "+tc.origin, func(t *testing.T) {
			opts := withOrigin(tc.origin)
			opts.Host = tc.host
			echo(t, tc.e.mustDialAuthed(t, tc.url, opts), "default port")
		})
	}
	// A port that is not the default is a different origin.
	opts := withOrigin("https://www.example.com:8443")
	opts.Host = "www.example.com"
	tlsEnv.dialRefused(t, wss, opts, http.StatusForbidden)
	opts = withOrigin("http://www.example.com")
	opts.Host = "www.example.com:443"
	plain.dialRefused(t, ws, opts, http.StatusForbidden)
}

func TestParseOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.Example.COM":     "https://app.example.com",
		"https://app.example.com:443": "https://app.example.com",
		"http://app.example.com:80":   "http://app.example.com",
		"http://app.example.com:443":  "http://app.example.com:443",
		"https://app.example.com:80":  "https://app.example.com:80",
		"wss://h:443":                 "wss://h",
		"http://[::1]:8080":           "http://[::1]:8080",
		"http://[::1]:80":             "http://[::1]",
		"http://127.0.0.1:3000":       "http://127.0.0.1:3000",
	} {
		got, ok := parseOrigin(in)
		require.True(t, ok, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{
		"", "null", "app.example.com", "https://", "https://app.example.com/", "https://app.example.com/x",
		"https://app.example.com?", "https://app.example.com?x", "https://app.example.com#", "https://u@app.example.com",
		"https://app.example.com:", "https://app.example.com:x", "https://app .example.com", "https://app.example.com\t",
		"https://app\x00.example.com", "://app.example.com", "https://:443", "https://app.example.com\\@evil",
		"https://" + strings.Repeat("a", maxOriginLen), "aaaa://X0::00", "http://h::1", "http://[h]:80", "http://[::1",
		"http://[fe80::1%25en0]", "https://h:65536", "https://h:99999", "https://h!:443", "https://h*",
	} {
		_, ok := parseOrigin(bad)
		require.False(t, ok, "%q", bad)
	}
}

// TestCookieNeedsOrigin: a cookie-authenticated handshake must carry an Origin, unless
// Config.AllowCookieWithoutOrigin; the other patterns are accepted without one.
func TestCookieNeedsOrigin(t *testing.T) {
	events := &eventLog{}
	e := newEnv(t, func(c *Config) { c.OnAuth = events.add })
	tok := e.token(t, "alice")
	_, ck := e.login(t, `{"token":"`+tok+`"}`)
	require.NotNil(t, ck)

	resp := e.dialRefused(t, e.wsURL(""), bareCookieOpts(ck), http.StatusForbidden)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), "Origin")
	require.NotContains(t, string(body), ck.Value)
	last := events.all()[len(events.all())-1]
	require.Equal(t, MethodCookie, last.Method)
	require.Equal(t, "cookie handshake without Origin", last.Detail)

	echo(t, e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck)), "with the server's own origin")
	// A cookie riding along with a header credential needs nothing: the header wins.
	opts := bareCookieOpts(ck)
	opts.HTTPHeader.Set("Authorization", "Bearer "+tok)
	echo(t, e.mustDialAuthed(t, e.wsURL(""), opts), "header")
	// The other patterns without Origin: non-browser clients.
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "query")
	echo(t, e.mustDialAuthed(t, e.wsURL("?ticket="+e.ticket(t, tok)), nil), "ticket")
	c := e.mustDial(t, e.wsURL(""), nil)
	firstMessageAuth(t, c, tok)
	echo(t, c, "first message")

	lax := newEnv(t, func(c *Config) { c.AllowCookieWithoutOrigin = true })
	_, ck = lax.login(t, `{"token":"`+lax.token(t, "alice")+`"}`)
	require.NotNil(t, ck)
	echo(t, lax.mustDialAuthed(t, lax.wsURL(""), bareCookieOpts(ck)), "allowed without Origin")
	// The option does not loosen the Origin check itself.
	lax.dialRefused(t, lax.wsURL(""), &websocket.DialOptions{HTTPHeader: http.Header{
		"Cookie": {ck.Name + "=" + ck.Value}, "Origin": {"https://evil.test"},
	}}, http.StatusForbidden)
}

package server

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// loginFrom posts a password login as if forwarded for ip by the local proxy.
func (e *env) loginFrom(t *testing.T, ip, user, password string) *http.Response {
	t.Helper()
	resp, _ := e.post(t, e.srv.cfg.LoginPath, "application/json",
		`{"username":"`+user+`","password":"`+password+`"}`, http.Header{"X-Forwarded-For": {ip}})
	return resp
}

// TestLoginPerAccountLimit: guesses at one account from many IPs (a trusted proxy forwards
// for a different client each time, so the per-IP limit never trips) are stopped by the
// per-account limit; the answer does not tell a known account from an unknown one, nor a
// right password from a wrong one once the account is limited.
func TestLoginPerAccountLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Users = map[string]string{"alice": "right", "bob": "right"}
		c.TrustedProxies = []string{"127.0.0.1", "::1"}
		c.LoginRate, c.LoginBurst = 0.01, 1 // one login per client IP
		c.LoginAccountRate, c.LoginAccountBurst = 0.001, 3
	})
	ip := 0
	nextIP := func() string { ip++; return "203.0.113." + strconv.Itoa(ip) }
	for range 3 {
		require.Equal(t, http.StatusUnauthorized, e.loginFrom(t, nextIP(), "alice", "guess").StatusCode)
	}
	for _, pw := range []string{"guess", "right"} {
		resp := e.loginFrom(t, nextIP(), "alice", pw)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, pw)
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, secs, 1)
	}
	// The per-IP limit is still there, as before.
	same := nextIP()
	require.Equal(t, http.StatusNoContent, e.loginFrom(t, same, "bob", "right").StatusCode)
	require.Equal(t, http.StatusTooManyRequests, e.loginFrom(t, same, "bob", "right").StatusCode)
	// Another account is not affected, and a right password costs nothing.
	for range 5 {
		require.Equal(t, http.StatusNoContent, e.loginFrom(t, nextIP(), "bob", "right").StatusCode)
	}
	// An unknown account is limited the same way: no enumeration through the limit.
	for range 3 {
		require.Equal(t, http.StatusUnauthorized, e.loginFrom(t, nextIP(), "nobody", "guess").StatusCode)
	}
	require.Equal(t, http.StatusTooManyRequests, e.loginFrom(t, nextIP(), "nobody", "guess").StatusCode)
	require.EqualValues(t, 6, e.srv.Stats().LoginsFailed)
}

// TestTokenEndpointPerClientLimit: the client-credentials endpoint limits failures per
// client id the same way.
func TestTokenEndpointPerClientLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = map[string]string{"bot": "right"}
		c.LoginRate = -1
		c.LoginAccountRate, c.LoginAccountBurst = 0.001, 2
	})
	form := func(secret string) int {
		resp, _ := e.post(t, "/oauth/token", "application/x-www-form-urlencoded",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"bot"}, "client_secret": {secret}}.Encode(), nil)
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, form("right"))
	require.Equal(t, http.StatusUnauthorized, form("guess"))
	require.Equal(t, http.StatusUnauthorized, form("guess"))
	require.Equal(t, http.StatusTooManyRequests, form("guess"))
	require.Equal(t, http.StatusTooManyRequests, form("right"))
}

func TestAccountLimiter(t *testing.T) {
	l := newAccountLimiter(0, 2)
	ok, _ := l.take("a")
	require.True(t, ok)
	l.refund("a")
	for range 2 {
		ok, _ = l.take("a")
		require.True(t, ok)
	}
	ok, wait := l.take("a")
	require.False(t, ok)
	require.Equal(t, 60*time.Second, wait)
	l.refund("a")
	l.refund("a")
	l.refund("a") // never above the burst
	for range 2 {
		ok, _ = l.take("a")
		require.True(t, ok)
	}
	ok, _ = l.take("a")
	require.False(t, ok)

	slow := newAccountLimiter(1e-15, 1)
	ok, _ = slow.take("a")
	require.True(t, ok)
	ok, wait = slow.take("a")
	require.False(t, ok)
	require.Equal(t, maxRetryAfter, wait, "capped, not overflowed")
	require.Equal(t, maxIdle, slow.idle)

	off := newAccountLimiter(-1, 0)
	for range 100 {
		ok, _ := off.take("a")
		require.True(t, ok)
	}
}

// TestPrincipalCap: a subject holds at most MaxConnsPerPrincipal connections; over the cap
// header and subprotocol handshakes get 429 before the upgrade, the browser patterns a close
// 1013 "Too many connections" and no auth_ok. A freed slot can be used again.
func TestPrincipalCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnsPerPrincipal = 2 })
	tok := e.token(t, "alice")
	a1 := e.mustDialAuthed(t, e.wsURL(""), headerOpts(tok))
	echo(t, a1, "1")
	a2 := e.mustDialAuthed(t, e.wsURL("?token="+tok), nil)
	echo(t, a2, "2")

	resp := e.dialRefused(t, e.wsURL(""), headerOpts(tok), http.StatusTooManyRequests)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{k8sProtocol(tok)}}, http.StatusTooManyRequests)
	requireRefused(t, e.mustDial(t, e.wsURL("?token="+tok), nil), websocket.StatusTryAgainLater, ReasonTooManyConnections)
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket="+e.ticket(t, tok)), nil), websocket.StatusTryAgainLater, ReasonTooManyConnections)
	c := e.mustDial(t, e.wsURL(""), nil)
	writeJSONMsg(t, c, map[string]string{"type": "auth", "token": tok})
	requireRefused(t, c, websocket.StatusTryAgainLater, ReasonTooManyConnections)
	require.EqualValues(t, 5, e.srv.Stats().PrincipalCapped)

	echo(t, e.mustDialAuthed(t, e.wsURL(""), headerOpts(e.token(t, "bob"))), "another subject")
	require.NoError(t, a1.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return e.srv.Stats().Live == 2 }, waitLimit, 10*time.Millisecond)
	echo(t, e.mustDialAuthed(t, e.wsURL(""), headerOpts(tok)), "slot freed")
	require.EqualValues(t, 4, e.calls.Load())

	off := newEnv(t, func(c *Config) { c.MaxConnsPerPrincipal = -1 })
	otok := off.token(t, "alice")
	for range 5 {
		echo(t, off.mustDialAuthed(t, off.wsURL(""), headerOpts(otok)), "uncapped")
	}
}

func TestProxyClient(t *testing.T) {
	p, err := newProxyPolicy([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"})
	require.NoError(t, err)
	none, err := newProxyPolicy(nil)
	require.NoError(t, err)
	cases := []struct {
		name   string
		policy *proxyPolicy
		remote string
		tls    bool
		h      http.Header
		ip     string
		scheme string
	}{
		{"untrusted peer ignores XFF", p, "198.51.100.7:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "198.51.100.7", "http"},
		{"no proxies ignores Forwarded", none, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=203.0.113.9;proto=https"}}, "10.1.1.1", "http"},
		{"untrusted peer ignores proto", p, "198.51.100.7:1", false, http.Header{"X-Forwarded-Proto": {"https"}}, "198.51.100.7", "http"},
		{"TLS peer", p, "198.51.100.7:1", true, nil, "198.51.100.7", "https"},
		{"trusted, no header", p, "10.1.1.1:1", false, nil, "10.1.1.1", "http"},
		{"XFF one hop", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9", "http"},
		{"XFF spoofed left part", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.9"}}, "203.0.113.9", "http"},
		{"XFF chain of proxies", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.9, 10.2.2.2", "192.0.2.1"}}, "203.0.113.9", "http"},
		{"XFF all trusted", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"10.3.3.3, 10.2.2.2"}}, "10.3.3.3", "http"},
		{"XFF garbage stops at last good", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9, nonsense, 10.2.2.2"}}, "10.2.2.2", "http"},
		{"XFF with port and v6", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"[2001:db9::1]:443"}}, "2001:db9::1", "http"},
		{"XFF bare v6", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"2001:db9::1"}}, "2001:db9::1", "http"},
		{"XFF v4 with port", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9:5555"}}, "203.0.113.9", "http"},
		{"XFF mapped v4", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"::ffff:203.0.113.9"}}, "203.0.113.9", "http"},
		{"XFP https", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}}, "203.0.113.9", "https"},
		{"XFP rightmost", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-Proto": {"https, http"}}, "10.1.1.1", "http"},
		{"XFP nonsense", p, "10.1.1.1:1", false, http.Header{"X-Forwarded-Proto": {"gopher"}}, "10.1.1.1", "http"},
		{"Forwarded", p, "10.1.1.1:1", false, http.Header{"Forwarded": {`for=203.0.113.9;proto=https;by=10.1.1.1`}}, "203.0.113.9", "https"},
		{"Forwarded wins over XFF", p, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=203.0.113.9"}, "X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.9", "http"},
		{"Forwarded quoted v6", p, "10.1.1.1:1", false, http.Header{"Forwarded": {`for="[2001:db9::1]:4711"`}}, "2001:db9::1", "http"},
		{"Forwarded chain", p, "10.1.1.1:1", false, http.Header{"Forwarded": {`for=1.2.3.4, for=203.0.113.9;proto=https, for=10.2.2.2;proto=http`}}, "203.0.113.9", "https"},
		{"Forwarded quoted comma", p, "10.1.1.1:1", false, http.Header{"Forwarded": {`for=203.0.113.9;x="a,b;c", for=10.2.2.2`}}, "203.0.113.9", "http"},
		{"Forwarded unknown", p, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=unknown"}}, "10.1.1.1", "http"},
		{"Forwarded obfuscated", p, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=_hidden, for=10.2.2.2"}}, "10.2.2.2", "http"},
		{"Forwarded repeated for", p, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=203.0.113.9;for=1.2.3.4"}}, "10.1.1.1", "http"},
		{"Forwarded v6 unquoted is invalid", p, "10.1.1.1:1", false, http.Header{"Forwarded": {"for=[2001:db9::1]:x"}}, "10.1.1.1", "http"},
		{"trusted v6 peer", p, "[2001:db8::5]:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9", "http"},
		{"mapped peer", p, "[::ffff:10.1.1.1]:1", false, http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9", "http"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, "/ws", nil)
			require.NoError(t, err)
			r.RemoteAddr = tc.remote
			if tc.h != nil {
				r.Header = tc.h
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			ip, scheme, ok := tc.policy.client(r)
			require.True(t, ok)
			require.Equal(t, netip.MustParseAddr(tc.ip), ip)
			require.Equal(t, tc.scheme, scheme)
		})
	}

	for _, bad := range []string{"10.0.0.0/33", "nonsense", "::ffff:10.0.0.0/104", "fe80::1%eth0", ""} {
		_, err := newProxyPolicy([]string{bad})
		require.Error(t, err, bad)
	}
}

// TestTrustedProxyForwardedFor: behind a trusted proxy each forwarded client has its own
// rate-limit bucket and pre-auth slots; the same headers from an untrusted peer change
// nothing (the peer is loopback in both, the difference is the configuration).
func TestTrustedProxyForwardedFor(t *testing.T) {
	events := &eventLog{}
	trusted := newEnv(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.0/8", "::1"}
		c.HandshakeRate, c.HandshakeBurst = 0.01, 1
		c.OnAuth = events.add
	})
	tok := trusted.token(t, "alice")
	from := func(ip string) *websocket.DialOptions {
		o := headerOpts(tok)
		o.HTTPHeader.Set("X-Forwarded-For", ip)
		return o
	}
	echo(t, trusted.mustDialAuthed(t, trusted.wsURL(""), from("203.0.113.1")), "first client")
	trusted.dialRefused(t, trusted.wsURL(""), from("203.0.113.1"), http.StatusTooManyRequests)
	echo(t, trusted.mustDialAuthed(t, trusted.wsURL(""), from("203.0.113.2")), "second client")
	var ips []string
	for _, ev := range events.all() {
		ips = append(ips, ev.ClientIP)
	}
	require.Equal(t, []string{"203.0.113.1", "203.0.113.1", "203.0.113.2"}, ips)

	untrusted := newEnv(t, func(c *Config) { c.HandshakeRate, c.HandshakeBurst = 0.01, 1 })
	utok := untrusted.token(t, "alice")
	o := headerOpts(utok)
	o.HTTPHeader.Set("X-Forwarded-For", "203.0.113.1")
	echo(t, untrusted.mustDialAuthed(t, untrusted.wsURL(""), o), "first")
	o = headerOpts(utok)
	o.HTTPHeader.Set("X-Forwarded-For", "203.0.113.2")
	untrusted.dialRefused(t, untrusted.wsURL(""), o, http.StatusTooManyRequests)
}

// TestTrustedProxyScheme: behind a trusted TLS-terminating proxy the server's own origin is
// https, as the browser saw it; an untrusted peer cannot claim it.
func TestTrustedProxyScheme(t *testing.T) {
	trusted := newEnv(t, func(c *Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1"} })
	host := trusted.hs.Listener.Addr().String()
	opts := func(proto, origin string) *websocket.DialOptions {
		o := headerOpts(trusted.token(t, "alice"))
		o.HTTPHeader.Set("X-Forwarded-Proto", proto)
		o.HTTPHeader.Set("Origin", origin)
		return o
	}
	echo(t, trusted.mustDialAuthed(t, trusted.wsURL(""), opts("https", "https://"+host)), "https behind the proxy")
	trusted.dialRefused(t, trusted.wsURL(""), opts("https", "http://"+host), http.StatusForbidden)
	// The cookie set behind a TLS proxy is Secure.
	resp, _ := trusted.post(t, "/api/login", "application/json", `{"token":"`+trusted.token(t, "alice")+`"}`, http.Header{"X-Forwarded-Proto": {"https"}})
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Set-Cookie"), "Secure")

	plain := newEnv(t)
	phost := plain.hs.Listener.Addr().String()
	o := headerOpts(plain.token(t, "alice"))
	o.HTTPHeader.Set("X-Forwarded-Proto", "https")
	o.HTTPHeader.Set("Origin", "https://"+phost)
	plain.dialRefused(t, plain.wsURL(""), o, http.StatusForbidden)
	resp, _ = plain.post(t, "/api/login", "application/json", `{"token":"`+plain.token(t, "alice")+`"}`, http.Header{"X-Forwarded-Proto": {"https"}})
	require.NotContains(t, resp.Header.Get("Set-Cookie"), "Secure")
}

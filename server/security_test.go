package server

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// attack is one row of the server's attack table: what an attacker does, and what the
// server does about it, which run asserts.
type attack struct {
	name    string
	outcome string
	run     func(t *testing.T)
}

// TestAttackTable runs every attack on the reference server that the threat model names,
// one row each, and asserts its outcome. `go test -run TestAttackTable -v ./server` prints
// the table. Rows whose attack is a whole test of its own run that test.
func TestAttackTable(t *testing.T) {
	for _, a := range attacks() {
		t.Run(a.name, func(t *testing.T) {
			t.Log(a.outcome)
			a.run(t)
		})
	}
}

func attacks() []attack {
	return []attack{
		// Sockets and connections (NewHTTPServer, ConnLimiter).
		{"keep-alive socket held open after one request", "closed after IdleTimeout", TestIdleKeepAliveClosed},
		{"headers trickled in (slowloris)", "closed after ReadHeaderTimeout", TestSlowHeadersClosed},
		{"one IP opens connections past MaxPerIP", "503 + Retry-After, then closed; the handshake is never reached", TestConnCapPerIP},
		{"connections past MaxTotal, trusted proxies included", "503 + Retry-After", TestConnCapTotal},
		{"connection flood past the cap", "beyond MaxRefusing closed at accept without an answer", TestConnCapDropsBeyondMaxRefusing},
		{"WebSocket slot never given back", "released at close, whichever side closes", TestHijackedConnReleasedAtClose},
		{"handshake flood from one IP", "429 + Retry-After", attackHandshakeFlood},
		{"pre-auth flood: sockets that never authenticate", "429 + Retry-After: 1 past MaxPreAuthPerIP", TestPreAuthCap},
		{"auth message never sent", "1008 Auth timeout", TestAuthTimeout},
		{"oversized pre-auth message", "1009", TestOversizedPreAuthMessage},
		{"dead peer keeps its socket (no pongs)", "1001 Ping timeout", TestPingClosesSilentPeer},
		{"slow handler taken for a dead peer", "not closed: time not reading is not held against the peer", TestSlowHandlerNotKilledByPing},
		{"one principal opens many connections", "429 + Retry-After before the upgrade, 1013 Too many connections after", TestPrincipalCap},

		// Origin and cross-site WebSocket hijacking.
		{"foreign Origin", "403 before the upgrade; a ticket presented is not consumed", attackOrigin("https://evil.test")},
		{"suffix-domain Origin", "403", attackOrigin("https://app.example.com.evil.test")},
		{"null Origin (sandboxed iframe, file:)", "403", attackOrigin("null")},
		{"plain-http page on the TLS server's host", "403: scheme, host and port must match", attackPlainHTTPOriginOnTLS},
		{"default port spelled out (https://h:443)", "same origin as https://h, allowed", TestOriginDefaultPorts},
		{"cookie handshake without Origin", "403 before the upgrade", attackCookieWithoutOrigin},
		{"https claimed by an untrusted peer (X-Forwarded-Proto)", "ignored: the own origin stays http", TestTrustedProxyScheme},

		// Credentials.
		{"ticket replay", "1008 Invalid or expired ticket", TestTicketReplayRefused},
		{"one ticket spent by 50 handshakes at once", "exactly one served, the others 1008", TestTicketConcurrentHandshakes},
		{"expired ticket", "1008 Invalid or expired ticket", TestExpiredTicketRefused},
		{"forged tokens (alg none, other key, tampered, respelled base64)", "refused with a fixed error", TestHMACIssuerRefusals},
		{"password brute force from one IP", "429 + Retry-After", attackLoginBruteForceOneIP},
		{"password brute force from many IPs", "429 per account, same answer for unknown accounts", TestLoginPerAccountLimit},
		{"client secret brute force", "429 per client id", TestTokenEndpointPerClientLimit},
		{"refresh with another principal's token", "1008 Principal mismatch, identity unchanged", TestRefreshPrincipalMismatch},
		{"refresh flood", "refresh_failed rate limited, token not verified", TestRefreshRateLimited},
		{"revoked principal stays connected", "its live sockets closed 1008 Revoked, its credentials refused", TestRevoke},
		{"logged-out cookie session stays connected", "closed 1008 Logged out", TestLogoutClosesSessionConnections},
		{"credential under a name the server does not read", "refused at once: 1008 No credential, or 401 naming it", TestUnrecognisedCredentialRefusedAtOnce},
		{"X-Forwarded-For spoofed by a direct client", "ignored: limits count the TCP peer", attackSpoofedForwardedFor},
		{"left part of X-Forwarded-For spoofed through a trusted proxy", "the rightmost untrusted hop is the client", TestTrustedProxyForwardedFor},

		// Secrets, shutdown, transport.
		{"secrets in logs and events", "no token, ticket, cookie, password or client secret logged", TestSecretsNeverLogged},
		{"shutdown leaves hijacked sockets open", "Close closes every WebSocket 1001 and waits for it", TestServerClose},
		{"TLS: a client without the server's certificate", "handshake fails; the cookie is Secure over TLS", TestTLS},
		{"subprotocol echoes the bearer token", "never: the bearer entry is not selected", attackSubprotocolEcho},
	}
}

func attackHandshakeFlood(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeRate, c.HandshakeBurst = 0.01, 3 })
	tok := e.token(t, "alice")
	for range 3 {
		echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "within the burst")
	}
	resp := e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusTooManyRequests)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 1)
}

func attackOrigin(origin string) func(t *testing.T) {
	return func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
		tok := e.token(t, "alice")
		ticket := e.ticket(t, tok)
		e.dialRefused(t, e.wsURL("?ticket="+ticket), withOrigin(origin), http.StatusForbidden)
		echo(t, e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil), "ticket not consumed")
		_, ck := e.login(t, `{"token":"`+tok+`"}`)
		require.NotNil(t, ck)
		opts := bareCookieOpts(ck)
		opts.HTTPHeader.Set("Origin", origin)
		e.dialRefused(t, e.wsURL(""), opts, http.StatusForbidden)
	}
}

func attackPlainHTTPOriginOnTLS(t *testing.T) {
	e := startEnv(t, true)
	wss := "wss" + strings.TrimPrefix(e.hs.URL, "https") + "/ws"
	_, ck := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	require.NotNil(t, ck)
	opts := bareCookieOpts(ck)
	opts.HTTPHeader.Set("Origin", "http://"+e.hs.Listener.Addr().String())
	e.dialRefused(t, wss, opts, http.StatusForbidden)
	echo(t, e.mustDialAuthed(t, wss, e.cookieOpts(ck)), "the https page of the same host")
}

func attackCookieWithoutOrigin(t *testing.T) {
	e := newEnv(t)
	_, ck := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	require.NotNil(t, ck)
	e.dialRefused(t, e.wsURL(""), bareCookieOpts(ck), http.StatusForbidden)
	require.Zero(t, e.calls.Load())
}

func attackLoginBruteForceOneIP(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Users = map[string]string{"alice": "right"}
		c.LoginRate, c.LoginBurst = 0.01, 3
	})
	for range 3 {
		resp, _ := e.login(t, `{"username":"alice","password":"guess"}`)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	resp, ck := e.login(t, `{"username":"alice","password":"right"}`)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Nil(t, ck)
}

func attackSpoofedForwardedFor(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginRate, c.LoginBurst = 0.01, 1 })
	for i, want := range []int{http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusTooManyRequests} {
		resp, _ := e.post(t, "/api/login", "application/json", `{"token":"nope"}`, http.Header{
			"X-Forwarded-For": {"203.0.113." + strconv.Itoa(i)},
			"Forwarded":       {"for=198.51.100." + strconv.Itoa(i)},
		})
		require.Equal(t, want, resp.StatusCode, "attempt %d", i)
	}
}

func attackSubprotocolEcho(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Subprotocols = []string{"chat.v1"} })
	tok := e.token(t, "alice")
	entry := "base64url.bearer.authorization.k8s.io." + base64.RawURLEncoding.EncodeToString([]byte(tok))
	c, resp, err := e.dial(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{entry, "chat.v1"}})
	require.NoError(t, err)
	require.Equal(t, "chat.v1", c.Subprotocol())
	require.NotContains(t, resp.Header.Get("Sec-WebSocket-Protocol"), "bearer")
	authOK(t, c)
	// Only the bearer entry: no subprotocol at all rather than the token.
	c, resp, err = e.dial(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{entry}})
	require.NoError(t, err)
	require.Empty(t, c.Subprotocol())
	require.Empty(t, resp.Header.Get("Sec-WebSocket-Protocol"))
	authOK(t, c)
}

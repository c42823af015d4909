package wsauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestEveryProviderEndToEnd(t *testing.T) {
	env := newServer(t)
	for _, tc := range []struct {
		name   string
		method server.Method
		auth   func() Authenticator
	}{
		{"ticket", server.MethodTicket, func() Authenticator {
			return &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)}
		}},
		{"query", server.MethodQuery, func() Authenticator {
			return &QueryAuth{Tokens: env.TokenSource("alice", time.Hour)}
		}},
		{"first-message", server.MethodFirstMessage, func() Authenticator {
			return &FirstMessageAuth{Tokens: env.TokenSource("alice", time.Hour)}
		}},
		{"cookie", server.MethodCookie, func() Authenticator {
			return &CookieAuth{LoginURL: env.LoginURL(), LoginBody: loginBody(wsauthtest.Alice, wsauthtest.AlicePassword)}
		}},
		{"header", server.MethodHeader, func() Authenticator {
			return &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}
		}},
		{"subprotocol", server.MethodSubprotocol, func() Authenticator {
			return &SubprotocolAuth{Tokens: env.TokenSource("alice", time.Hour), Subprotocol: wsauthtest.Subprotocol}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			c := dialed(t, env, &Options{Auth: tc.auth(), OnEvent: rec.on})
			require.Equal(t, "alice "+string(tc.method), ask(t, c, "whoami"))
			echo(t, c, "hello "+tc.name)
			require.NoError(t, c.Send(testCtx(t), MessageBinary, []byte{0, 1, 2}))
			typ, data, err := c.Receive(testCtx(t))
			require.NoError(t, err)
			require.Equal(t, MessageBinary, typ)
			require.Equal(t, []byte{0, 1, 2}, data)
			if tc.method == server.MethodSubprotocol {
				require.Equal(t, "chat.v1", c.Subprotocol(), "the real subprotocol is selected, never the bearer entry")
			}
			require.Equal(t, StateConnected, c.State())
			require.NoError(t, c.Close())
			require.Equal(t, StateClosed, c.State())
			require.ErrorIs(t, c.Err(), ErrClosed)
			rec.waitFor(t, 1, kind(EventStopped))
			var kinds []EventKind
			for _, e := range rec.all() {
				kinds = append(kinds, e.Kind)
			}
			want := []EventKind{EventConnecting, EventAuthenticating, EventConnected, EventStopped}
			require.Equal(t, want, kinds)
		})
	}
}

func TestStaticAndClientCredentialsTokenSources(t *testing.T) {
	env := newServer(t)
	static := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: StaticToken(env.Token("bob", time.Hour))}})
	require.Equal(t, "bob header", ask(t, static, "whoami"))

	cc := &clientcredentials.Config{ClientID: wsauthtest.ClientID, ClientSecret: wsauthtest.ClientSecret, TokenURL: env.TokenURL()}
	// TokenFunc(cc.Token) fetches on every call and leaves caching to TokenCache.
	svc := dialed(t, env, &Options{Auth: &FirstMessageAuth{Tokens: TokenFunc(cc.Token)}})
	require.Equal(t, "svc first-message", ask(t, svc, "whoami"))
	// The library's own caching source works as well.
	svc2 := dialed(t, env, &Options{Auth: &QueryAuth{Tokens: cc.TokenSource(context.Background())}})
	require.Equal(t, "svc query", ask(t, svc2, "whoami"))
}

func TestQueryAndTicketParamNames(t *testing.T) {
	env := newServer(t, withConfig(func(c *server.Config) { c.TicketParam = "t"; c.TokenParams = []string{"access_token"} }))
	q := dialed(t, env, &Options{Auth: &QueryAuth{Tokens: env.TokenSource("alice", time.Hour), Param: "access_token"}})
	require.Equal(t, "alice query", ask(t, q, "whoami"))
	tk := dialed(t, env, &Options{Auth: &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour), Param: "t"}})
	require.Equal(t, "alice ticket", ask(t, tk, "whoami"))
}

func TestCookieJarFilledElsewhereAndOrigin(t *testing.T) {
	env := newServer(t)
	// A jar filled by the application's own login.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Post(env.LoginURL(), "application/json", bytes.NewReader(loginBody(wsauthtest.Bob, wsauthtest.BobPassword)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	c := dialed(t, env, &Options{Auth: &CookieAuth{Jar: jar, Origin: wsauthtest.Origin}})
	require.Equal(t, "bob cookie", ask(t, c, "whoami"))

	// A foreign Origin is refused before the upgrade with 403.
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(testCtx(t), waitLong)
	defer cancel()
	_, err = Dial(ctx, env.URL(), &Options{Auth: &CookieAuth{Jar: jar, Origin: "https://evil.example"}, OnEvent: rec.on, Reconnect: ReconnectPolicy{MaxAuthFailures: 2}})
	var he *HTTPError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusForbidden, he.StatusCode)
	require.Equal(t, "handshake", he.Op)
}

func TestRefusalsAreTypedAndStop(t *testing.T) {
	// Without first-message auth a handshake with no credential is refused
	// with 401 instead of waiting for an auth message.
	env := newServer(t, withConfig(func(c *server.Config) {
		c.Methods = []server.Method{server.MethodTicket, server.MethodQuery, server.MethodCookie, server.MethodHeader, server.MethodSubprotocol}
	}))
	fm := newServer(t, withConfig(func(c *server.Config) { c.AuthTimeout = 300 * time.Millisecond }))
	wrong, err := server.NewHMACIssuer(server.RandomKey())
	require.NoError(t, err)
	forged, err := wrong.Issue("mallory", time.Hour)
	require.NoError(t, err)
	bad := StaticToken(forged)

	for _, tc := range []struct {
		name       string
		auth       Authenticator
		wantStatus int
		wantCode   StatusCode
		wantReason string
	}{
		{"header bad token", &HeaderAuth{Tokens: bad}, 401, 0, ""},
		{"subprotocol bad token", &SubprotocolAuth{Tokens: bad, Subprotocol: wsauthtest.Subprotocol}, 401, 0, ""},
		{"query bad token", &QueryAuth{Tokens: bad}, 0, 1008, "Unauthorized"},
		{"first-message bad token", &FirstMessageAuth{Tokens: bad}, 0, 1008, "Unauthorized"},
		{"no credential, first-message server", nil, 0, 1008, "Auth timeout"},
		{"ticket endpoint bad bearer", &TicketAuth{Endpoint: env.TicketURL(), Tokens: bad}, 401, 0, ""},
		{"cookie bad password", &CookieAuth{LoginURL: env.LoginURL(), LoginBody: []byte(`{"username":"alice","password":"wrong-password"}`)}, 401, 0, ""},
		{"missing cookie: nothing to offer, no handshake", &CookieAuth{}, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			// The stop cause tells every pattern's refusal, whether the
			// server refused before the upgrade or after it.
			url := env.URL()
			if strings.HasPrefix(tc.name, "first-message") || tc.auth == nil {
				url = fm.URL()
			}
			c, err := New(url, &Options{
				Auth:      tc.auth,
				OnEvent:   rec.on,
				Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: &FullJitter{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
			})
			require.NoError(t, err)
			waitDone(t, c)
			require.NoError(t, c.Close())
			err = c.Err()
			require.ErrorIs(t, c.Send(testCtx(t), MessageText, []byte("x")), err, "sends fail with the stop cause")
			var gu *GaveUpError
			require.ErrorAs(t, err, &gu)
			require.Equal(t, "authentication", gu.Why)
			require.Equal(t, tc.wantStatus, gu.HTTPStatus)
			require.Equal(t, tc.wantCode, gu.Code)
			if tc.wantReason != "" {
				require.Equal(t, tc.wantReason, gu.Reason)
				var ce *CloseError
				require.ErrorAs(t, err, &ce)
			}
			if tc.wantStatus != 0 {
				var he *HTTPError
				require.ErrorAs(t, err, &he)
				require.True(t, he.Rejected())
			}
			if tc.wantStatus == 0 && tc.wantCode == 0 {
				require.ErrorIs(t, err, ErrNoCredential)
				require.Zero(t, rec.count(EventAuthenticating), "nothing was dialed")
			}
			require.NotContains(t, err.Error(), forged)
			for _, e := range rec.all() {
				require.NotContains(t, e.String(), forged)
			}
			require.Equal(t, 1, rec.count(EventReconnecting), "one reauth between the two refusals")
		})
	}
}

func TestStaticTokenRejectedIsNeverSentAgain(t *testing.T) {
	var seen sync.Map
	var offers int
	var mu sync.Mutex
	env := newServer(t, withConfig(func(c *server.Config) {
		inner := c.Verifier
		c.Verifier = verifierFunc(func(ctx context.Context, tok string) (server.Identity, error) {
			mu.Lock()
			offers++
			mu.Unlock()
			seen.Store(tok, true)
			return inner.Verify(ctx, tok)
		})
	}))
	tok, err := env.Issuer().IssueWithExpiry("alice", time.Now().Add(-time.Minute))
	require.NoError(t, err)
	_, err = Dial(testCtx(t), env.URL(), &Options{
		Auth:      &HeaderAuth{Tokens: StaticToken(tok)},
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
	})
	var gu *GaveUpError
	require.ErrorAs(t, err, &gu)
	require.ErrorIs(t, err, ErrCredentialRejected)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, offers, "the rejected token reached the server once, never again")
}

type verifierFunc func(ctx context.Context, tok string) (server.Identity, error)

func (f verifierFunc) Verify(ctx context.Context, tok string) (server.Identity, error) {
	return f(ctx, tok)
}

func TestInsecureTransportRefused(t *testing.T) {
	_, err := New("ws://example.com/ws", &Options{Auth: &HeaderAuth{Tokens: StaticToken("x")}})
	require.ErrorIs(t, err, ErrInsecureTransport)
	require.Contains(t, err.Error(), "AllowInsecure")

	// Without credentials there is nothing to protect.
	c, err := New("ws://127.0.0.1:1/ws", &Options{Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}}})
	require.NoError(t, err)
	c.Close()

	// A ticket endpoint over plain HTTP to a remote host is refused at
	// attempt time, and stops the client: no bearer token leaves.
	env := newServer(t)
	_, err = Dial(testCtx(t), env.URL(), &Options{Auth: &TicketAuth{Endpoint: "http://tickets.example.com/api/ws-ticket", Tokens: StaticToken("tok-xyz")}})
	require.ErrorIs(t, err, ErrInsecureTransport)
	var gu *GaveUpError
	require.ErrorAs(t, err, &gu)
	require.Equal(t, "policy", gu.Why)

	// Opting in lets a non-loopback ws:// URL through New.
	c, err = New("ws://example.invalid/ws", &Options{Auth: &HeaderAuth{Tokens: StaticToken("x")}, AllowInsecure: true, Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}}})
	require.NoError(t, err)
	c.Close()
	require.True(t, isLoopback("127.0.0.1"))
	require.True(t, isLoopback("::1"))
	require.True(t, isLoopback("localhost"))
	require.False(t, isLoopback("localhost.example.com"))
	require.False(t, isLoopback("10.0.0.1"))
}

func TestCanaryTokenNeverLeaksOnRefusedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // a port nobody listens on

	const canary = "CANARY-7f3e9a1b-token"
	logs := &syncBuffer{}
	for _, tc := range []struct {
		name string
		auth Authenticator
	}{
		{"query", &QueryAuth{Tokens: StaticToken(canary)}},
		{"header", &HeaderAuth{Tokens: StaticToken(canary)}},
		{"subprotocol", &SubprotocolAuth{Tokens: StaticToken(canary)}},
		{"first-message", &FirstMessageAuth{Tokens: StaticToken(canary)}},
		{"ticket", &TicketAuth{Endpoint: "http://" + addr + "/api/ws-ticket", Tokens: StaticToken(canary)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			ctx, cancel := context.WithCancel(testCtx(t))
			c, err := New("ws://"+addr+"/ws?room=1", &Options{
				Auth:      tc.auth,
				OnEvent:   rec.on,
				Logger:    debugLogger(logs),
				Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Millisecond, Max: 2 * time.Millisecond}},
			})
			require.NoError(t, err)
			rec.waitFor(t, 3, kind(EventReconnecting))
			cancel()
			werr := c.WaitConnected(ctx)
			require.Error(t, werr)
			require.NoError(t, c.Close())
			for _, e := range rec.all() {
				require.NotContains(t, e.String(), canary)
				if e.Err != nil {
					require.NotContains(t, e.Err.Error(), canary)
					var ue *url.Error
					if errors.As(e.Err, &ue) {
						require.NotContains(t, ue.URL, canary)
					}
				}
			}
			require.NotContains(t, werr.Error(), canary)
			last := rec.waitFor(t, 1, kind(EventReconnecting))
			require.Contains(t, last.Err.Error(), "refused", "the cause is still told: %v", last.Err)
		})
	}
	require.NotEmpty(t, logs.String())
	require.NotContains(t, logs.String(), canary)
	enc, _ := json.Marshal(canary)
	require.NotContains(t, logs.String(), string(enc[1:len(enc)-1]))
}

func TestServerEchoingBearerSubprotocolIsRefused(t *testing.T) {
	const token = "echo-me-token"
	entry := KubernetesBearerPrefix + "ZWNoby1tZS10b2tlbg" // base64url("echo-me-token")
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{entry}})
		if err != nil {
			return
		}
		ws.CloseNow()
	}))
	t.Cleanup(rogue.Close)
	rec := newRecorder()
	c, err := New("ws"+strings.TrimPrefix(rogue.URL, "http"), &Options{
		Auth:      &SubprotocolAuth{Tokens: StaticToken(token)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}},
	})
	require.NoError(t, err)
	// The client stops: retrying would send the token to the same server
	// again and again.
	waitDone(t, c)
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Err(), ErrEchoedCredential)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "policy", gu.Why)
	require.Zero(t, rec.count(EventReconnecting), "one handshake carried the token, not one per retry")
	require.NotContains(t, c.Err().Error(), token)
}

func TestHandshakeRefusalCarriesStatusAndBody(t *testing.T) {
	env := newServer(t)
	env.RefuseHandshakes(http.StatusServiceUnavailable, 1)
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Millisecond, Max: time.Millisecond}},
	})
	echo(t, c, "after refusal")
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, http.StatusServiceUnavailable, ev.HTTPStatus)
	require.Equal(t, ActionRetry, ev.Action)
	var he *HTTPError
	require.ErrorAs(t, ev.Err, &he)
	require.Equal(t, "handshake", he.Op)
	require.GreaterOrEqual(t, ev.Delay, time.Second, "Retry-After: 1 is honoured")
	require.LessOrEqual(t, len(he.Body), maxErrorBody)
}

func TestTLSWithOwnRootCA(t *testing.T) {
	env := newServer(t, wsauthtest.WithTLS())
	c := dialed(t, env, &Options{
		Auth:      &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)},
		TLSConfig: env.TLSConfig(),
	})
	require.True(t, strings.HasPrefix(env.URL(), "wss://"))
	require.Equal(t, "alice ticket", ask(t, c, "whoami"))

	// Without the root the certificate is not trusted.
	rec := newRecorder()
	bad, err := New(env.URL(), &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}},
	})
	require.NoError(t, err)
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Contains(t, ev.Err.Error(), "certificate")
	bad.Close()
}

func TestTokenCachedAcrossReconnects(t *testing.T) {
	env := newServer(t)
	m := newMinter(env, "alice", time.Hour)
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &HeaderAuth{Tokens: m},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Millisecond, Max: time.Millisecond}},
	})
	echo(t, c, "one")
	env.CloseAll(websocket.StatusGoingAway, "restart")
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "two")
	require.Len(t, m.minted(), 1, "a reconnect that says nothing against the token reuses it")
}

func TestProvisionalCredentialWaitsForTheVerdict(t *testing.T) {
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 10 * time.Minute }))
	wrong, err := server.NewHMACIssuer(server.RandomKey())
	require.NoError(t, err)
	forged, err := wrong.Issue("mallory", time.Hour)
	require.NoError(t, err)

	// The server upgrades and then refuses a bad query token; Dial reports
	// the refusal instead of a connection, and a send made meanwhile is
	// never written: it fails with the stop cause.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	u, err := url.Parse(env.HTTPURL())
	require.NoError(t, err)
	jar.SetCookies(u, []*http.Cookie{{Name: "wsauth_session", Value: "no-such-session", Path: "/"}})
	for _, auth := range []Authenticator{
		&QueryAuth{Tokens: StaticToken(forged)},
		&CookieAuth{Jar: jar},
	} {
		c, err := New(env.URL(), &Options{Auth: auth, Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast()}})
		require.NoError(t, err)
		sent := make(chan error, 1)
		go func() { sent <- c.SendText(testCtx(t), "before the verdict") }()
		require.Error(t, c.WaitConnected(testCtx(t)))
		var gu *GaveUpError
		require.ErrorAs(t, <-sent, &gu, "the send was never written to the refused connection")
		require.NoError(t, c.Close())
	}
	_, err = Dial(testCtx(t), env.URL(), &Options{Auth: &QueryAuth{Tokens: StaticToken(forged)}, Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast()}})
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, StatusPolicyViolation, ce.Code)

	// Accepted, the connection reports the session's lifetime from
	// auth_ok, not the token's hour.
	rec := newRecorder()
	dialed(t, env, &Options{Auth: &QueryAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on})
	ev := rec.waitFor(t, 1, kind(EventConnected))
	require.WithinDuration(t, time.Now().Add(10*time.Minute), ev.Expiry, time.Minute)
}

// unconfirmed is a server that checks ?token= after the upgrade and
// never confirms: it echoes when the token is good and closes 1008 when
// it is not.
func unconfirmed(good string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		if r.URL.Query().Get("token") != good {
			ws.Close(websocket.StatusPolicyViolation, "Unauthorized")
			return
		}
		for {
			typ, data, err := ws.Read(r.Context())
			if err != nil || ws.Write(r.Context(), typ, data) != nil {
				return
			}
		}
	})
}

func TestPlainDialectForServersWithoutConfirmation(t *testing.T) {
	srv := httptest.NewServer(unconfirmed("good-token"))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	c, err := Dial(testCtx(t), url, &Options{Auth: &QueryAuth{Tokens: StaticToken("good-token")}, Dialect: PlainDialect})
	require.NoError(t, err)
	echo(t, c, "no auth_ok needed")
	require.NoError(t, c.Close())

	// The default dialect needs no auth_ok either: the verdict window
	// passes without a close.
	rec := newRecorder()
	c, err = Dial(testCtx(t), url, &Options{Auth: &QueryAuth{Tokens: StaticToken("good-token")}, OnEvent: rec.on})
	require.NoError(t, err)
	echo(t, c, "no flag needed")
	require.Equal(t, VerdictWindow, rec.waitFor(t, 1, kind(EventConnected)).Verdict)
	require.NoError(t, c.Close())

	// With the plain dialect a refusal after the upgrade still ends in
	// re-authentication, and a token that cannot change stops the client.
	c, err = New(url, &Options{
		Auth:      &QueryAuth{Tokens: StaticToken("bad-token")},
		Dialect:   PlainDialect,
		Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast()},
	})
	require.NoError(t, err)
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, StatusPolicyViolation, gu.Code)
	require.NoError(t, c.Close())

	_, err = PlainDialect.Open(testCtx(t), nil, Proof{InBand: "a-token"})
	require.Error(t, err, "first-message auth needs a dialect with an auth message")
}

func TestCookieAuthSendsTheURLsOwnOriginByDefault(t *testing.T) {
	origins := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origins <- r.Header.Get("Origin")
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_ = ws.Write(r.Context(), websocket.MessageText, []byte("hello"))
		_, _, _ = ws.Read(r.Context())
	}))
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: "s3ssion-id", Path: "/"}})
	c, err := Dial(testCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", &Options{Auth: &CookieAuth{Jar: jar}})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, srv.URL, <-origins)
}

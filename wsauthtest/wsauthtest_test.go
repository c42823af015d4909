package wsauthtest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// waitLong bounds every wait: CI is a busy two-core machine, and a wait
// that runs out is a failure, never a pause.
const waitLong = 20 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitLong)
	t.Cleanup(cancel)
	return ctx
}

// fast is a quick backoff for tests that reconnect.
func fast() *wsauth.FullJitter {
	return &wsauth.FullJitter{Initial: 5 * time.Millisecond, Multiplier: 2, Max: 50 * time.Millisecond}
}

// events records a client's events and lets a test wait for one.
type events struct {
	mu   sync.Mutex
	list []wsauth.Event
	wake chan struct{}
}

func newEvents() *events { return &events{wake: make(chan struct{}, 1)} }

func (e *events) on(ev wsauth.Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *events) all() []wsauth.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]wsauth.Event(nil), e.list...)
}

// wait returns the n-th event (from 1) that matches.
func (e *events) wait(t *testing.T, n int, match func(wsauth.Event) bool) wsauth.Event {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		seen := 0
		for _, ev := range e.all() {
			if match(ev) {
				if seen++; seen == n {
					return ev
				}
			}
		}
		select {
		case <-e.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for an event; have %v", e.all())
		}
	}
}

func kind(k wsauth.EventKind) func(wsauth.Event) bool {
	return func(e wsauth.Event) bool { return e.Kind == k }
}

// dial connects a client to url and closes it when the test ends.
func dial(t *testing.T, url string, o *wsauth.Options) *wsauth.Client {
	t.Helper()
	c, err := wsauth.Dial(ctxFor(t), url, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends msg and expects it back.
func echo(t *testing.T, c *wsauth.Client, msg string) {
	t.Helper()
	ctx := ctxFor(t)
	require.NoError(t, c.SendText(ctx, msg))
	_, got, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// authenticated waits until the server has authenticated n connections.
// A client's Dial can return before the server has registered the
// connection, so a fault injected at once could miss it.
func authenticated(t *testing.T, srv *wsauthtest.Server, n int) {
	t.Helper()
	_, err := srv.WaitAuthEvents(ctxFor(t), n, handshakeOK)
	require.NoError(t, err)
}

func handshakeOK(ev server.AuthEvent) bool { return ev.Stage == server.StageHandshake && ev.OK }

func handshakeRefused(ev server.AuthEvent) bool { return ev.Stage == server.StageHandshake && !ev.OK }

func loginJSON(user, password string) []byte {
	b, _ := json.Marshal(map[string]string{"username": user, "password": password})
	return b
}

func TestEveryPatternAuthenticatesTheRightPrincipal(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	cc := &clientcredentials.Config{ClientID: wsauthtest.ClientID, ClientSecret: wsauthtest.ClientSecret, TokenURL: srv.TokenURL()}
	for _, tc := range []struct {
		method  server.Method
		subject string
		auth    wsauth.Authenticator
	}{
		{server.MethodTicket, wsauthtest.Alice, &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}},
		{server.MethodQuery, wsauthtest.Bob, &wsauth.QueryAuth{Tokens: srv.TokenSource(wsauthtest.Bob, time.Hour)}},
		{server.MethodFirstMessage, "carol", &wsauth.FirstMessageAuth{Tokens: srv.TokenSource("carol", time.Hour)}},
		{server.MethodCookie, wsauthtest.Bob, &wsauth.CookieAuth{LoginURL: srv.LoginURL(), LoginBody: loginJSON(wsauthtest.Bob, wsauthtest.BobPassword), Origin: wsauthtest.Origin}},
		{server.MethodHeader, wsauthtest.ClientID, &wsauth.HeaderAuth{Tokens: wsauth.TokenFunc(cc.Token)}},
		{server.MethodSubprotocol, wsauthtest.Alice, &wsauth.SubprotocolAuth{Tokens: wsauth.StaticToken(srv.Token(wsauthtest.Alice, time.Hour)), Subprotocol: wsauthtest.Subprotocol}},
	} {
		t.Run(string(tc.method), func(t *testing.T) {
			before := len(srv.AuthEvents())
			c := dial(t, srv.URL(), &wsauth.Options{Auth: tc.auth})
			echo(t, c, "hello "+string(tc.method))
			if tc.method == server.MethodSubprotocol {
				require.Equal(t, wsauthtest.Subprotocol, c.Subprotocol())
			}
			require.NoError(t, c.Close())
			var got []server.AuthEvent
			for _, ev := range srv.AuthEvents()[before:] {
				if ev.Stage == server.StageHandshake {
					got = append(got, ev)
				}
			}
			require.Len(t, got, 1)
			require.True(t, got[0].OK)
			require.Equal(t, tc.method, got[0].Method)
			require.Equal(t, tc.subject, got[0].Subject)
		})
	}
}

func TestTokens(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	src := srv.TokenSource(wsauthtest.Alice, time.Hour)
	a, err := src.Token()
	require.NoError(t, err)
	b, err := src.Token()
	require.NoError(t, err)
	require.NotEqual(t, a.AccessToken, b.AccessToken, "a new token on every call")
	require.Equal(t, "Bearer", a.TokenType)
	require.WithinDuration(t, time.Now().Add(time.Hour), a.Expiry, 2*time.Second)

	id, err := srv.Issuer().Verify(context.Background(), a.AccessToken)
	require.NoError(t, err)
	require.Equal(t, wsauthtest.Alice, id.Subject)
	require.Equal(t, a.Expiry, id.Expiry, "the source's Expiry is the token's")

	id, err = srv.Issuer().Verify(context.Background(), srv.Token(wsauthtest.Bob, time.Minute))
	require.NoError(t, err)
	require.Equal(t, wsauthtest.Bob, id.Subject)

	// A token that has already expired is refused, and the refusal recorded.
	_, err = wsauth.Dial(ctxFor(t), srv.URL(), &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: wsauth.StaticToken(srv.Token(wsauthtest.Alice, -time.Minute))},
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
	})
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, err, &gu)
	require.Equal(t, http.StatusUnauthorized, gu.HTTPStatus)
	refused, err := srv.WaitAuthEvents(ctxFor(t), 1, handshakeRefused)
	require.NoError(t, err)
	require.Equal(t, server.MethodHeader, refused[0].Method)
	require.Equal(t, http.StatusUnauthorized, refused[0].Status)
}

func TestHandlerAndConfigOptions(t *testing.T) {
	var decisions atomic.Int64
	srv := wsauthtest.NewServer(t,
		wsauthtest.WithHandler(server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			_ = c.Write(ctx, websocket.MessageText, []byte("hello "+c.Principal().Subject))
			server.Echo().ServeWS(ctx, c)
		})),
		wsauthtest.WithConfig(func(c *server.Config) {
			c.WSPath, c.TicketPath = "/socket", "/tickets"
			c.SessionTTL = 30 * time.Second
			c.OnAuth = func(server.AuthEvent) { decisions.Add(1) }
		}),
	)
	require.True(t, strings.HasSuffix(srv.URL(), "/socket"))
	require.True(t, strings.HasSuffix(srv.TicketURL(), "/tickets"))
	c := dial(t, srv.URL(), &wsauth.Options{
		Auth: &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Bob, time.Hour)},
	})
	_, msg, err := c.Receive(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, "hello bob", string(msg), "the handler of WithHandler serves the connection")
	echo(t, c, "and then echoes")
	// The ticket endpoint and the handshake each decided once; the user's
	// OnAuth saw them, and so did the Server's record.
	require.EqualValues(t, 2, decisions.Load())
	require.Len(t, srv.AuthEvents(), 2)

	// The first-message pattern learns the session's lifetime before it
	// reports the connection: the one WithConfig set.
	ev := newEvents()
	dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.FirstMessageAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}, OnEvent: ev.on})
	connected := ev.wait(t, 1, kind(wsauth.EventConnected))
	require.WithinDuration(t, time.Now().Add(30*time.Second), connected.Expiry, 10*time.Second, "the session lifetime of WithConfig")
}

func TestCloseAllAndExpireSessions(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	ev := newEvents()
	c := dial(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
	})
	authenticated(t, srv, 1)
	require.Equal(t, 1, srv.CloseAll(websocket.StatusPolicyViolation, "Unauthorized"))
	re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, re.Action)
	require.Equal(t, wsauth.StatusPolicyViolation, re.Code)
	require.Equal(t, "Unauthorized", re.CloseReason)
	ev.wait(t, 2, kind(wsauth.EventConnected))
	echo(t, c, "after 1008")

	authenticated(t, srv, 2)
	require.Equal(t, 0, srv.ExpireSessions(wsauthtest.Bob), "nobody else's session ends")
	require.Equal(t, 1, srv.ExpireSessions(wsauthtest.Alice))
	re = ev.wait(t, 2, kind(wsauth.EventReconnecting))
	require.Equal(t, "Session expired", re.CloseReason)
	ev.wait(t, 3, kind(wsauth.EventConnected))
	echo(t, c, "after expiry")
	require.EqualValues(t, 3, srv.Stats().TicketsConsumed, "a new ticket for every connection")
}

func TestRevokeHoldsAcrossRestartUntilUnrevoke(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	ev := newEvents()
	c := dial(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast(), MaxAuthFailures: 2},
	})
	authenticated(t, srv, 1)
	require.Equal(t, 1, srv.Revoke(wsauthtest.Alice))
	first := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Equal(t, "Revoked", first.CloseReason)
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("the revoked client did not give up")
	}
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, c.Err(), &gu)

	require.NoError(t, srv.Restart())
	_, err := wsauth.Dial(ctxFor(t), srv.URL(), &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast(), MaxAuthFailures: 1},
	})
	require.ErrorAs(t, err, &gu, "still revoked after the restart")
	require.Equal(t, http.StatusUnauthorized, gu.HTTPStatus)

	srv.Unrevoke(wsauthtest.Alice)
	c = dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}})
	echo(t, c, "welcome back")
}

func TestRefuseHandshakesAndPause(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	srv.RefuseHandshakes(http.StatusServiceUnavailable, 2)
	ev := newEvents()
	opts := &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast(), MaxRetryAfter: time.Millisecond},
	}
	c := dial(t, srv.URL(), opts)
	for i := 1; i <= 2; i++ {
		re := ev.wait(t, i, kind(wsauth.EventReconnecting))
		require.Equal(t, http.StatusServiceUnavailable, re.HTTPStatus)
		require.Equal(t, wsauth.ActionRetry, re.Action)
	}
	require.Equal(t, 3, ev.wait(t, 1, kind(wsauth.EventConnected)).Attempt)
	echo(t, c, "third time lucky")
	require.NoError(t, c.Close())

	srv.Pause(time.Hour)
	ev = newEvents()
	opts.OnEvent = ev.on
	paused, err := wsauth.New(srv.URL(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { paused.Close() })
	re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Equal(t, http.StatusServiceUnavailable, re.HTTPStatus)
	var he *wsauth.HTTPError
	require.ErrorAs(t, re.Err, &he)
	require.Greater(t, he.RetryAfter, time.Minute, "the pause says how long in Retry-After")
	srv.Pause(0)
	ev.wait(t, 1, kind(wsauth.EventConnected))
	echo(t, paused, "after the pause")
}

func TestStopAndStartOnTheSameAddress(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	addr := srv.Addr()
	require.Equal(t, "ws://"+addr+"/ws", srv.URL())
	ev := newEvents()
	c := dial(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
	})
	echo(t, c, "before")

	srv.Stop()
	srv.Stop() // a second Stop changes nothing
	down := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.StatusGoingAway, down.Code)
	ev.wait(t, 2, kind(wsauth.EventReconnecting)) // an attempt failed: nobody listens
	require.Zero(t, srv.CloseAll(websocket.StatusNormalClosure, ""), "the hooks of a stopped server touch nothing")
	require.NoError(t, srv.Start())
	require.NoError(t, srv.Start(), "starting a running server changes nothing")
	require.Equal(t, addr, srv.Addr())
	ev.wait(t, 2, kind(wsauth.EventConnected))
	echo(t, c, "after")

	require.NoError(t, srv.Restart())
	ev.wait(t, 3, kind(wsauth.EventConnected))
	echo(t, c, "after the restart")
	st := srv.Stats()
	require.EqualValues(t, 3, st.Authenticated, "counters add up across restarts")
	require.EqualValues(t, 3, st.TicketsConsumed)
	require.EqualValues(t, 1, st.Live)
}

func TestGoingAwayMovesTheClient(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	ev := newEvents()
	c := dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.QueryAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}, OnEvent: ev.on})
	authenticated(t, srv, 1)
	require.Equal(t, 1, srv.GoingAway("maintenance"))
	ev.wait(t, 1, kind(wsauth.EventRotated))
	echo(t, c, "on the new connection")
	_, err := srv.WaitAuthEvents(ctxFor(t), 2, handshakeOK)
	require.NoError(t, err)
}

func TestProxyFaults(t *testing.T) {
	t.Run("latency and cut", func(t *testing.T) {
		srv := wsauthtest.NewServer(t)
		px := srv.Proxy()
		require.Same(t, px, srv.Proxy(), "one proxy per server")
		require.Equal(t, "ws://"+px.Addr()+"/ws", px.URL())
		require.Equal(t, "http://"+px.Addr(), px.HTTPURL())
		ev := newEvents()
		c := dial(t, px.URL(), &wsauth.Options{
			Auth:      &wsauth.TicketAuth{Endpoint: px.HTTPURL() + "/api/ws-ticket", Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
			OnEvent:   ev.on,
			Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
		})
		px.SetLatency(20 * time.Millisecond)
		echo(t, c, "slowly")
		px.SetLatency(0)
		// The ticket request and the WebSocket both went through the proxy.
		require.GreaterOrEqual(t, px.Conns(), 1)
		accepted := px.Accepted()
		require.GreaterOrEqual(t, px.Cut(), 1)
		re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
		require.Equal(t, wsauth.ActionRetry, re.Action)
		ev.wait(t, 2, kind(wsauth.EventConnected))
		echo(t, c, "after the cut")
		require.Greater(t, px.Accepted(), accepted, "the client came back through the proxy")
	})
	t.Run("blackhole", func(t *testing.T) {
		srv := wsauthtest.NewServer(t)
		px := srv.Proxy()
		ev := newEvents()
		c := dial(t, px.URL(), &wsauth.Options{
			Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
			OnEvent:   ev.on,
			Timeouts:  wsauth.Timeouts{Dial: time.Second},
			Liveness:  wsauth.Liveness{PingInterval: 100 * time.Millisecond, PongTimeout: 2 * time.Second},
			Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
		})
		px.Blackhole(true)
		re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
		require.ErrorIs(t, re.Err, wsauth.ErrPingTimeout)
		px.Blackhole(false)
		ev.wait(t, 2, kind(wsauth.EventConnected))
		echo(t, c, "out of the hole")
	})
	t.Run("stall", func(t *testing.T) {
		srv := wsauthtest.NewServer(t)
		px := srv.Proxy()
		c := dial(t, px.URL(), &wsauth.Options{
			Auth:     &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
			Liveness: wsauth.Liveness{PingInterval: -1},
		})
		px.Stall(true)
		require.NoError(t, c.SendText(ctxFor(t), "held"))
		// The frame (2 bytes of header, 4 of mask, the payload) is in the
		// proxy, so nothing of it reached the server.
		require.Eventually(t, func() bool { return px.Held() >= int64(2+4+len("held")) }, waitLong, time.Millisecond)
		px.Stall(false)
		_, msg, err := c.Receive(ctxFor(t))
		require.NoError(t, err)
		require.Equal(t, "held", string(msg), "held data arrives once the stall ends")
	})
	t.Run("refuse", func(t *testing.T) {
		srv := wsauthtest.NewServer(t)
		px := srv.Proxy()
		ev := newEvents()
		c := dial(t, px.URL(), &wsauth.Options{
			Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
			OnEvent:   ev.on,
			Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
		})
		px.Refuse(true)
		px.Cut()
		ev.wait(t, 3, kind(wsauth.EventReconnecting))
		for _, e := range ev.all() {
			if e.Kind == wsauth.EventReconnecting {
				require.Equal(t, wsauth.ActionRetry, e.Action, "a refused connection says nothing against the credentials")
			}
		}
		px.Refuse(false)
		ev.wait(t, 2, kind(wsauth.EventConnected))
		echo(t, c, "accepted again")
		require.NoError(t, px.Close())
		require.NoError(t, px.Close(), "Close is idempotent")
	})
}

func TestTLS(t *testing.T) {
	plain := wsauthtest.NewServer(t)
	require.Nil(t, plain.TLSConfig())

	srv := wsauthtest.NewServer(t, wsauthtest.WithTLS())
	require.True(t, strings.HasPrefix(srv.URL(), "wss://"))
	require.True(t, strings.HasPrefix(srv.HTTPURL(), "https://"))
	require.True(t, strings.HasPrefix(srv.Proxy().URL(), "wss://"))

	resp, err := srv.Client().Post(srv.LoginURL(), "application/json", strings.NewReader(string(loginJSON(wsauthtest.Alice, wsauthtest.AlicePassword))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	ev := newEvents()
	c := dial(t, srv.Proxy().URL(), &wsauth.Options{
		Auth:      &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		TLSConfig: srv.TLSConfig(),
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: fast()},
	})
	echo(t, c, "over TLS, through the proxy")
	require.NoError(t, srv.Restart())
	ev.wait(t, 2, kind(wsauth.EventConnected))
	echo(t, c, "the restarted server has the same certificate")

	// Without the server's certificate the client does not trust it.
	ev = newEvents()
	untrusting, err := wsauth.New(srv.URL(), &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent:   ev.on,
		Reconnect: wsauth.ReconnectPolicy{Backoff: &wsauth.FullJitter{Initial: time.Hour}},
	})
	require.NoError(t, err)
	defer untrusting.Close()
	re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Contains(t, re.Err.Error(), "certificate")
}

func TestEndpoints(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	ctx := ctxFor(t)

	// The token endpoint serves the demo client.
	cc := &clientcredentials.Config{ClientID: wsauthtest.ClientID, ClientSecret: wsauthtest.ClientSecret, TokenURL: srv.TokenURL()}
	tok, err := cc.Token(ctx)
	require.NoError(t, err)
	id, err := srv.Issuer().Verify(ctx, tok.AccessToken)
	require.NoError(t, err)
	require.Equal(t, wsauthtest.ClientID, id.Subject)
	cc.ClientSecret = "wrong"
	_, err = cc.Token(ctx)
	require.Error(t, err)

	// Login fills a jar; the cookie authenticates a client; logout ends it.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := *srv.Client()
	hc.Jar = jar
	resp, err := hc.Post(srv.LoginURL(), "application/json", strings.NewReader(string(loginJSON(wsauthtest.Bob, wsauthtest.BobPassword))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	cookie := dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.CookieAuth{Jar: jar, Origin: wsauthtest.Origin}, Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 1}})
	authenticated(t, srv, 1)
	// Log out with a copy of the cookie, so that the client's jar keeps
	// the ended session's cookie whatever the order of events.
	u, err := url.Parse(srv.LoginURL())
	require.NoError(t, err)
	logout, err := http.NewRequest(http.MethodPost, srv.LogoutURL(), nil)
	require.NoError(t, err)
	for _, ck := range jar.Cookies(u) {
		logout.AddCookie(ck)
	}
	resp, err = srv.Client().Do(logout)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	select {
	case <-cookie.Done():
	case <-time.After(waitLong):
		t.Fatal("the logged-out client did not stop")
	}
	// "Logged out" ends the session; the cookie is offered once more and
	// refused, which stops a client allowed one refusal.
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, cookie.Err(), &gu)
	require.Equal(t, "Unauthorized", gu.Reason)

	// A wrong password is refused and recorded.
	resp, err = srv.Client().Post(srv.LoginURL(), "application/json", strings.NewReader(string(loginJSON(wsauthtest.Alice, "wrong"))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	refused, err := srv.WaitAuthEvents(ctx, 1, func(ev server.AuthEvent) bool { return ev.Stage == server.StageLogin && !ev.OK })
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, refused[0].Status)

	// The fault hooks are reachable over HTTP too, for clients in other
	// processes.
	c := dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}})
	echo(t, c, "before the control call")
	resp, err = srv.Client().Post(srv.HTTPURL()+"/control/close-all", "application/json", strings.NewReader(`{"code":4000,"reason":"control"}`))
	require.NoError(t, err)
	var out struct{ Affected int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	require.GreaterOrEqual(t, out.Affected, 1)
}

func TestWaitAuthEventsEndsWithTheContext(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	c := dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}})
	echo(t, c, "one connection")
	ctx, cancel := context.WithCancel(ctxFor(t))
	cancel()
	got, err := srv.WaitAuthEvents(ctx, 2, handshakeOK)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, got, 1, "what matched so far")
	got, err = srv.WaitAuthEvents(ctxFor(t), 1, handshakeOK)
	require.NoError(t, err)
	require.Equal(t, wsauthtest.Alice, got[0].Subject)
}

func TestAfterTheTestEnded(t *testing.T) {
	var srv *wsauthtest.Server
	t.Run("inner", func(t *testing.T) {
		srv = wsauthtest.NewServer(t)
		srv.Proxy()
		c := dial(t, srv.URL(), &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}})
		echo(t, c, "inside")
	})
	err := srv.Start()
	require.Error(t, err, "no restart after the cleanup")
	require.Panics(t, func() { srv.Proxy() })
	require.Zero(t, srv.CloseAll(websocket.StatusNormalClosure, ""))
	require.EqualValues(t, 1, srv.Stats().Authenticated, "the record stays readable")
	require.Len(t, srv.AuthEvents(), 1)
	ev := newEvents()
	c, err := wsauth.New(srv.URL(), &wsauth.Options{OnEvent: ev.on, Reconnect: wsauth.ReconnectPolicy{Backoff: &wsauth.FullJitter{Initial: time.Hour}}})
	require.NoError(t, err)
	defer c.Close()
	re := ev.wait(t, 1, kind(wsauth.EventReconnecting))
	require.Contains(t, re.Err.Error(), "refused", "nothing listens any more")
}

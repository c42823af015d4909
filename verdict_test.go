package wsauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/wsauthtest"
)

// plainApp is a server as applications write it on net/http and
// coder/websocket, with nothing of the wsauth protocol: it checks ?token=
// after the upgrade, closes 1008 at once on a bad one, and serves a good
// one. It records every message it reads.
type plainApp struct {
	good string
	// welcome, when set, is sent as soon as a good token is seen.
	welcome string
	// closeOnFirst closes 1008 on the first message read, without
	// answering: a refusal the server takes its time over.
	closeOnFirst bool
	// announce sets the reference server's Wsauth-Verdict header and
	// sends auth_ok after announceDelay.
	announce      bool
	announceDelay time.Duration

	mu       sync.Mutex
	received []string
	upgrades int
}

func (a *plainApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.announce {
		w.Header().Set(verdictHeader, verdictAuthOK)
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	a.mu.Lock()
	a.upgrades++
	a.mu.Unlock()
	ctx := r.Context()
	if r.URL.Query().Get("token") != a.good {
		ws.Close(websocket.StatusPolicyViolation, "Unauthorized")
		return
	}
	if a.announce {
		t := time.NewTimer(a.announceDelay) // the server's own slowness, under test
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		if ws.Write(ctx, websocket.MessageText, []byte(`{"type":"auth_ok","expires_in":600}`)) != nil {
			return
		}
	}
	if a.welcome != "" && ws.Write(ctx, websocket.MessageText, []byte(a.welcome)) != nil {
		return
	}
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return
		}
		a.mu.Lock()
		a.received = append(a.received, string(data))
		a.mu.Unlock()
		if a.closeOnFirst {
			ws.Close(websocket.StatusPolicyViolation, "Unauthorized")
			return
		}
		if ws.Write(ctx, typ, data) != nil {
			return
		}
	}
}

func (a *plainApp) messages() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.received...)
}

// serve starts h on loopback and returns its ws:// URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func TestVerdictRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		app     *plainApp
		opts    Options
		want    Verdict
		welcome string
	}{
		{name: "a server that confirms nothing: the window", app: &plainApp{good: "tok"}, want: VerdictWindow},
		{name: "the first application message", app: &plainApp{good: "tok", welcome: "hello there"}, want: VerdictFirstMessage, welcome: "hello there"},
		{name: "no window: the first message is awaited", app: &plainApp{good: "tok", welcome: "hi"},
			opts: Options{Timeouts: Timeouts{Verdict: -1}}, want: VerdictFirstMessage, welcome: "hi"},
		{name: "an announced verdict is awaited past the window", app: &plainApp{good: "tok", announce: true, announceDelay: 50 * time.Millisecond},
			opts: Options{Timeouts: Timeouts{Verdict: time.Millisecond}}, want: VerdictExplicit},
		{name: "the plain dialect does not wait", app: &plainApp{good: "tok"}, opts: Options{Dialect: PlainDialect}, want: VerdictHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			o := tc.opts
			o.Auth, o.OnEvent = &QueryAuth{Tokens: StaticToken("tok")}, rec.on
			c, err := Dial(testCtx(t), serve(t, tc.app), &o)
			require.NoError(t, err)
			defer c.Close()
			ev := rec.waitFor(t, 1, kind(EventConnected))
			require.Equal(t, tc.want, ev.Verdict, "events: %v", rec.all())
			require.Contains(t, ev.String(), "verdict="+tc.want.String())
			if tc.welcome != "" {
				_, data, err := c.Receive(testCtx(t))
				require.NoError(t, err)
				require.Equal(t, tc.welcome, string(data), "the message that decided is the application's")
			}
			echo(t, c, "after the verdict")
		})
	}

	t.Run("header credentials: the 101 decides", func(t *testing.T) {
		rec := newRecorder()
		c, err := Dial(testCtx(t), serve(t, &plainApp{good: ""}), &Options{Auth: &HeaderAuth{Tokens: StaticToken("tok")}, OnEvent: rec.on})
		require.NoError(t, err)
		defer c.Close()
		require.Equal(t, VerdictHandshake, rec.waitFor(t, 1, kind(EventConnected)).Verdict)
	})

	t.Run("the reference server's auth_ok", func(t *testing.T) {
		env := newServer(t)
		rec := newRecorder()
		dialed(t, env, &Options{
			Auth:     &QueryAuth{Tokens: env.TokenSource("alice", time.Hour)},
			OnEvent:  rec.on,
			Timeouts: Timeouts{Verdict: time.Nanosecond},
		})
		require.Equal(t, VerdictExplicit, rec.waitFor(t, 1, kind(EventConnected)).Verdict,
			"the server announces its verdict, so the client waits for it however short the window")
	})
}

func TestRefusalInsideTheVerdictWindowWritesNothing(t *testing.T) {
	app := &plainApp{good: "good"}
	c, err := New(serve(t, app), &Options{
		Auth:      &QueryAuth{Tokens: StaticToken("bad")},
		Timeouts:  Timeouts{Verdict: waitLong},
		Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast()},
	})
	require.NoError(t, err)
	sent := make(chan error, 1)
	go func() { sent <- c.SendText(testCtx(t), "queued before the verdict") }()
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, StatusPolicyViolation, gu.Code)
	require.ErrorAs(t, <-sent, &gu, "the queued send failed with the stop cause")
	require.Empty(t, app.messages(), "nothing was written to a refused connection")
	require.NoError(t, c.Close())
}

func TestLateRefusalCountsAsRefusal(t *testing.T) {
	// The server lets the window pass, then closes 1008 on the client's
	// first message without ever having sent one: a refusal, so a static
	// token is not offered again and the client gives up.
	app := &plainApp{good: "tok", closeOnFirst: true}
	rec := newRecorder()
	c, err := New(serve(t, app), &Options{
		Auth:      &QueryAuth{Tokens: StaticToken("tok")},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{MaxAuthFailures: 3, Backoff: fast()},
	})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, VerdictWindow, rec.waitFor(t, 1, kind(EventConnected)).Verdict)
	require.NoError(t, c.SendText(testCtx(t), "first"))
	require.Equal(t, ReasonRejected, rec.waitFor(t, 2, kind(EventConnecting)).Reason)
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.ErrorIs(t, c.Err(), ErrCredentialRejected, "the static token was never offered again")
	app.mu.Lock()
	defer app.mu.Unlock()
	require.Equal(t, 1, app.upgrades)
}

// adminClose is a plain server that serves a static token and lets the
// test close every live connection with 1008, the way an administrator's
// "policy violation" or a session reset does.
type adminClose struct {
	good string
	mu   sync.Mutex
	live map[*websocket.Conn]bool
	seen []string
}

func (a *adminClose) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	a.seen = append(a.seen, tok)
	a.mu.Unlock()
	if tok != a.good {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	a.mu.Lock()
	if a.live == nil {
		a.live = map[*websocket.Conn]bool{}
	}
	a.live[ws] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.live, ws)
		a.mu.Unlock()
	}()
	for {
		typ, data, err := ws.Read(r.Context())
		if err != nil || ws.Write(r.Context(), typ, data) != nil {
			return
		}
	}
}

func (a *adminClose) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ws := range a.live {
		go ws.Close(websocket.StatusPolicyViolation, "Policy violation")
	}
}

func TestPolicyCloseOfAWorkingSessionIsNoRefusal(t *testing.T) {
	// A bot on a long-lived static token: the server ends its working
	// session with 1008 five times; each time the client authenticates
	// again with the same token, and it never gives up.
	app := &adminClose{good: "long-lived"}
	rec := newRecorder()
	c, err := Dial(testCtx(t), serve(t, app), &Options{
		Auth:      &HeaderAuth{Tokens: StaticToken("long-lived")},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast()},
	})
	require.NoError(t, err)
	defer c.Close()
	for i := 1; i <= 5; i++ {
		echo(t, c, "working")
		app.closeAll()
		ev := rec.waitFor(t, i, kind(EventReconnecting))
		require.Equal(t, ActionReauth, ev.Action)
		require.Equal(t, StatusPolicyViolation, ev.Code)
		require.Equal(t, ReasonSessionEnded, rec.waitFor(t, i+1, kind(EventConnecting)).Reason)
		rec.waitFor(t, i+1, kind(EventConnected))
	}
	echo(t, c, "still working")
	require.Equal(t, StateConnected, c.State())
	app.mu.Lock()
	defer app.mu.Unlock()
	require.Equal(t, []string{"long-lived", "long-lived", "long-lived", "long-lived", "long-lived", "long-lived"}, app.seen)
}

func TestReauthAfterPolicyCloseRefusedCounts(t *testing.T) {
	// The session is closed and the server now refuses the token: that
	// refusal counts, and the client stops without offering it a third
	// time.
	app := &adminClose{good: "tok"}
	rec := newRecorder()
	c, err := Dial(testCtx(t), serve(t, app), &Options{
		Auth:      &HeaderAuth{Tokens: StaticToken("tok")},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{MaxAuthFailures: 3, Backoff: fast()},
	})
	require.NoError(t, err)
	defer c.Close()
	echo(t, c, "working")
	app.mu.Lock()
	app.good = "another"
	app.mu.Unlock()
	app.closeAll()
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, http.StatusUnauthorized, gu.HTTPStatus)
	require.ErrorIs(t, c.Err(), ErrCredentialRejected)
	app.mu.Lock()
	defer app.mu.Unlock()
	require.Equal(t, []string{"tok", "tok"}, app.seen, "offered again once after the close, never after the refusal")
}

func TestProvidersByReason(t *testing.T) {
	// What each provider does with each reason, against a counting source.
	for _, tc := range []struct {
		why         Reason
		wantFetch   bool // asks the source again
		wantRefused bool // refuses to offer the same static token
	}{
		{ReasonInitial, true, false},
		{ReasonReconnect, false, false},
		{ReasonSessionEnded, true, false},
		{ReasonRejected, true, true},
	} {
		for _, mk := range []func(src *staticSource) Authenticator{
			func(src *staticSource) Authenticator { return &QueryAuth{Tokens: src} },
			func(src *staticSource) Authenticator { return &HeaderAuth{Tokens: src} },
			func(src *staticSource) Authenticator { return &FirstMessageAuth{Tokens: src} },
			func(src *staticSource) Authenticator { return &SubprotocolAuth{Tokens: src} },
		} {
			src := &staticSource{tok: "static-token"}
			a := mk(src)
			t.Run(fmt.Sprintf("%s/%T", tc.why, a), func(t *testing.T) {
				prepare := func(why Reason) error {
					u, err := url.Parse("ws://127.0.0.1:1/ws")
					require.NoError(t, err)
					hs := &Handshake{URL: u, Header: http.Header{}, red: &redactor{}}
					_, err = a.Prepare(context.Background(), why, hs)
					return err
				}
				require.NoError(t, prepare(ReasonInitial))
				require.Equal(t, 1, src.calls())
				err := prepare(tc.why)
				if tc.why == ReasonInitial {
					return
				}
				if tc.wantRefused {
					require.ErrorIs(t, err, ErrCredentialRejected)
				} else {
					require.NoError(t, err)
				}
				if tc.wantFetch {
					require.Equal(t, 2, src.calls())
				} else {
					require.Equal(t, 1, src.calls(), "a valid cached token is reused")
				}
			})
		}
	}
}

func TestTicketAndCookieProvidersByReason(t *testing.T) {
	env := newServer(t)
	hs := func() *Handshake {
		u, err := url.Parse(env.URL())
		require.NoError(t, err)
		return &Handshake{URL: u, Header: http.Header{}, HTTPClient: http.DefaultClient, red: &redactor{}}
	}
	logins := func() int {
		n := 0
		for _, ev := range env.AuthEvents() {
			if ev.Stage == "login" && ev.OK {
				n++
			}
		}
		return n
	}

	t.Run("ticket: a refused ticket says nothing against the bearer token", func(t *testing.T) {
		src := &staticSource{tok: env.Token("alice", time.Hour)}
		a := &TicketAuth{Endpoint: env.TicketURL(), Tokens: src}
		for _, why := range []Reason{ReasonInitial, ReasonRejected, ReasonReconnect} {
			_, err := a.Prepare(testCtx(t), why, hs())
			require.NoError(t, err, why)
		}
		require.Equal(t, 1, src.calls(), "the cached bearer token bought every ticket")
		_, err := a.Prepare(testCtx(t), ReasonSessionEnded, hs())
		require.NoError(t, err)
		require.Equal(t, 2, src.calls(), "an ended session asks for a fresh bearer token")
	})

	t.Run("cookie: an ended session or a refusal logs in again", func(t *testing.T) {
		a := &CookieAuth{LoginURL: env.LoginURL(), LoginBody: loginBody(wsauthtest.Bob, wsauthtest.BobPassword)}
		before := logins()
		_, err := a.Prepare(testCtx(t), ReasonInitial, hs())
		require.NoError(t, err)
		_, err = a.Prepare(testCtx(t), ReasonReconnect, hs())
		require.NoError(t, err)
		require.Equal(t, before+1, logins(), "the jar's cookie is reused on a plain reconnect")
		_, err = a.Prepare(testCtx(t), ReasonSessionEnded, hs())
		require.NoError(t, err)
		require.Equal(t, before+2, logins())
		_, err = a.Prepare(testCtx(t), ReasonRejected, hs())
		require.NoError(t, err, "a new login gives a new cookie, which may be offered")
		require.Equal(t, before+3, logins())
	})
}

// staticSource hands out one token, valid for an hour, and counts calls.
type staticSource struct {
	mu  sync.Mutex
	tok string
	n   int
}

func (s *staticSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return &oauth2.Token{AccessToken: s.tok, Expiry: time.Now().Add(time.Hour)}, nil
}

func (s *staticSource) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func TestCookieLoginTellsTheSessionsExpiry(t *testing.T) {
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3ssion-value", Path: "/", MaxAge: 120})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(login.Close)
	u, err := url.Parse(wsOf(login.URL) + "/ws")
	require.NoError(t, err)
	a := &CookieAuth{LoginURL: login.URL + "/login", LoginBody: []byte(`{"username":"u","password":"p4ssword"}`)}
	hs := &Handshake{URL: u, Header: http.Header{}, HTTPClient: http.DefaultClient, red: &redactor{}}
	proof, err := a.Prepare(testCtx(t), ReasonInitial, hs)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(2*time.Minute), proof.Expiry, 10*time.Second, "Max-Age of the login's cookie")
	require.Equal(t, "REDACTED", hs.red.String("s3ssion-value"), "the cookie is a secret")
}

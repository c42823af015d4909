package wsauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestRefreshWorksForTicketAndCookieProofs(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 3 * time.Second }))
	for _, tc := range []struct {
		name string
		o    *Options
	}{
		{"ticket, refreshed with the provider's own bearer token", &Options{
			Auth: &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)}}},
		{"cookie, refreshed with RenewalPolicy.Tokens", &Options{
			Auth:    &CookieAuth{LoginURL: env.LoginURL(), LoginBody: loginBody(wsauthtest.Alice, wsauthtest.AlicePassword)},
			Renewal: RenewalPolicy{Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			tc.o.OnEvent = rec.on
			c := dialed(t, env, tc.o)
			rec.waitFor(t, 2, kind(EventRefreshed))
			require.Equal(t, 0, rec.count(EventReconnecting))
			require.Equal(t, 1, rec.count(EventConnected))
			require.Equal(t, "alice", strings.Fields(ask(t, c, "whoami"))[0])
		})
	}

	// A cookie with no token source cannot refresh: the client reconnects
	// on its own ahead of expiry instead of being closed at it.
	rec := newRecorder()
	dialed(t, env, &Options{OnEvent: rec.on,
		Auth: &CookieAuth{LoginURL: env.LoginURL(), LoginBody: loginBody(wsauthtest.Alice, wsauthtest.AlicePassword)}})
	rec.waitFor(t, 2, kind(EventConnected))
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, time.Duration(0), ev.Delay)
	require.NotEqual(t, "Session expired", ev.CloseReason)
	connecting := rec.waitFor(t, 2, kind(EventConnecting))
	require.Equal(t, ReasonSessionEnded, connecting.Reason, "fresh credentials: the cookie provider logs in again")
}

// noticeOnly is the default dialect minus what auth_ok says about the
// lifetime: the client learns the expiry from the server's notices alone.
type noticeOnly struct{ Dialect }

// RefreshMessage forwards to the wrapped dialect: a wrapper must pass on
// the optional methods it wants the client to find.
func (d noticeOnly) RefreshMessage(token string) ([]byte, error) {
	return d.Dialect.(Refresher).RefreshMessage(token)
}

func (d noticeOnly) Inspect(typ MessageType, data []byte) Inbound {
	if strings.Contains(string(data), `"auth_ok"`) {
		return Inbound{Kind: InboundIgnore}
	}
	return d.Dialect.Inspect(typ, data)
}

func TestExpiryNoticesAloneDriveRefresh(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) {
		c.SessionTTL = 2 * time.Second
		c.ExpiryNotice = 1500 * time.Millisecond
	}))
	rec := newRecorder()
	// auth_ok's lifetime is ignored: only the token's hour is known at
	// connect.
	dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: StaticToken(env.Token(wsauthtest.Alice, time.Hour))},
		Dialect: noticeOnly{DefaultDialect}, OnEvent: rec.on})
	require.WithinDuration(t, time.Now().Add(time.Hour), rec.waitFor(t, 1, kind(EventConnected)).Expiry, time.Minute)
	rec.waitFor(t, 3, kind(EventRefreshed))
	require.Equal(t, 0, rec.count(EventReconnecting))
}

func TestOnConnectRunsBeforeQueuedSendsOnEveryConnection(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c, err := New(env.URL(), &Options{
		Auth:    &HeaderAuth{Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent: rec.on,
		OnConnect: func(ctx context.Context, s *Session) error {
			return s.Send(ctx, MessageText, []byte("subscribe "+s.Reason.String()))
		},
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	sent := make(chan error, 1)
	go func() { sent <- c.SendText(testCtx(t), "queued before the connection") }()
	require.NoError(t, <-sent)
	_, first, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "subscribe initial", string(first), "OnConnect writes ahead of the queue")
	_, second, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "queued before the connection", string(second))

	env.CloseAll(websocket.StatusGoingAway, "restart")
	rec.waitFor(t, 2, kind(EventConnected))
	_, again, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "subscribe reconnect", string(again), "and again on the new connection")
}

func TestOnConnectErrorRetries(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	failures := 2
	c := dialed(t, env, &Options{
		Auth:    &HeaderAuth{Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent: rec.on,
		OnConnect: func(ctx context.Context, s *Session) error {
			if failures > 0 {
				failures--
				return errors.New("subscription refused")
			}
			return nil
		},
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	echo(t, c, "after two failed OnConnects")
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionRetry, ev.Action)
	require.Contains(t, ev.Err.Error(), "subscription refused")
	require.Equal(t, 2, rec.count(EventReconnecting))
}

func TestLibraryExponentialBackOffWorksToo(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.MaxInterval, eb.MaxElapsedTime = 20*time.Millisecond, 200*time.Millisecond, 0
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: eb}})
	env.Stop()
	rec.waitFor(t, 3, kind(EventReconnecting))
	require.NoError(t, env.Start())
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "back")
	for _, e := range rec.all() {
		if e.Kind == EventReconnecting && e.Code == 0 {
			require.Greater(t, e.Delay, time.Duration(0), "equal jitter never waits zero")
		}
	}

	// A policy that says stop ends the client with a GaveUpError.
	stopAfter := backoff.WithMaxRetries(backoff.NewConstantBackOff(time.Millisecond), 2)
	c2, err := New(env.URL(), &Options{Auth: &HeaderAuth{Tokens: env.TokenSource(wsauthtest.Alice, time.Hour)}, Reconnect: ReconnectPolicy{Backoff: stopAfter}})
	require.NoError(t, err)
	require.NoError(t, c2.WaitConnected(testCtx(t)))
	env.Stop()
	waitDone(t, c2)
	var gu *GaveUpError
	require.ErrorAs(t, c2.Err(), &gu)
	require.Equal(t, "backoff", gu.Why)
	require.NoError(t, c2.Close())
}

package wsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// stream runs steady traffic both ways: a sender numbering its messages
// and a receiver checking that the echoes come back complete and in order.
type stream struct {
	c       *Client
	stop    chan struct{}
	sending chan struct{} // closed when the sender has returned
	wg      sync.WaitGroup
	sent    atomic.Int64
	got     atomic.Int64
	mu      sync.Mutex
	problem error
}

func startStream(t *testing.T, c *Client, every time.Duration) *stream {
	s := &stream{c: c, stop: make(chan struct{}), sending: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(s.sending)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if err := c.SendText(context.Background(), strconv.Itoa(i)); err != nil {
				s.fail(fmt.Errorf("send %d: %w", i, err))
				return
			}
			s.sent.Add(1)
		}
	}()
	go func() {
		defer s.wg.Done()
		for want := 0; ; want++ {
			_, data, err := c.Receive(context.Background())
			if err != nil {
				return
			}
			if string(data) != strconv.Itoa(want) {
				s.fail(fmt.Errorf("received %q, want %d: lost or reordered", data, want))
				return
			}
			s.got.Add(1)
		}
	}()
	return s
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.problem == nil {
		s.problem = err
	}
	s.mu.Unlock()
}

// finish stops sending, waits for every echo, and checks the stream; the
// events are shown when it was broken.
func (s *stream) finish(t *testing.T, rec *recorder) {
	t.Helper()
	close(s.stop)
	// A tick that fired with the stop can still send one more: wait for the
	// sender to be done before counting, so Close never races a send.
	select {
	case <-s.sending:
	case <-time.After(waitLong):
		t.Fatal("the sender did not stop")
	}
	require.Eventually(t, func() bool { return s.got.Load() == s.sent.Load() || s.err() != nil }, waitLong, time.Millisecond)
	require.NoError(t, s.c.Close())
	s.wg.Wait()
	require.NoError(t, s.err(), "events: %v", rec.all())
}

func (s *stream) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

func TestRefreshKeepsOneSecondSessionAliveFor30Lifetimes(t *testing.T) {
	// Thirty seconds of one-second sessions asserting zero reconnects:
	// opt-in, run by the soak step of .ci/run.
	requireLong(t)
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = time.Second }))
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &FirstMessageAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on})
	first := rec.waitFor(t, 1, kind(EventConnected))
	require.WithinDuration(t, time.Now().Add(time.Second), first.Expiry, time.Second, "the client learned the lifetime from auth_ok")

	s := startStream(t, c, 10*time.Millisecond)
	const lifetimes = 30
	// The scenario runs for thirty lifetimes of wall time; the assertions
	// are about what happened in it, not about how fast.
	select {
	case <-time.After(lifetimes * time.Second):
	case <-c.Done():
		t.Fatalf("client stopped: %v", c.Err())
	}
	s.finish(t, rec)

	refreshes := rec.count(EventRefreshed)
	t.Logf("%d refreshes, %d messages each way, %d reconnects, server counted %d refreshes",
		refreshes, s.got.Load(), rec.count(EventReconnecting), env.Stats().Refreshes)
	require.Equal(t, 0, rec.count(EventReconnecting), "zero reconnects")
	require.Equal(t, 0, rec.count(EventRefreshFailed))
	require.Equal(t, 1, rec.count(EventConnected))
	require.Greater(t, s.got.Load(), int64(lifetimes), "traffic flowed throughout")
	// The lead is half the lifetime and the jitter up to a quarter more, so
	// a refresh comes 0.25 to 0.5 lifetimes after the last: between two and
	// four per lifetime, never fewer than one (the session would have
	// ended).
	require.GreaterOrEqual(t, refreshes, lifetimes)
	require.LessOrEqual(t, refreshes, 4*lifetimes+4)
	// A refresh in flight at Close is counted by the server only.
	require.InDelta(t, refreshes, env.Stats().Refreshes, 1, "every refresh the client counted, the server accepted")
}

func TestRefreshRefusedReconnectsBeforeExpiry(t *testing.T) {
	t.Parallel()
	// The server answers the second refresh of a connection with
	// refresh_failed (rate limited); the client moves to a new connection
	// before the session runs out.
	env := newServer(t, withConfig(func(c *server.Config) {
		c.SessionTTL = 4 * time.Second
		c.RefreshRate, c.RefreshBurst = 0.0001, 1
	}))
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on})
	rec.waitFor(t, 1, kind(EventRefreshed))
	failed := rec.waitFor(t, 1, kind(EventRefreshFailed))
	var ae *AuthError
	require.ErrorAs(t, failed.Err, &ae)
	require.Equal(t, "rate limited", ae.Message)
	again := rec.waitFor(t, 2, kind(EventConnected))
	refreshedAt := rec.waitFor(t, 1, kind(EventRefreshed))
	require.True(t, again.Time.Before(refreshedAt.Expiry), "reconnected before the session would have expired")
	for _, e := range rec.all() {
		require.NotEqual(t, "Session expired", e.CloseReason)
	}
	connecting := rec.waitFor(t, 2, kind(EventConnecting))
	require.Equal(t, ReasonSessionEnded, connecting.Reason, "fresh credentials")
	echo(t, c, "still here")
}

func TestRefreshTokenSourceFailingFallsBackBeforeExpiry(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = time.Hour }))
	// Tokens live 4s, so the session does too and a refresh needs a new
	// token, which the source fails to give once.
	m := newMinter(env, "alice", 4*time.Second)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &QueryAuth{Tokens: m}, OnEvent: rec.on})
	first := rec.waitFor(t, 1, kind(EventConnected))
	m.failNext(1)
	failed := rec.waitFor(t, 1, kind(EventRefreshFailed))
	require.Contains(t, failed.Err.Error(), "token source")
	again := rec.waitFor(t, 2, kind(EventConnected))
	require.True(t, again.Time.Before(first.Expiry), "reconnected before the session would have expired")
	require.Len(t, m.minted(), 2)
	echo(t, c, "still here")
}

// silentApp reads and drops everything: a server that never answers a
// refresh, because it never sees one as such.
func silentApp() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
}

// unknownRefresh is the default dialect with a refresh message the server
// does not know.
type unknownRefresh struct{ Dialect }

func (unknownRefresh) RefreshMessage(token string) ([]byte, error) {
	return json.Marshal(map[string]string{"type": "renew", "token": token})
}

func TestRefreshNeverAnsweredFallsBackInTime(t *testing.T) {
	t.Parallel()
	env := newServer(t, wsauthtest.WithHandler(silentApp()), withConfig(func(c *server.Config) { c.SessionTTL = 4 * time.Second }))
	rec := newRecorder()
	dialed(t, env, &Options{Auth: &FirstMessageAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on,
		Dialect: unknownRefresh{DefaultDialect}})
	first := rec.waitFor(t, 1, kind(EventConnected))
	failed := rec.waitFor(t, 1, kind(EventRefreshFailed))
	require.Contains(t, failed.Err.Error(), "no answer")
	again := rec.waitFor(t, 2, kind(EventConnected))
	require.True(t, again.Time.Before(first.Expiry), "the fallback started before expiry")
	for _, e := range rec.all() {
		require.NotEqual(t, "Session expired", e.CloseReason)
	}
}

func TestRefreshWithAnotherPrincipalsTokenIsRefused(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 3 * time.Second }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:    &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent: rec.on,
		Renewal: RenewalPolicy{Tokens: env.TokenSource("bob", time.Hour)},
	})
	require.Equal(t, "alice header", ask(t, c, "whoami"))
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, StatusPolicyViolation, ev.Code)
	require.Equal(t, "Principal mismatch", ev.CloseReason)
	require.Equal(t, ActionReauth, ev.Action)
	rec.waitFor(t, 2, kind(EventConnected))
	require.Equal(t, "alice header", ask(t, c, "whoami"), "the identity never switched")
}

func TestServerClosesAtExpiryWithoutRefresh(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = time.Second }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:    &HeaderAuth{Tokens: StaticToken(env.Token("alice", time.Hour))},
		OnEvent: rec.on,
		Renewal: RenewalPolicy{Strategy: RenewNone},
	})
	for i := 1; i <= 3; i++ {
		ev := rec.waitFor(t, i, kind(EventReconnecting))
		require.Equal(t, StatusPolicyViolation, ev.Code)
		require.Equal(t, "Session expired", ev.CloseReason)
		require.Equal(t, ActionReauth, ev.Action)
		require.Equal(t, time.Duration(0), ev.Delay)
	}
	// A session that ran to its expiry is not a rejection: the static token
	// is offered again and the client never gives up.
	rec.waitFor(t, 4, kind(EventConnected))
	require.NotEqual(t, StateClosed, c.State())
	connecting := rec.waitFor(t, 2, kind(EventConnecting))
	require.Equal(t, ReasonSessionEnded, connecting.Reason)
}

// closeRecordingApp echoes and records the close code of every connection
// as the server saw it.
func closeRecordingApp(codes chan<- websocket.StatusCode, conns *liveCounter) server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		conns.up()
		defer conns.down()
		for {
			// Not ctx: once the connection has ended, ctx is done too, and
			// a Read that finds both ready may report ctx's error instead
			// of the close frame. Without a context of its own, Read
			// returns how the connection ended.
			typ, data, err := c.Read(context.Background())
			if err != nil {
				codes <- websocket.CloseStatus(err)
				return
			}
			// A failed echo (the client is closing) does not end the
			// handler: the close frame is still to be read.
			_ = c.Write(ctx, typ, data)
		}
	})
}

// liveCounter counts the connections a handler serves at once, and the
// most it ever did.
type liveCounter struct{ now, most atomic.Int32 }

func (l *liveCounter) up() {
	n := l.now.Add(1)
	for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
	}
}

func (l *liveCounter) down() { l.now.Add(-1) }

func TestRotationUnderSteadyTraffic(t *testing.T) {
	t.Parallel()
	codes := make(chan websocket.StatusCode, 100)
	var conns liveCounter
	env := newServer(t, wsauthtest.WithHandler(closeRecordingApp(codes, &conns)), withConfig(func(c *server.Config) { c.SessionTTL = 3 * time.Second }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:    &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent: rec.on,
		Renewal: RenewalPolicy{Strategy: RenewRotate},
	})
	s := startStream(t, c, 5*time.Millisecond)
	rec.waitFor(t, 3, kind(EventRotated))
	s.finish(t, rec)
	t.Logf("%d messages each way across %d rotations", s.got.Load(), rec.count(EventRotated))
	require.Equal(t, 0, rec.count(EventReconnecting))
	for i := 0; i < 3; i++ {
		require.Equal(t, StatusNormalClosure, <-codes, "the old connection closes with 1000")
	}
	require.Equal(t, int32(2), conns.most.Load(), "two connections, and only during the switch")
}

func TestReconnectAheadOfExpiryUnderSteadyTrafficLosesNothing(t *testing.T) {
	t.Parallel()
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 2 * time.Second }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:    &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent: rec.on,
		Renewal: RenewalPolicy{Strategy: RenewReconnect},
	})
	s := startStream(t, c, 5*time.Millisecond)
	rec.waitFor(t, 3, kind(EventConnected))
	s.finish(t, rec)
	t.Logf("%d messages each way across %d planned reconnects", s.got.Load(), rec.count(EventReconnecting))
	for _, e := range rec.all() {
		if e.Kind == EventReconnecting {
			require.Equal(t, ActionReauth, e.Action, "planned: %v", e)
			require.Zero(t, e.Code, "the client closed, not the server: %v", e)
		}
	}
}

func TestGoingAwayNoticeRotates(t *testing.T) {
	t.Parallel()
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on})
	s := startStream(t, c, 5*time.Millisecond)
	require.Eventually(t, func() bool { return s.got.Load() > 20 }, waitLong, time.Millisecond)
	require.Equal(t, 1, env.GoingAway("maintenance"))
	rec.waitFor(t, 1, kind(EventRotated))
	require.Eventually(t, func() bool { return s.got.Load() > 60 }, waitLong, time.Millisecond)
	s.finish(t, rec)
	require.Equal(t, 0, rec.count(EventReconnecting))
}

func TestRefresherSharesTheProvidersTokenCache(t *testing.T) {
	env := newServer(t)
	auth := &FirstMessageAuth{Tokens: env.TokenSource("alice", time.Hour)}
	c := dialed(t, env, &Options{Auth: auth})
	require.Same(t, auth.TokenSource(), c.tokens, "one cache, so one fetch in flight for refresher and reconnects")
}

func TestThousandClientsRefreshAtSpreadTimes(t *testing.T) {
	// A fleet's timing on a shared machine says as much about the machine
	// as about the client: opt-in, run by the soak step of .ci/run. The
	// spread itself is TestRenewAtSpreadsWithinWindow's.
	requireLong(t)
	// Not parallel: a thousand clients starting at once would starve the
	// one-second sessions of the other tests.
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 6 * time.Second; c.MaxPreAuthPerIP = -1 }))
	const n = 1000
	var mu sync.Mutex
	offsets := make([]time.Duration, 0, n)
	connectedAt := make(map[int]time.Time)
	var refreshed sync.WaitGroup
	refreshed.Add(n)
	clients := make([]*Client, n)
	for i := 0; i < n; i++ {
		var once sync.Once
		c, err := New(env.URL(), &Options{
			Auth: &HeaderAuth{Tokens: StaticToken(env.Token("alice", time.Hour))},
			OnEvent: func(e Event) {
				mu.Lock()
				defer mu.Unlock()
				switch e.Kind {
				case EventConnected:
					if _, ok := connectedAt[i]; !ok {
						connectedAt[i] = e.Time
					}
				case EventRefreshed:
					once.Do(func() {
						// Offset from the session's start: the spread is the
						// jitter's, not that of the connects.
						offsets = append(offsets, e.Time.Sub(connectedAt[i]))
						refreshed.Done()
					})
				}
			},
			Liveness: Liveness{PingInterval: -1},
		})
		require.NoError(t, err)
		clients[i] = c
	}
	done := make(chan struct{})
	go func() { refreshed.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * waitLong):
		t.Fatal("not every client refreshed")
	}
	for _, c := range clients {
		c.Close()
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	// Lead 2s (a fifth of 6s is less than the 2s floor), jitter up to 1s:
	// refreshes fall 3 to 4 seconds into the session.
	spread := offsets[n*95/100] - offsets[n*5/100]
	t.Logf("refresh offsets: min %s, 5%% %s, median %s, 95%% %s, max %s", offsets[0], offsets[n*5/100], offsets[n/2], offsets[n*95/100], offsets[n-1])
	require.Greater(t, spread, 500*time.Millisecond, "the middle 90%% of refreshes spread over at least half the jitter window")
	buckets := map[time.Duration]int{}
	for _, o := range offsets {
		buckets[o.Truncate(100*time.Millisecond)]++
	}
	for b, cnt := range buckets {
		require.Less(t, cnt, n/4, "no 100ms slot takes a quarter of the fleet (slot %s)", b)
	}
}

func TestCloseSendsCodeAndReasonToServer(t *testing.T) {
	codes := make(chan websocket.StatusCode, 4)
	env := newServer(t, wsauthtest.WithHandler(closeRecordingApp(codes, &liveCounter{})))
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}})
	echo(t, c, "hi")
	require.NoError(t, c.Close())
	require.Equal(t, StatusNormalClosure, <-codes)

	// A client whose application stopped reading still closes cleanly.
	c2 := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, Limits: Limits{ReceiveBuffer: 1}})
	for i := 0; i < 5; i++ {
		require.NoError(t, c2.SendText(testCtx(t), "unread"))
	}
	require.NoError(t, c2.CloseWith(4000, "bye"))
	require.Equal(t, websocket.StatusCode(4000), <-codes)
}

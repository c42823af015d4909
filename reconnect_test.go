package wsauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// fast is a backoff that keeps tests quick while still being a backoff.
func fast() *FullJitter {
	return &FullJitter{Initial: 5 * time.Millisecond, Multiplier: 2, Max: 50 * time.Millisecond}
}

// recordingTickets wraps a ticket store and remembers every ticket a
// handshake presented.
type recordingTickets struct {
	server.TicketStore
	mu        sync.Mutex
	presented []string
}

func (r *recordingTickets) Consume(ctx context.Context, ticket string) (server.TicketData, error) {
	r.mu.Lock()
	r.presented = append(r.presented, ticket)
	r.mu.Unlock()
	return r.TicketStore.Consume(ctx, ticket)
}

func (r *recordingTickets) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.presented...)
}

func Test1008MidStreamWithTicketFetchesNewTicket(t *testing.T) {
	store := &recordingTickets{TicketStore: server.NewMemoryTicketStore()}
	env := newServer(t, withConfig(func(c *server.Config) { c.TicketStore = store }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	echo(t, c, "before")
	require.Equal(t, 1, env.CloseAll(websocket.StatusPolicyViolation, "Unauthorized"))
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	require.Equal(t, StatusPolicyViolation, ev.Code)
	require.Equal(t, time.Duration(0), ev.Delay, "the first re-authentication is immediate")
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "after")
	require.Equal(t, "alice ticket", ask(t, c, "whoami"))

	tickets := store.all()
	require.Len(t, tickets, 2)
	require.NotEqual(t, tickets[0], tickets[1], "the old ticket is never offered again")
	require.EqualValues(t, 2, env.Stats().TicketsIssued)
}

func Test1008WithFirstMessageSendsNewToken(t *testing.T) {
	var mu sync.Mutex
	var verified []string
	env := newServer(t, withConfig(func(cfg *server.Config) {
		inner := cfg.Verifier
		cfg.Verifier = verifierFunc(func(ctx context.Context, tok string) (server.Identity, error) {
			mu.Lock()
			verified = append(verified, tok)
			mu.Unlock()
			return inner.Verify(ctx, tok)
		})
	}))
	m := newMinter(env, "alice", time.Hour)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &FirstMessageAuth{Tokens: m}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: fast()}})
	echo(t, c, "before")
	env.CloseAll(websocket.StatusPolicyViolation, "Unauthorized")
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "after")
	minted := m.minted()
	require.Len(t, minted, 2, "events: %v", rec.all())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, minted, verified, "each connection proved itself with its own token, the second a new one")
	connecting := rec.waitFor(t, 2, kind(EventConnecting))
	require.Equal(t, ReasonSessionEnded, connecting.Reason, "a 1008 on an established session is no refusal: fresh credentials preferred")
}

func TestServerDownForTwoSecondsThenBack(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: 50 * time.Millisecond, Multiplier: 2, Max: 400 * time.Millisecond}},
	})
	echo(t, c, "before")
	env.Stop()
	restarted := make(chan error, 1)
	restart := time.AfterFunc(2*time.Second, func() { restarted <- env.Start() }) // the outage itself, not synchronisation
	t.Cleanup(func() { restart.Stop() })
	first := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionRetry, first.Action)
	require.Equal(t, StatusGoingAway, first.Code)
	rec.waitFor(t, 2, kind(EventConnected))
	require.NoError(t, <-restarted)
	echo(t, c, "after")
	require.GreaterOrEqual(t, rec.count(EventReconnecting), 2, "attempts failed while the server was down")
	for _, e := range rec.all() {
		if e.Kind == EventReconnecting {
			require.Equal(t, ActionRetry, e.Action, "a server that is down says nothing against the credentials: %v", e)
		}
	}
}

func TestBlackholedConnectionDetectedByPing(t *testing.T) {
	env := newServer(t)
	px := env.Proxy()
	rec := newRecorder()
	c, err := Dial(testCtx(t), px.URL(), &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Timeouts:  Timeouts{Dial: 500 * time.Millisecond},
		Liveness:  Liveness{PingInterval: 100 * time.Millisecond, PongTimeout: 2 * time.Second},
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	echo(t, c, "before")
	px.Blackhole(true)
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.ErrorIs(t, ev.Err, ErrPingTimeout)
	require.Equal(t, ActionRetry, ev.Action)
	px.Blackhole(false)
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "after")
}

func TestRevokedCredentialsStopAfterLimit(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: fast(), MaxAuthFailures: 4}})
	echo(t, c, "before")
	env.Revoke("alice")
	waitDone(t, c)
	require.NoError(t, c.Close())
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, http.StatusUnauthorized, gu.HTTPStatus)
	var he *HTTPError
	require.ErrorAs(t, c.Err(), &he)
	refused := 0
	for _, ev := range env.AuthEvents() {
		if ev.Stage == server.StageHandshake && !ev.OK {
			refused++
		}
	}
	require.Equal(t, 4, refused, "1008 Revoked ends the session, then four handshakes refused in a row")
	require.Equal(t, ReasonSessionEnded, rec.waitFor(t, 2, kind(EventConnecting)).Reason)
	require.Equal(t, ReasonRejected, rec.waitFor(t, 3, kind(EventConnecting)).Reason)
	rec.waitFor(t, 1, kind(EventStopped))
	_, _, err := c.Receive(testCtx(t))
	require.ErrorAs(t, err, &gu, "Receive reports the stop cause")
}

func TestRetryAfterFromServerRateLimiterIsHonoured(t *testing.T) {
	env := newServer(t, withConfig(func(c *server.Config) { c.HandshakeRate, c.HandshakeBurst = 1, 1 }))
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Millisecond, Max: time.Millisecond}},
	})
	env.CloseAll(websocket.StatusGoingAway, "bye")
	var limited Event
	rec.waitFor(t, 1, func(e Event) bool {
		if e.Kind == EventReconnecting && e.HTTPStatus == http.StatusTooManyRequests {
			limited = e
			return true
		}
		return false
	})
	var he *HTTPError
	require.ErrorAs(t, limited.Err, &he)
	require.GreaterOrEqual(t, he.RetryAfter, time.Second)
	require.GreaterOrEqual(t, limited.Delay, he.RetryAfter, "the wait honours Retry-After despite a 1ms backoff")
	require.Equal(t, ActionRetry, limited.Action)
	rec.waitFor(t, 2, kind(EventConnected))
	echo(t, c, "after the limit")
}

func TestQueuedSendsAcrossServerRestartAreDeliveredOrFail(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{
		Auth:      &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Limits:    Limits{SendQueue: 1000, ReceiveBuffer: 1024},
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}},
	})
	echo(t, c, "warm up")
	env.Stop()
	rec.waitFor(t, 1, kind(EventReconnecting))

	const n = 1000
	results := make(chan struct {
		id  int
		err error
	}, n)
	// Each message is queued before the next is sent, so the queue's order
	// is known: 0, 1, 2, …
	for i := 0; i < n; i++ {
		go func() {
			err := c.SendText(testCtx(t), strconv.Itoa(i))
			results <- struct {
				id  int
				err error
			}{i, err}
		}()
		require.Eventually(t, func() bool { return c.queue.len() == i+1 }, waitLong, time.Millisecond)
	}
	require.NoError(t, env.Start())

	sent := map[int]bool{}
	failed := 0
	for i := 0; i < n; i++ {
		r := <-results
		if r.err == nil {
			sent[r.id] = true
		} else {
			failed++
		}
	}
	require.Equal(t, n, len(sent)+failed, "every send is accounted for")
	var got []int
	for len(got) < len(sent) {
		_, data, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		id, err := strconv.Atoi(string(data))
		require.NoError(t, err)
		got = append(got, id)
	}
	require.True(t, sort.IntsAreSorted(got), "queued sends are written in order")
	for _, id := range got {
		require.True(t, sent[id], "only messages whose Send succeeded arrive")
	}
	t.Logf("sends: %d delivered, %d failed", len(sent), failed)
	require.Equal(t, n, len(sent), "with no fault after the restart every queued send is delivered")
}

func TestSendWhoseContextEndsInQueueIsNeverWritten(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: fast()}})
	env.Stop()
	rec.waitFor(t, 1, kind(EventReconnecting))
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- c.SendText(ctx, "expired") }()
	require.Eventually(t, func() bool { return c.queue.len() == 1 }, waitLong, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, 0, c.queue.len(), "the message left the queue")
	require.NoError(t, env.Start())
	require.NoError(t, c.WaitConnected(testCtx(t)))
	echo(t, c, "marker") // the expired message would have come first
}

func TestCloseFailsPendingSends(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: fast()}})
	env.Stop()
	rec.waitFor(t, 1, kind(EventReconnecting))
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() { errs <- c.SendText(testCtx(t), "pending") }()
	}
	require.Eventually(t, func() bool { return c.queue.len() == 10 }, waitLong, time.Millisecond)
	require.NoError(t, c.Close())
	for i := 0; i < 10; i++ {
		require.ErrorIs(t, <-errs, ErrClosed)
	}
	require.ErrorIs(t, c.SendText(testCtx(t), "late"), ErrClosed)
	_, _, err := c.Receive(testCtx(t))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, c.SendText(testCtx(t), "late"), ErrClosed)
}

func TestQueueFullFailsAtOnce(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on, Limits: Limits{SendQueue: 2}, Reconnect: ReconnectPolicy{Backoff: fast()}})
	env.Stop()
	rec.waitFor(t, 1, kind(EventReconnecting))
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errs <- c.SendText(testCtx(t), "queued") }()
	}
	require.Eventually(t, func() bool { return c.queue.len() == 2 }, waitLong, time.Millisecond)
	require.ErrorIs(t, c.SendText(testCtx(t), "one too many"), ErrQueueFull)
	require.NoError(t, env.Start())
	for i := 0; i < 2; i++ {
		require.NoError(t, <-errs)
	}
}

func TestCloseDuringBackoffReturnsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	rec := newRecorder()
	c, err := New("ws://"+addr+"/ws", &Options{OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: backoff.NewConstantBackOff(time.Hour)}})
	require.NoError(t, err)
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, time.Hour, ev.Delay)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed: // an hour-long wait was cut short
	case <-time.After(waitLong):
		t.Fatal("Close waited for the backoff")
	}

	// Dial's context ending during the wait returns too.
	ctx, cancel := context.WithCancel(testCtx(t))
	rec2 := newRecorder()
	go func() {
		rec2.waitFor(t, 1, kind(EventReconnecting))
		cancel()
	}()
	_, err = Dial(ctx, "ws://"+addr+"/ws", &Options{OnEvent: rec2.on, Reconnect: ReconnectPolicy{Backoff: backoff.NewConstantBackOff(time.Hour)}})
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "last attempt", "Dial says what was going wrong")
}

// closingApp closes every connection at once with code.
func closingApp(code websocket.StatusCode) server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) { c.Close(code, "test") })
}

func TestClassificationRowsAgainstServer(t *testing.T) {
	for _, tc := range []struct {
		code     websocket.StatusCode
		opts     func(*Options)
		want     Action
		stopWhy  string
		attempts int
	}{
		{code: 1000, want: ActionRetry},
		{code: 1001, want: ActionRetry},
		{code: 1011, want: ActionRetry},
		{code: 1012, want: ActionRetry},
		{code: 1013, want: ActionRetry},
		// A server that accepts and then closes with a re-auth code ends
		// sessions it accepted: authenticate again, with backoff, forever.
		{code: 4401, opts: func(o *Options) {
			o.Reconnect.Classify = func(e Ending) Action {
				if e.Code == 4401 {
					return ActionReauth
				}
				return ActionDefault
			}
		}, want: ActionReauth},
		{code: 4401, want: ActionRetry},
		{code: 1002, want: ActionRetry, stopWhy: "protocol", attempts: 3},
		{code: 1003, want: ActionRetry, stopWhy: "protocol", attempts: 3},
		{code: 1007, want: ActionRetry, stopWhy: "protocol", attempts: 3},
		{code: 1000, opts: func(o *Options) {
			o.Reconnect.Classify = func(e Ending) Action {
				if e.Code == StatusNormalClosure {
					return ActionStop
				}
				return ActionDefault
			}
		}, want: ActionStop, stopWhy: "policy", attempts: 1},
	} {
		t.Run(fmt.Sprintf("%d-%s", tc.code, tc.stopWhy), func(t *testing.T) {
			env := newServer(t, wsauthtest.WithHandler(closingApp(tc.code)))
			rec := newRecorder()
			o := &Options{
				Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
				OnEvent:   rec.on,
				Reconnect: ReconnectPolicy{Backoff: fast(), MaxAuthFailures: 3, MaxProtocolErrors: 3},
			}
			if tc.opts != nil {
				tc.opts(o)
			}
			c, err := New(env.URL(), o)
			require.NoError(t, err)
			defer c.Close()
			if tc.stopWhy == "" {
				ev := rec.waitFor(t, 3, kind(EventReconnecting))
				require.Equal(t, tc.want, ev.Action)
				require.Equal(t, tc.code, ev.Code)
				require.NotEqual(t, StateClosed, c.State())
				return
			}
			waitDone(t, c)
			var gu *GaveUpError
			require.ErrorAs(t, c.Err(), &gu)
			require.Equal(t, tc.stopWhy, gu.Why)
			require.Equal(t, tc.code, gu.Code)
			require.Equal(t, tc.attempts, successes(env), "connections made before stopping")
			var ce *CloseError
			require.ErrorAs(t, c.Err(), &ce)
		})
	}
}

func TestConcurrentTriggersMakeOneReconnect(t *testing.T) {
	var conns liveCounter
	env := newServer(t, wsauthtest.WithHandler(server.HandlerFunc(func(ctx context.Context, sc *server.Conn) {
		conns.up()
		defer conns.down()
		app().ServeWS(ctx, sc)
	})))
	px := env.Proxy()
	rec := newRecorder()
	c, err := Dial(testCtx(t), px.URL(), &Options{
		Auth:      &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent:   rec.on,
		Limits:    Limits{ReceiveBuffer: 4096, SendQueue: 4096},
		Liveness:  Liveness{PingInterval: 5 * time.Millisecond, PongTimeout: time.Second},
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })

	// Writers, the reader and the pinger all see each cut at once.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sends atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				if c.SendText(ctx, "x") == nil {
					sends.Add(1)
				}
				cancel()
			}
		}()
	}
	go func() {
		for {
			if _, _, err := c.Receive(context.Background()); err != nil {
				return
			}
		}
	}()
	const cuts = 10
	for i := 1; i <= cuts; i++ {
		rec.waitFor(t, i, kind(EventConnected))
		require.Eventually(t, func() bool { return sends.Load() > int64(i*10) }, waitLong, time.Millisecond)
		px.Cut()
	}
	rec.waitFor(t, cuts+1, kind(EventConnected))
	close(stop)
	wg.Wait()
	require.Equal(t, cuts, rec.count(EventReconnecting), "each cut caused exactly one reconnect")
	// One owner: a connection is reported up only after the last one was
	// reported down, and each physical connection is shut down before the
	// loop that reports it down goes on.
	up := false
	for _, e := range rec.all() {
		switch e.Kind {
		case EventConnected:
			require.False(t, up, "two connections up at once: %v", rec.all())
			up = true
		case EventReconnecting:
			up = false
		}
	}
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return conns.now.Load() == 0 }, waitLong, time.Millisecond, "no connection survives Close")
}

func TestNoApplicationMessageBeforeAuthentication(t *testing.T) {
	env := newServer(t)
	gate := make(chan struct{})
	m := newMinter(env, "alice", time.Hour)
	slow := TokenFunc(func(ctx context.Context) (*oauth2.Token, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return m.Token()
	})
	rec := newRecorder()
	c, err := New(env.URL(), &Options{Auth: &FirstMessageAuth{Tokens: slow}, OnEvent: rec.on, Reconnect: ReconnectPolicy{Backoff: fast()}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	const n = 50
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { errs <- c.SendText(testCtx(t), "early") }()
	}
	require.Eventually(t, func() bool { return c.queue.len() == n }, waitLong, time.Millisecond)
	close(gate)
	for i := 0; i < n; i++ {
		require.NoError(t, <-errs)
	}
	for i := 0; i < n; i++ {
		_, data, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, "early", string(data))
	}
	// The server closes 1008 "Expected auth message" if anything but the
	// auth message comes first; it never did.
	require.Equal(t, 0, rec.count(EventReconnecting))
	for _, ev := range env.AuthEvents() {
		require.True(t, ev.OK, "refusal: %+v", ev)
	}
	require.Equal(t, 1, successes(env))
	_ = errors.New
}

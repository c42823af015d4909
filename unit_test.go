package wsauth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/server"
)

func TestScrubErrorKeepsTheClientsTypes(t *testing.T) {
	r := &redactor{}
	r.Add("canary-secret-token")
	he := &HTTPError{Op: "ticket", StatusCode: 401, Body: "bad token canary-secret-token"}
	err := scrubError(r, fmt.Errorf("wsauth: %w: %w", ErrCredentialRejected, he))
	require.NotContains(t, err.Error(), "canary-secret-token")
	var got *HTTPError
	require.ErrorAs(t, err, &got, "the policy still sees the status")
	require.Equal(t, 401, got.StatusCode)
	require.Equal(t, "bad token REDACTED", got.Body)
	require.ErrorIs(t, err, ErrCredentialRejected)

	ce := scrubError(r, &CloseError{Code: 1008, Reason: "canary-secret-token"})
	var gotCE *CloseError
	require.ErrorAs(t, ce, &gotCE)
	require.Equal(t, StatusPolicyViolation, gotCE.Code)
	require.Equal(t, "REDACTED", gotCE.Reason)

	untouched := errors.New("nothing secret here")
	require.Same(t, untouched, scrubError(r, untouched))
}

type countingSource struct {
	mu    sync.Mutex
	n     int
	ttl   time.Duration
	gate  chan struct{}
	inner atomic.Int32
	max   atomic.Int32
	fail  error
}

func (s *countingSource) Token() (*oauth2.Token, error) {
	cur := s.inner.Add(1)
	defer s.inner.Add(-1)
	for {
		m := s.max.Load()
		if cur <= m || s.max.CompareAndSwap(m, cur) {
			break
		}
	}
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.n++
	tok := &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", s.n)}
	if s.ttl > 0 {
		tok.Expiry = time.Now().Add(s.ttl)
	}
	return tok, nil
}

func TestTokenCacheCachesUntilNearExpiry(t *testing.T) {
	src := &countingSource{ttl: time.Hour}
	c := NewTokenCache(src, time.Minute)
	a, err := c.Token()
	require.NoError(t, err)
	b, err := c.Token()
	require.NoError(t, err)
	require.Equal(t, a.AccessToken, b.AccessToken)
	require.EqualValues(t, 1, src.n)

	// A token that lives less than four margins is kept for three
	// quarters of its life rather than refetched on every call.
	short := &countingSource{ttl: 30 * time.Second}
	c2 := NewTokenCache(short, time.Minute)
	x, _ := c2.Token()
	y, _ := c2.Token()
	require.Equal(t, x.AccessToken, y.AccessToken)
	require.EqualValues(t, 1, short.n)

	n := 0
	expired := TokenFunc(func(context.Context) (*oauth2.Token, error) {
		n++
		return &oauth2.Token{AccessToken: fmt.Sprintf("old-%d", n), Expiry: time.Now().Add(-time.Second)}, nil
	})
	c3 := NewTokenCache(expired, time.Minute)
	x, _ = c3.Token()
	y, _ = c3.Token()
	require.NotEqual(t, x.AccessToken, y.AccessToken, "an expired token is never handed out from the cache")
	require.EqualValues(t, 2, n)
}

func TestTokenCacheReadsAJWTsExpiry(t *testing.T) {
	iss, err := server.NewHMACIssuer(server.RandomKey())
	require.NoError(t, err)
	jwt, err := iss.IssueWithExpiry("alice", time.Unix(2000000000, 0))
	require.NoError(t, err)
	tok, err := NewTokenCache(StaticToken(jwt), 0).Token()
	require.NoError(t, err)
	require.Equal(t, time.Unix(2000000000, 0), tok.Expiry)

	for _, s := range []string{"not-a-jwt", "a.b.c", "a.b.c.d", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "x.eyJleHAiOi0xfQ.y", "x.eyJleHAiOiJzb29uIn0.y"} {
		require.True(t, jwtExpiry(s).IsZero(), s)
	}
	require.Equal(t, time.Unix(1700000000, 0), jwtExpiry("x.eyJleHAiOjE3MDAwMDAwMDB9.y"))
}

func TestTokenCacheRejectAndInvalidate(t *testing.T) {
	src := &countingSource{ttl: time.Hour}
	c := NewTokenCache(src, 0)
	a, _ := c.Token()
	c.Invalidate(a)
	b, _ := c.Token()
	require.NotEqual(t, a.AccessToken, b.AccessToken, "an invalidated token is refetched")

	c.Reject(b)
	d, err := c.Token()
	require.NoError(t, err)
	require.NotEqual(t, b.AccessToken, d.AccessToken)

	static := NewTokenCache(StaticToken("the-static-token"), 0)
	s1, err := static.Token()
	require.NoError(t, err)
	static.Invalidate(s1)
	s2, err := static.Token()
	require.NoError(t, err, "a soft invalidation may hand the same static token out again")
	require.Equal(t, s1.AccessToken, s2.AccessToken)
	static.Reject(s2)
	_, err = static.Token()
	require.ErrorIs(t, err, ErrCredentialRejected, "a rejected token is never handed out again")
	require.NotContains(t, err.Error(), "the-static-token")
}

func TestTokenCacheOneFetchInFlight(t *testing.T) {
	src := &countingSource{ttl: time.Hour, gate: make(chan struct{})}
	c := NewTokenCache(src, 0)
	var wg sync.WaitGroup
	toks := make([]string, 20)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Token()
			if err == nil {
				toks[i] = tok.AccessToken
			}
		}()
	}
	close(src.gate)
	wg.Wait()
	require.EqualValues(t, 1, src.max.Load(), "never two fetches at once")
	require.EqualValues(t, 1, src.n, "waiters share the one fetch")
	for _, tok := range toks {
		require.Equal(t, "tok-1", tok)
	}
}

func TestTokenCacheWaitHonoursContext(t *testing.T) {
	src := &countingSource{ttl: time.Hour, gate: make(chan struct{})}
	c := NewTokenCache(src, 0)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = c.Token() }()
	require.Eventually(t, func() bool { return src.inner.Load() == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.TokenContext(ctx)
	require.ErrorIs(t, err, context.Canceled)
	close(src.gate)
	<-done
}

func TestTokenAfterReplacesTokenThatEndsTooSoon(t *testing.T) {
	src := &countingSource{ttl: time.Hour}
	c := NewTokenCache(src, 0)
	a, _ := c.Token()
	b, err := c.tokenAfter(context.Background(), time.Now().Add(30*time.Minute))
	require.NoError(t, err)
	require.Equal(t, a.AccessToken, b.AccessToken, "a token outliving the session is reused")
	d, err := c.tokenAfter(context.Background(), time.Now().Add(2*time.Hour))
	require.NoError(t, err)
	require.NotEqual(t, a.AccessToken, d.AccessToken, "a token ending before the session is replaced")
}

func TestFullJitterStaysUnderCeilingAndSpreads(t *testing.T) {
	b := &FullJitter{Initial: 100 * time.Millisecond, Multiplier: 2, Max: time.Second}
	for n := 0; n < 12; n++ {
		ceil := b.ceiling(n)
		require.LessOrEqual(t, ceil, time.Second)
		d := b.NextBackOff()
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, ceil)
	}
	require.Equal(t, time.Second, b.ceiling(50))
	require.Equal(t, time.Second, b.ceiling(5000), "no overflow")

	// Full jitter: draws for one attempt cover the whole [0, ceiling) range,
	// unlike equal jitter which never goes below half the ceiling.
	var low, high int
	for i := 0; i < 2000; i++ {
		b.Reset()
		for j := 0; j < 4; j++ {
			b.NextBackOff()
		}
		d := b.NextBackOff() // ceiling 1s
		if d < 250*time.Millisecond {
			low++
		}
		if d > 750*time.Millisecond {
			high++
		}
	}
	require.Greater(t, low, 300)
	require.Greater(t, high, 300)

	capped := &FullJitter{MaxAttempts: 2}
	require.NotEqual(t, backoff.Stop, capped.NextBackOff())
	require.NotEqual(t, backoff.Stop, capped.NextBackOff())
	require.Equal(t, backoff.Stop, capped.NextBackOff())
	capped.Reset()
	require.NotEqual(t, backoff.Stop, capped.NextBackOff())
}

func TestDefaultClassifyTable(t *testing.T) {
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		e    Ending
		want Action
	}{
		{"client close", Ending{Local: true, Err: ErrClosed}, ActionStop},
		{"cancelled context", Ending{Local: true, Err: context.Canceled}, ActionStop},
		{"1008", Ending{Code: 1008, Err: &CloseError{Code: 1008}}, ActionReauth},
		{"handshake 401", Ending{HTTPStatus: 401, Phase: PhaseHandshake}, ActionReauth},
		{"handshake 403", Ending{HTTPStatus: 403, Phase: PhaseHandshake}, ActionReauth},
		{"ticket 401", Ending{HTTPStatus: 401, Phase: PhaseCredentials}, ActionReauth},
		{"429", Ending{HTTPStatus: 429, RetryAfter: time.Second}, ActionRetry},
		{"503", Ending{HTTPStatus: 503}, ActionRetry},
		{"500", Ending{HTTPStatus: 500}, ActionRetry},
		{"server 1000", Ending{Code: 1000, Phase: PhaseConnected}, ActionRetry},
		{"server 1000 before the verdict: a refusal", Ending{Code: 1000, Phase: PhaseAuth}, ActionReauth},
		{"1001 before the verdict: a restart, no refusal", Ending{Code: 1001, Phase: PhaseAuth}, ActionRetry},
		{"handshake redirect", Ending{HTTPStatus: 302, Phase: PhaseHandshake}, ActionStop},
		{"REST redirect to another origin", Ending{Err: fmt.Errorf("x: %w", ErrRedirect), Phase: PhaseCredentials}, ActionStop},
		{"nothing to offer", Ending{Err: ErrNoCredential, Phase: PhaseCredentials}, ActionReauth},
		{"1001", Ending{Code: 1001}, ActionRetry},
		{"1011", Ending{Code: 1011}, ActionRetry},
		{"1012", Ending{Code: 1012}, ActionRetry},
		{"1013", Ending{Code: 1013}, ActionRetry},
		{"4000 app code", Ending{Code: 4000}, ActionRetry},
		{"network error", Ending{Err: netErr}, ActionRetry},
		{"dial timeout", Ending{Err: context.DeadlineExceeded, Phase: PhaseHandshake}, ActionRetry},
		{"ping timeout", Ending{Err: ErrPingTimeout, Phase: PhaseConnected}, ActionRetry},
		{"protocol error 1002", Ending{Code: 1002}, ActionRetry},
		{"1009", Ending{Code: 1009}, ActionRetry},
		{"no fresh credential", Ending{Err: ErrCredentialRejected}, ActionReauth},
		{"auth_invalid message", Ending{Err: &AuthError{Message: "bad"}}, ActionReauth},
		{"insecure transport", Ending{Err: fmt.Errorf("x: %w", ErrInsecureTransport)}, ActionStop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, DefaultClassify(tc.e))
		})
	}
	for _, c := range []StatusCode{1002, 1003, 1007, 1009, 1010} {
		require.True(t, isProtocolError(c), c)
	}
	for _, c := range []StatusCode{1000, 1001, 1006, 1008, 1011} {
		require.False(t, isProtocolError(c), c)
	}
}

// TestStreakTable runs sequences of endings through the policy and checks
// the Reason each next attempt hands the provider, whether it starts at
// once, and which limit stops the client.
func TestStreakTable(t *testing.T) {
	cfg, err := (&Options{Reconnect: ReconnectPolicy{MaxAuthFailures: 3, MaxProtocolErrors: 2}}).resolve()
	require.NoError(t, err)
	type row struct {
		end    Ending
		action Action
		want   step
	}
	refusedHandshake := Ending{Phase: PhaseHandshake, HTTPStatus: 401}
	refusedInVerdict := Ending{Phase: PhaseAuth, Code: StatusPolicyViolation}
	closedSession := Ending{Phase: PhaseConnected, Code: StatusPolicyViolation, Uptime: time.Second}
	lost := Ending{Phase: PhaseConnected, Code: 1006}
	protocol := Ending{Phase: PhaseConnected, Code: 1002}
	rejected := func(immediate bool) step { return step{why: ReasonRejected, immediate: immediate} }
	ended := func(immediate bool) step { return step{why: ReasonSessionEnded, immediate: immediate} }
	retry := step{why: ReasonReconnect}
	for _, tc := range []struct {
		name string
		rows []row
	}{
		{"refusals at the handshake count and stop", []row{
			{refusedHandshake, ActionReauth, rejected(true)},
			{refusedHandshake, ActionReauth, rejected(false)},
			{refusedHandshake, ActionReauth, step{stop: "authentication"}},
		}},
		{"a close inside the verdict is a refusal", []row{
			{refusedInVerdict, ActionReauth, rejected(true)},
			{refusedInVerdict, ActionReauth, rejected(false)},
			{refusedInVerdict, ActionReauth, step{stop: "authentication"}},
		}},
		{"an established session closed with 1008 is authenticated again, never given up", []row{
			{closedSession, ActionReauth, ended(true)},
			{closedSession, ActionReauth, ended(false)},
			{closedSession, ActionReauth, ended(false)},
			{closedSession, ActionReauth, ended(false)},
			{closedSession, ActionReauth, ended(false)},
		}},
		{"a session the server accepted breaks a run of refusals", []row{
			{refusedHandshake, ActionReauth, rejected(true)},
			{refusedHandshake, ActionReauth, rejected(false)},
			{closedSession, ActionReauth, ended(true)},
			{refusedHandshake, ActionReauth, rejected(true)},
			{refusedHandshake, ActionReauth, rejected(false)},
			{refusedHandshake, ActionReauth, step{stop: "authentication"}},
		}},
		{"the re-authentication after a closed session is refused: it counts", []row{
			{closedSession, ActionReauth, ended(true)},
			{refusedInVerdict, ActionReauth, rejected(true)},
			{refusedInVerdict, ActionReauth, rejected(false)},
			{refusedInVerdict, ActionReauth, step{stop: "authentication"}},
		}},
		{"sessions that lived to their expiry are renewed at once, quick ones meet backoff", []row{
			{Ending{Phase: PhaseConnected, Code: StatusPolicyViolation, Uptime: time.Second, atExpiry: true}, ActionReauth, ended(true)},
			{Ending{Phase: PhaseConnected, Code: StatusPolicyViolation, Uptime: time.Second, atExpiry: true}, ActionReauth, ended(true)},
			{Ending{Phase: PhaseConnected, Code: StatusPolicyViolation, Uptime: time.Millisecond, atExpiry: true}, ActionReauth, ended(false)},
		}},
		{"a planned renewal starts at once with fresh credentials", []row{
			{Ending{Phase: PhaseConnected, renew: true}, ActionRetry, ended(true)},
			{Ending{Phase: PhaseConnected, renew: true}, ActionRetry, ended(true)},
		}},
		{"network losses retry with backoff", []row{
			{lost, ActionRetry, retry},
			{lost, ActionRetry, retry},
			{lost, ActionRetry, retry},
		}},
		{"protocol errors in a row stop; another ending breaks the row", []row{
			{protocol, ActionRetry, retry},
			{lost, ActionRetry, retry},
			{protocol, ActionRetry, retry},
			{protocol, ActionRetry, step{stop: "protocol"}},
		}},
		{"the policy says stop", []row{
			{lost, ActionStop, step{stop: "policy"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s streak
			for i, r := range tc.rows {
				require.Equal(t, r.want, s.next(r.end, r.action, &cfg), "ending %d", i+1)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, 3*time.Second, parseRetryAfter("3", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("-1", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("", now))
	require.Equal(t, 90*time.Second, parseRetryAfter(now.Add(90*time.Second).Format(httpTimeFormat), now))
	// Values a server could send to make the delay overflow.
	require.Equal(t, maxRetryAfterSeconds*time.Second, parseRetryAfter("9300000000", now))
	require.Equal(t, maxRetryAfterSeconds*time.Second, parseRetryAfter("99999999999999999999999", now))
	require.Equal(t, maxRetryAfterSeconds*time.Second, parseRetryAfter(now.AddDate(500, 0, 0).Format(httpTimeFormat), now))
	require.Equal(t, time.Duration(0), parseRetryAfter("+5", now))
	require.Equal(t, time.Duration(0), parseRetryAfter("5.5", now))
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestSendQueueOrderLimitAndCancel(t *testing.T) {
	q := &sendQueue{limit: 3}
	items := make([]*sendItem, 3)
	for i := range items {
		it, err := q.enqueue()
		require.NoError(t, err)
		items[i] = it
	}
	_, err := q.enqueue()
	require.ErrorIs(t, err, ErrQueueFull)

	pc, err := q.turn(items[0])
	require.NoError(t, err)
	require.Nil(t, pc, "no live connection: nobody goes")

	live := &physConn{dead: make(chan struct{})}
	q.setLive(live)
	require.Len(t, items[0].wake, 1, "the head is told to look again")
	pc, _ = q.turn(items[1])
	require.Nil(t, pc, "only the head goes")
	pc, _ = q.turn(items[0])
	require.Same(t, live, pc)
	require.Equal(t, 2, q.len())
	pc, _ = q.turn(items[1])
	require.Nil(t, pc, "one write at a time")

	// pause waits for the write in progress.
	paused := make(chan struct{})
	go func() { q.pause(live); close(paused) }()
	// Once pause has taken the connection away, it can only be waiting for
	// the write to end.
	require.Eventually(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.live == nil }, waitLong, time.Millisecond)
	select {
	case <-paused:
		t.Fatal("pause returned during a write")
	default:
	}
	q.done()
	<-paused
	pc, _ = q.turn(items[1])
	require.Nil(t, pc, "paused")
	q.setLive(live)

	// Withdrawing the head lets the next one go.
	<-items[1].wake
	q.cancel(items[1])
	require.Len(t, items[2].wake, 1)
	pc, _ = q.turn(items[2])
	require.Same(t, live, pc)
	q.done()
	require.Equal(t, 0, q.len())

	// A dead connection lets nobody through.
	dead := &physConn{dead: make(chan struct{})}
	close(dead.dead)
	q.setLive(dead)
	waiting, err := q.enqueue()
	require.NoError(t, err)
	pc, _ = q.turn(waiting)
	require.Nil(t, pc)

	q.close(ErrClosed)
	require.Len(t, waiting.wake, 1, "waiting sends are woken by close")
	_, err = q.turn(waiting)
	require.ErrorIs(t, err, ErrClosed, "and fail with the stop cause")
	_, err = q.enqueue()
	require.ErrorIs(t, err, ErrClosed)
	require.Equal(t, 0, q.len())
}

func TestDefaultDialectInspect(t *testing.T) {
	d := DefaultDialect
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`hello`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"type":"chat","text":"refresh_ok"}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageBinary, []byte(`{"type":"refresh_ok"}`)).Kind)
	in := d.Inspect(MessageText, []byte(`{"type":"refresh_ok","expires_in":1.5}`))
	require.Equal(t, InboundRefreshOK, in.Kind)
	require.Equal(t, 1500*time.Millisecond, in.ExpiresIn)
	require.Equal(t, InboundRefreshFailed, d.Inspect(MessageText, []byte(`{"type":"refresh_failed","reason":"rate limited"}`)).Kind)
	require.Equal(t, InboundExpiring, d.Inspect(MessageText, []byte(`{"type":"expiring","expires_in":5}`)).Kind)
	require.Equal(t, InboundGoingAway, d.Inspect(MessageText, []byte(`{"type":"going_away"}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"type":"refresh_ok"`)).Kind, "broken JSON is the application's")
	msg, err := d.(Refresher).RefreshMessage(`to"ken`)
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"refresh","token":"to\"ken"}`, string(msg))
}

func TestRenewAtSpreadsWithinWindow(t *testing.T) {
	from := time.Unix(0, 0)
	exp := from.Add(time.Hour)
	// Default lead is a fifth of the lifetime; jitter subtracts up to half of it again.
	earliestAt := exp.Add(-12*time.Minute - 6*time.Minute)
	latestAt := exp.Add(-12 * time.Minute)
	require.Equal(t, latestAt, renewAt(from, exp, 0, func() float64 { return 0 }))
	got := renewAt(from, exp, 0, func() float64 { return 0.5 })
	require.Equal(t, exp.Add(-12*time.Minute-3*time.Minute), got, "half the jitter")
	got = renewAt(from, exp, 0, func() float64 { return math.Nextafter(1, 0) })
	require.True(t, got.After(earliestAt) && got.Before(earliestAt.Add(time.Microsecond)), "all of it, nearly: %v", got)

	short := renewAt(from, from.Add(time.Second), 0, func() float64 { return 0 })
	require.Equal(t, from.Add(500*time.Millisecond), short, "the lead never exceeds half the lifetime")

	// 1000 clients with the same lifetime refresh at spread-out times.
	var offs []time.Duration
	for i := 0; i < 1000; i++ {
		offs = append(offs, renewAt(from, exp, 0, rand.Float64).Sub(from))
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	require.Greater(t, offs[len(offs)-1]-offs[0], 5*time.Minute)
}

func sharedUsers() int {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.users
}

// Clients without an HTTP client of their own share one pool; the pool is
// emptied when the last of them closes, not when any one does.
func TestSharedTransportCountsItsClients(t *testing.T) {
	env := newServer(t)
	base := sharedUsers()
	ticket := func() *Options {
		return &Options{Auth: &TicketAuth{Endpoint: env.TicketURL(), Tokens: env.TokenSource("alice", time.Hour)}}
	}
	a, b := dialed(t, env, ticket()), dialed(t, env, ticket())
	require.Same(t, a.hc, b.hc, "one REST client for both")
	own := dialed(t, env, &Options{HTTPClient: &http.Client{}, Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}})
	require.NotSame(t, a.hc, own.hc)
	require.Equal(t, base+2, sharedUsers(), "a client with its own HTTP client is not counted")
	require.NoError(t, a.Close())
	require.Equal(t, base+1, sharedUsers())
	require.NoError(t, b.Close())
	require.NoError(t, own.Close())
	require.Equal(t, base, sharedUsers())
}

func TestLazyContextBehavesLikeItsEagerForm(t *testing.T) {
	// The deadline counts from when it was set, not from first use.
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	l := &lazyContext{parent: parent, deadline: time.Now().Add(-time.Second)}
	require.ErrorIs(t, l.Err(), context.DeadlineExceeded, "past its deadline when first used")
	dl, ok := l.Deadline()
	require.True(t, ok)
	require.WithinDuration(t, time.Now().Add(-time.Second), dl, 500*time.Millisecond)

	// A parent's end reaches it, and a child of it, without a goroutine of
	// the context package's (the child attaches to the inner context).
	l = &lazyContext{parent: parent, deadline: time.Now().Add(time.Hour)}
	child, cancelChild := context.WithCancel(l)
	defer cancelChild()
	cancelParent()
	select {
	case <-child.Done():
	case <-time.After(waitLong):
		t.Fatal("the parent's cancellation did not reach the child")
	}
	require.ErrorIs(t, l.Err(), context.Canceled)

	// stop before any use leaves it cancelled when it is used.
	l = &lazyContext{parent: context.Background()}
	l.stop()
	require.ErrorIs(t, l.Err(), context.Canceled)
	_, ok = l.Deadline()
	require.False(t, ok, "no deadline when none was set")

	// stop after use cancels it too.
	l = &lazyContext{parent: context.Background()}
	done := l.Done()
	l.stop()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("stop did not end the context")
	}
}

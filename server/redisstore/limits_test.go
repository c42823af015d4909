package redisstore

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

// TestRateLimiterShared: two instances draw from one bucket per key.
func TestRateLimiterShared(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	a := d.store(t).Limits().RateLimiter("handshake", 0, 3)
	b := d.store(t).Limits().RateLimiter("handshake", 0, 3)
	for i, l := range []server.RateLimiter{a, b, a} {
		ok, _ := l.Allow(ctx, "192.0.2.1")
		require.True(t, ok, "token %d of the shared burst", i+1)
	}
	for _, l := range []server.RateLimiter{a, b} {
		ok, retry := l.Allow(ctx, "192.0.2.1")
		require.False(t, ok, "the burst is spent for both instances")
		require.Equal(t, time.Minute, retry, "a zero rate never refills")
	}
	ok, _ := b.Allow(ctx, "192.0.2.2")
	require.True(t, ok, "another key has its own bucket")
	other := d.store(t).Limits().RateLimiter("ticket", 0, 1)
	ok, _ = other.Allow(ctx, "192.0.2.1")
	require.True(t, ok, "another limit has its own buckets")

	slow := d.store(t).Limits().RateLimiter("login", 0.25, 1)
	ok, _ = slow.Allow(ctx, "192.0.2.1")
	require.True(t, ok)
	ok, retry := slow.Allow(ctx, "192.0.2.1")
	require.False(t, ok)
	require.Greater(t, retry, 2*time.Second, "one token in four seconds")
	require.LessOrEqual(t, retry, 4*time.Second)
	require.Zero(t, retry%time.Second, "whole seconds, for Retry-After")

	ttl, err := d.rs.Client(t).PTTL(ctx, "wsauth:rate:login:192.0.2.1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0), "a bucket expires once it would be full again")
	require.LessOrEqual(t, ttl, 5*time.Second)
}

// TestRateLimitAcrossInstances: the handshake and ticket budgets of an IP are one for the
// deployment: what an IP spent on A is gone on B.
func TestRateLimitAcrossInstances(t *testing.T) {
	d := newDeployment(t)
	tok := d.token(t, "alice")
	t.Run("handshake", func(t *testing.T) {
		limited := func(c *server.Config) { c.HandshakeRate, c.HandshakeBurst = 0.001, 2 }
		a, b := d.instance(t, limited), d.instance(t, limited)
		authed(t, a.wsURL(""), headerOpts(tok))
		authed(t, b.wsURL(""), headerOpts(tok))
		for _, in := range []*instance{a, b} {
			resp := refusedStatus(t, in.wsURL(""), headerOpts(tok), http.StatusTooManyRequests)
			require.NotEmpty(t, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("ticket", func(t *testing.T) {
		limited := func(c *server.Config) { c.TicketRate, c.TicketBurst = 0.001, 3 }
		a, b := d.instance(t, limited), d.instance(t, limited)
		a.ticket(t, tok)
		b.ticket(t, tok)
		a.ticket(t, tok)
		for _, in := range []*instance{b, a} {
			resp, _ := in.ticketResp(t, tok)
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the IP spent its burst of 3 over both instances")
			require.NotEmpty(t, resp.Header.Get("Retry-After"))
		}
	})
}

// TestAccountLimitAcrossInstances: the failed logins of an account, and the failed token
// requests of a client id, are counted for the deployment: guesses spread over A and B share
// one budget. A right password costs nothing on either instance (the shared bucket gets its
// token back), until the budget is spent.
func TestAccountLimitAcrossInstances(t *testing.T) {
	d := newDeployment(t)
	limited := func(c *server.Config) {
		c.Users = map[string]string{"alice": "right"}
		c.Clients = map[string]string{"bot": "right"}
		c.LoginAccountRate, c.LoginAccountBurst = 0.0001, 3
	}
	a, b := d.instance(t, limited), d.instance(t, limited)
	login := func(in *instance, pw string) int {
		return in.post(t, "/api/login", "application/json", `{"username":"alice","password":"`+pw+`"}`, nil).StatusCode
	}
	token := func(in *instance, secret string) int {
		return in.post(t, "/oauth/token", "application/x-www-form-urlencoded",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"bot"}, "client_secret": {secret}}.Encode(), nil).StatusCode
	}
	for _, ep := range []struct {
		name string
		try  func(*instance, string) int
		ok   int
	}{{"login", login, http.StatusNoContent}, {"token", token, http.StatusOK}} {
		for i, in := range []*instance{a, b, a, b} {
			require.Equal(t, ep.ok, ep.try(in, "right"), "%s: right password %d", ep.name, i+1)
		}
		for i, in := range []*instance{a, b, a} {
			require.Equal(t, http.StatusUnauthorized, ep.try(in, "guess"), "%s: guess %d of the budget of 3", ep.name, i+1)
		}
		require.Equal(t, http.StatusTooManyRequests, ep.try(b, "guess"), "%s: B knows what A spent", ep.name)
		require.Equal(t, http.StatusTooManyRequests, ep.try(a, "guess"), ep.name)
		require.Equal(t, http.StatusTooManyRequests, ep.try(b, "right"), "%s: limited, whatever the password", ep.name)
	}
}

// TestPrincipalCapAcrossInstances: MaxConnsPerPrincipal holds for the deployment: a
// subject's connections on A and B count together, and a slot freed on A is free on B.
func TestPrincipalCapAcrossInstances(t *testing.T) {
	d := newDeployment(t)
	capped := func(c *server.Config) { c.MaxConnsPerPrincipal = 2 }
	a, b := d.instance(t, capped), d.instance(t, capped)
	alice := d.token(t, "alice")
	onA := authed(t, a.wsURL(""), headerOpts(alice))
	echo(t, authed(t, b.wsURL("?ticket="+a.ticket(t, alice)), nil), "second slot, on B")

	for _, in := range []*instance{a, b} {
		resp := refusedStatus(t, in.wsURL(""), headerOpts(alice), http.StatusTooManyRequests)
		require.Equal(t, "5", resp.Header.Get("Retry-After"))
	}
	c, _, err := dial(t, b.wsURL("?token="+alice), nil)
	require.NoError(t, err)
	requireRefused(t, c, websocket.StatusTryAgainLater, server.ReasonTooManyConnections)
	require.EqualValues(t, 1, a.srv.Stats().PrincipalCapped)
	require.EqualValues(t, 2, b.srv.Stats().PrincipalCapped)
	echo(t, authed(t, a.wsURL(""), headerOpts(d.token(t, "bob"))), "another subject")

	require.NoError(t, onA.Close(websocket.StatusNormalClosure, ""))
	rdb := d.rs.Client(t)
	require.Eventually(t, func() bool {
		n, err := rdb.ZCard(ctxT(t), "wsauth:conns:principal:alice").Result()
		return err == nil && n == 1
	}, waitLimit, 10*time.Millisecond, "A gives the slot back when the socket has closed")
	echo(t, authed(t, b.wsURL(""), headerOpts(alice)), "the slot freed on A, taken on B")
}

// TestRateLimiterFallback: with Redis down the limit is kept in the process, and still
// holds.
func TestRateLimiterFallback(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	l := d.store(t).Limits().RateLimiter("handshake", 0, 2)
	ok, _ := l.Allow(ctx, "192.0.2.1")
	require.True(t, ok)
	d.rs.Stop(t)
	for range 2 {
		ok, _ = l.Allow(ctx, "192.0.2.1")
		require.True(t, ok, "the local bucket starts full")
	}
	ok, retry := l.Allow(ctx, "192.0.2.1")
	require.False(t, ok, "and is spent like the shared one")
	require.Equal(t, time.Minute, retry)
	d.rs.Restart(t)
	ok, _ = l.Allow(ctx, "192.0.2.1")
	require.True(t, ok, "back on the shared bucket, which had one token left")
	ok, _ = l.Allow(ctx, "192.0.2.1")
	require.False(t, ok)
}

// TestSlotLimiterShared: at most max slots per key across instances; a release frees one.
func TestSlotLimiterShared(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	a := d.store(t).Limits().SlotLimiter("principal", 2)
	b := d.store(t).Limits().SlotLimiter("principal", 2)
	r1, ok := a.Acquire(ctx, "alice")
	require.True(t, ok)
	r2, ok := b.Acquire(ctx, "alice")
	require.True(t, ok)
	for _, l := range []server.SlotLimiter{a, b} {
		_, ok = l.Acquire(ctx, "alice")
		require.False(t, ok, "alice holds both slots")
	}
	r3, ok := a.Acquire(ctx, "bob")
	require.True(t, ok, "bob has slots of his own")
	r1()
	r1() // a second release changes nothing
	r4, ok := b.Acquire(ctx, "alice")
	require.True(t, ok, "a released slot is free on any instance")
	_, ok = a.Acquire(ctx, "alice")
	require.False(t, ok)
	for _, r := range []func(){r2, r3, r4} {
		r()
	}
	require.Empty(t, d.keys(t), "no slot left behind")
}

// TestSlotLimiterLeases: a slot is a lease on Redis's clock, so an instance that dies
// frees its slots after LeaseTTL; renewal extends the leases, and puts back those a Redis
// restart lost.
func TestSlotLimiterLeases(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	st := New(d.client(t), &Options{LeaseTTL: 30 * time.Second})
	l := st.Limits().SlotLimiter("principal", 1).(*slotLimiter)
	release, ok := l.Acquire(ctx, "alice")
	require.True(t, ok)
	defer release()

	c := d.rs.Client(t)
	key := "wsauth:conns:principal:alice"
	score := func() float64 {
		t.Helper()
		zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
		require.NoError(t, err)
		require.Len(t, zs, 1)
		return zs[0].Score
	}
	now, err := c.Time(ctx).Result()
	require.NoError(t, err)
	require.InDelta(t, float64(now.Add(30*time.Second).UnixMilli()), score(), 5000, "the lease ends LeaseTTL from Redis's now")

	require.NoError(t, c.FlushAll(ctx).Err()) // Redis lost its data
	other, ok := st.Limits().SlotLimiter("principal", 1).Acquire(ctx, "alice")
	require.True(t, ok, "a lost lease frees the slot")
	defer other()
	l.renewHeld()
	n, err := c.ZCard(ctx, key).Result()
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "renewal puts the lost lease back")
}

// TestSlotLimiterFallback: with Redis down the cap is kept per instance.
func TestSlotLimiterFallback(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	l := d.store(t).Limits().SlotLimiter("principal", 1)
	d.rs.Stop(t)
	release, ok := l.Acquire(ctx, "alice")
	require.True(t, ok)
	_, ok = l.Acquire(ctx, "alice")
	require.False(t, ok)
	release()
	d.rs.Restart(t)
}

// TestRateLimiterRefund: Refund gives back a token of the shared bucket, never above the
// burst, and of the local one while Redis is down.
func TestRateLimiterRefund(t *testing.T) {
	d := newDeployment(t)
	ctx := ctxT(t)
	l := d.store(t).Limits().RateLimiter("login-account", 0, 2)
	r, ok := l.(server.RateRefunder)
	require.True(t, ok, "the per-account limits need Refund")
	r.Refund(ctx, "alice") // no bucket yet: it is full, and stays so
	take := func(want int) {
		t.Helper()
		for i := range want {
			ok, _ := l.Allow(ctx, "alice")
			require.True(t, ok, "token %d of %d", i+1, want)
		}
		ok, _ := l.Allow(ctx, "alice")
		require.False(t, ok, "only %d tokens", want)
	}
	take(2)
	r.Refund(ctx, "alice")
	take(1)
	for range 3 {
		r.Refund(ctx, "alice")
	}
	take(2)

	d.rs.Stop(t)
	take(2) // the local bucket starts full
	r.Refund(ctx, "alice")
	take(1)
	d.rs.Restart(t)
	r.Refund(ctx, "alice")
	take(1)
}

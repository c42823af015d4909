package redisstore

import (
	"net/http"
	"testing"
	"time"

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

// TestRateLimitAcrossInstances: the handshake budget of an IP is one for the deployment.
func TestRateLimitAcrossInstances(t *testing.T) {
	d := newDeployment(t)
	limited := func(c *server.Config) { c.HandshakeRate, c.HandshakeBurst = 0.001, 2 }
	a, b := d.instance(t, limited), d.instance(t, limited)
	tok := d.token(t, "alice")
	authed(t, a.wsURL(""), headerOpts(tok))
	authed(t, b.wsURL(""), headerOpts(tok))
	for _, in := range []*instance{a, b} {
		resp := refusedStatus(t, in.wsURL(""), headerOpts(tok), http.StatusTooManyRequests)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
	}
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

package redisstore

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
)

// Limits is a server.Limits in Redis: one budget per key for the whole deployment, so that
// a second instance does not double an attacker's rate or connection count. The server
// keeps in it the per-IP rates of handshakes, tickets, logins and tokens, the failed logins
// per account and token requests per client id, and the connections per principal. Buckets and
// slot counts are kept by scripts on Redis's clock (TIME), so instances whose clocks
// disagree still share one budget.
//
// While Redis cannot be reached each instance falls back to a budget of its own, the same
// as without Limits: the limits still hold per instance, and handshakes that need no store
// keep working.
type Limits struct {
	st *Store
}

// Limits returns the Store's shared limits.
func (st *Store) Limits() *Limits {
	return &Limits{st: st}
}

// RateLimiter returns the token buckets called name, one per key, in keys
// prefix+"rate:"+name+":"+key that expire once full again (after a day at most); see
// server.Limits. They implement server.RateRefunder, so the per-account limits count
// failed attempts only.
func (l *Limits) RateLimiter(name string, perSecond float64, burst int) server.RateLimiter {
	return &rateLimiter{
		st:    l.st,
		name:  name,
		rate:  max(0, perSecond),
		burst: max(1, burst),
		local: newLocalBuckets(max(0, perSecond), max(1, burst)),
	}
}

// SlotLimiter returns the cap called name, one per key, in sorted sets
// prefix+"conns:"+name+":"+key of leases; see server.Limits and Options.LeaseTTL.
func (l *Limits) SlotLimiter(name string, max int) server.SlotLimiter {
	return &slotLimiter{st: l.st, name: name, max: max, held: make(map[string]map[string]bool)}
}

// rateScript takes one token from a bucket. KEYS: bucket. ARGV: rate (tokens a second),
// burst. It returns {1, 0} for a token, or {0, wait in ms}.
var rateScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'n', 't')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if tokens == nil or last == nil then
  tokens, last = burst, now
elseif now > last then
  tokens = math.min(burst, tokens + (now - last) * rate / 1000)
  last = now
end
local ok, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
elseif rate > 0 then
  wait = math.min(math.ceil((1 - tokens) * 1000 / rate), 86400000)
else
  wait = 60000
end
redis.call('HSET', KEYS[1], 'n', tostring(tokens), 't', tostring(last))
if rate > 0 then
  redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst * 1000 / rate) + 1000, 86400000))
else
  redis.call('PEXPIRE', KEYS[1], 86400000)
end
return {ok, wait}
`)

// rateLimiter is one family of shared token buckets.
type rateLimiter struct {
	st    *Store
	name  string
	rate  float64
	burst int
	local *localBuckets // while Redis is down
}

// Allow takes a token from key's bucket; see server.RateLimiter.
func (r *rateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration) {
	ctx, cancel := r.st.op(ctx)
	defer cancel()
	res, err := rateScript.Run(ctx, r.st.rdb, []string{r.st.key("rate:" + r.name + ":" + key)},
		strconv.FormatFloat(r.rate, 'g', -1, 64), r.burst).Int64Slice()
	if err != nil || len(res) != 2 {
		r.st.log.Warn("redisstore: shared rate limit unavailable; using this instance's", "limit", r.name, "error", err)
		return r.local.allow(key)
	}
	if res[0] == 1 {
		return true, 0
	}
	return false, wholeSeconds(time.Duration(res[1]) * time.Millisecond)
}

// refundScript gives a token back to a bucket, never above its burst; a bucket that has
// expired is full already. KEYS: bucket. ARGV: rate, burst. It returns 1 if there was a
// bucket.
var refundScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'n', 't')
local tokens, last = tonumber(b[1]), tonumber(b[2])
if tokens == nil or last == nil then
  return 0
end
if now > last then
  tokens = tokens + (now - last) * rate / 1000
  last = now
end
tokens = math.min(burst, tokens + 1)
redis.call('HSET', KEYS[1], 'n', tostring(tokens), 't', tostring(last))
return 1
`)

// Refund gives back a token that Allow took, as the per-account limits do for a right
// password; see server.RateRefunder. While Redis is down it refunds the local bucket.
func (r *rateLimiter) Refund(ctx context.Context, key string) {
	ctx, cancel := r.st.op(ctx)
	defer cancel()
	err := refundScript.Run(ctx, r.st.rdb, []string{r.st.key("rate:" + r.name + ":" + key)},
		strconv.FormatFloat(r.rate, 'g', -1, 64), r.burst).Err()
	if err != nil {
		r.st.log.Warn("redisstore: shared rate limit unavailable; refunding this instance's", "limit", r.name, "error", err)
		r.local.refund(key)
	}
}

// wholeSeconds rounds d up to whole seconds, at least one, as Retry-After needs.
func wholeSeconds(d time.Duration) time.Duration {
	return time.Duration(max(1, math.Ceil(d.Seconds()))) * time.Second
}

// maxWait caps the waits the limiters report: a day, as the server caps Retry-After, and
// far from overflowing a Duration however slow the rate.
const maxWait = 24 * time.Hour

// localBuckets are the in-process token buckets a rateLimiter falls back to. Idle buckets
// (full again) are dropped at most once a minute by the calls that use them.
type localBuckets struct {
	rate  float64 // tokens a second
	burst float64
	idle  time.Duration

	mu        sync.Mutex
	buckets   map[string]*localBucket
	lastPrune time.Time
}

type localBucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newLocalBuckets(perSecond float64, burst int) *localBuckets {
	idle := maxWait
	if perSecond > 0 {
		idle = time.Duration(math.Min(float64(burst)/perSecond, maxWait.Seconds()) * float64(time.Second))
	}
	return &localBuckets{rate: perSecond, burst: float64(burst), idle: idle, buckets: make(map[string]*localBucket)}
}

// bucketLocked returns key's bucket refilled up to now, making a full one if there is
// none. l.mu must be held.
func (l *localBuckets) bucketLocked(key string, now time.Time) *localBucket {
	if now.Sub(l.lastPrune) >= time.Minute {
		l.lastPrune = now
		for k, b := range l.buckets {
			if now.Sub(b.at) >= l.idle {
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[key]
	if b == nil {
		b = &localBucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el.Seconds()*l.rate)
	}
	b.at = now
	return b
}

func (l *localBuckets) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, time.Now())
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.rate <= 0 {
		return false, time.Minute
	}
	return false, wholeSeconds(time.Duration(math.Min((1-b.tokens)/l.rate, maxWait.Seconds()) * float64(time.Second)))
}

func (l *localBuckets) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, time.Now())
	b.tokens = math.Min(l.burst, b.tokens+1)
}

// acquireScript takes a slot: it drops expired leases and adds one unless the cap is
// reached. KEYS: lease set. ARGV: max, member, lease ms. It returns 1 or 0.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// renewScript extends leases, and puts back any that Redis lost (a restart without
// persistence). KEYS: lease set. ARGV: lease ms, members….
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// slotLimiter is one family of shared connection caps. The slots an instance holds are
// leases that a goroutine renews while there are any; it stops when the last is released.
type slotLimiter struct {
	st   *Store
	name string
	max  int

	// redisMu orders renewals and releases in Redis: a renewal whose snapshot still held a
	// lease must not put it back after its release removed it.
	redisMu sync.Mutex

	mu      sync.Mutex
	held    map[string]map[string]bool // key → lease members held here
	n       int
	stop    chan struct{}
	stopped chan struct{}
}

// Acquire takes a slot of key; see server.SlotLimiter.
func (c *slotLimiter) Acquire(ctx context.Context, key string) (func(), bool) {
	member := randomTag()
	lease := c.st.leaseTTL.Milliseconds()
	octx, cancel := c.st.op(ctx)
	ok, err := acquireScript.Run(octx, c.st.rdb, []string{c.setKey(key)}, c.max, member, lease).Int()
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.st.log.Warn("redisstore: shared connection cap unavailable; using this instance's", "limit", c.name, "error", err)
		ok = 0
		if len(c.held[key]) < c.max {
			ok = 1 // renewal puts the lease into Redis once it is back
		}
	}
	if ok != 1 {
		return nil, false
	}
	if c.held[key] == nil {
		c.held[key] = make(map[string]bool)
	}
	c.held[key][member] = true
	c.n++
	if c.n == 1 {
		c.stop, c.stopped = make(chan struct{}), make(chan struct{})
		go c.renew(c.stop, c.stopped)
	}
	return sync.OnceFunc(func() { c.release(key, member) }), true
}

func (c *slotLimiter) setKey(key string) string {
	return c.st.key("conns:" + c.name + ":" + key)
}

// release gives a slot back, and stops the renewer with the last one.
func (c *slotLimiter) release(key, member string) {
	c.mu.Lock()
	delete(c.held[key], member)
	if len(c.held[key]) == 0 {
		delete(c.held, key)
	}
	c.n--
	var stop, stopped chan struct{}
	if c.n == 0 {
		stop, stopped = c.stop, c.stopped
		c.stop, c.stopped = nil, nil
	}
	c.mu.Unlock()
	c.redisMu.Lock()
	ctx, cancel := c.st.op(context.Background())
	if err := c.st.rdb.ZRem(ctx, c.setKey(key), member).Err(); err != nil {
		c.st.log.Warn("redisstore: connection slot not released; it expires with its lease", "limit", c.name, "error", err)
	}
	cancel()
	c.redisMu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
}

// renew extends the held leases every LeaseTTL/3 until stop is closed.
func (c *slotLimiter) renew(stop, stopped chan struct{}) {
	defer close(stopped)
	tick := time.NewTicker(c.st.leaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c.renewHeld()
	}
}

// renewHeld extends every lease held now.
func (c *slotLimiter) renewHeld() {
	c.redisMu.Lock()
	defer c.redisMu.Unlock()
	c.mu.Lock()
	batch := make(map[string][]any, len(c.held))
	for key, members := range c.held {
		args := []any{c.st.leaseTTL.Milliseconds()}
		for m := range members {
			args = append(args, m)
		}
		batch[key] = args
	}
	c.mu.Unlock()
	for key, args := range batch {
		ctx, cancel := c.st.op(context.Background())
		if err := renewScript.Run(ctx, c.st.rdb, []string{c.setKey(key)}, args...).Err(); err != nil {
			c.st.log.Warn("redisstore: connection slots not renewed", "limit", c.name, "error", err)
		}
		cancel()
	}
}

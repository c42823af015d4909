package server

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per client IP. Idle buckets are pruned lazily, at most once per
// pruneInterval, by the calls that use the limiter; there is no background goroutine.
type ipLimiter struct {
	limit rate.Limit
	burst int
	// idle is how long a bucket must be unused before it is full again, at which point
	// forgetting it changes nothing.
	idle time.Duration
	// shared, when set (Config.Limits), keeps the buckets outside the process instead.
	shared RateLimiter

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

const pruneInterval = time.Minute

// newIPLimiter returns a limiter allowing perSecond events per IP with the given burst; a
// negative perSecond disables limiting.
func newIPLimiter(perSecond float64, burst int) *ipLimiter {
	l := &ipLimiter{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*bucket)}
	if perSecond < 0 {
		l.limit = rate.Inf
	}
	l.idle = idleFor(perSecond, burst)
	return l
}

// maxIdle is how long at most a bucket is kept unused. A bucket of a very slow rate that is
// forgotten after it starts full again, a little early; without the bound the conversion to
// a Duration would overflow.
const maxIdle = 24 * time.Hour

// idleFor is how long a bucket must be unused before it is full again, at most maxIdle; a
// zero rate never refills, so such a bucket is kept maxIdle.
func idleFor(perSecond float64, burst int) time.Duration {
	if perSecond <= 0 {
		return maxIdle
	}
	secs := float64(burst) / perSecond
	if secs >= maxIdle.Seconds() {
		return maxIdle
	}
	return time.Duration(secs * float64(time.Second))
}

// waitSeconds turns a wait of secs seconds into whole seconds, at least one, at most
// maxRetryAfter.
func waitSeconds(secs float64) time.Duration {
	if math.IsNaN(secs) || secs < 1 {
		secs = 1
	}
	secs = math.Min(math.Ceil(secs), maxRetryAfter.Seconds())
	return time.Duration(secs) * time.Second
}

// allow takes one token from ip's bucket. When there is none it reports how long until there
// will be one, rounded up to whole seconds and at least one, for Retry-After.
func (l *ipLimiter) allow(ip string) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	if l.shared != nil {
		return l.shared.Allow(context.Background(), ip)
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= pruneInterval {
		l.lastPrune = now
		for k, b := range l.buckets {
			if now.Sub(b.used) >= l.idle {
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[ip] = b
	}
	b.used = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, retryAfter(b.lim, now)
}

// retryAfter is the wait until lim has a token again, in whole seconds, at least one.
func retryAfter(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if lim.Limit() <= 0 {
		return 60 * time.Second // a zero rate never refills; tell the client to come back much later
	}
	return waitSeconds(missing / float64(lim.Limit()))
}

// size reports how many buckets are held (for tests of pruning).
func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// slotCounter caps the slots held at once per key, in the process: the connections per IP
// that are upgraded but not yet authenticated (first-message auth: each of them holds a
// socket and a goroutine for up to AuthTimeout), and, without Config.Limits, the
// connections per principal.
type slotCounter struct {
	max int // <= 0: unlimited

	mu     sync.Mutex
	counts map[string]int
}

func newSlotCounter(max int) *slotCounter {
	return &slotCounter{max: max, counts: make(map[string]int)}
}

// acquire takes a slot for key, or reports false when key already holds max slots.
func (p *slotCounter) acquire(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.counts[key] >= p.max {
		return false
	}
	p.counts[key]++
	return true
}

// release gives back a slot taken by acquire; entries drop out of the map at zero.
func (p *slotCounter) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts[key] <= 1 {
		delete(p.counts, key)
		return
	}
	p.counts[key]--
}

// Acquire makes a slotCounter the SlotLimiter of one instance.
func (p *slotCounter) Acquire(_ context.Context, key string) (func(), bool) {
	if !p.acquire(key) {
		return nil, false
	}
	return sync.OnceFunc(func() { p.release(key) }), true
}

// accountLimiter limits failed attempts per account name (a username, a client id) from all
// IPs together, against guessing spread over many addresses. It is a token bucket per name
// whose tokens failures use up: take reserves one before the check, and refund gives it back
// when the check succeeded, so a right password costs nothing while concurrent guesses
// cannot overdraw the bucket. Idle buckets are pruned lazily like ipLimiter's.
type accountLimiter struct {
	perSecond float64 // < 0: unlimited
	burst     float64
	idle      time.Duration
	// shared, when set (Config.Limits), keeps the buckets outside the process instead; it
	// refunds only if it is a RateRefunder.
	shared RateLimiter

	mu        sync.Mutex
	accounts  map[string]*account
	lastPrune time.Time
}

type account struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// newAccountLimiter returns a limiter refilling perSecond tokens per account up to burst; a
// negative perSecond disables it.
func newAccountLimiter(perSecond float64, burst int) *accountLimiter {
	return &accountLimiter{perSecond: perSecond, burst: float64(burst), idle: idleFor(perSecond, burst), accounts: make(map[string]*account)}
}

// refillLocked brings a's tokens up to now. l.mu must be held.
func (l *accountLimiter) refillLocked(a *account, now time.Time) {
	if el := now.Sub(a.at); el > 0 {
		a.tokens = math.Min(l.burst, a.tokens+el.Seconds()*l.perSecond)
	}
	a.at = now
}

// take reserves a token of name's bucket. Without one it reports how long until there is
// one, in whole seconds and at least one, for Retry-After.
func (l *accountLimiter) take(name string) (bool, time.Duration) {
	if l.perSecond < 0 {
		return true, 0
	}
	if l.shared != nil {
		return l.shared.Allow(context.Background(), name)
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= pruneInterval {
		l.lastPrune = now
		for k, a := range l.accounts {
			if now.Sub(a.at) >= l.idle {
				delete(l.accounts, k)
			}
		}
	}
	a := l.accounts[name]
	if a == nil {
		a = &account{tokens: l.burst, at: now}
		l.accounts[name] = a
	}
	l.refillLocked(a, now)
	if a.tokens >= 1 {
		a.tokens--
		return true, 0
	}
	if l.perSecond == 0 {
		return false, 60 * time.Second // a zero rate never refills
	}
	return false, waitSeconds((1 - a.tokens) / l.perSecond)
}

// refund gives back the token a successful attempt took.
func (l *accountLimiter) refund(name string) {
	if l.perSecond < 0 {
		return
	}
	if l.shared != nil {
		if r, ok := l.shared.(RateRefunder); ok {
			r.Refund(context.Background(), name)
		}
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.accounts[name]; a != nil {
		l.refillLocked(a, now)
		a.tokens = math.Min(l.burst, a.tokens+1)
	}
}

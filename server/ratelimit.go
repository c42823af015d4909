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
	switch {
	case perSecond < 0:
		l.limit = rate.Inf
	case perSecond == 0:
		l.idle = 24 * time.Hour // never refills; keep the bucket a good while
	default:
		l.idle = time.Duration(float64(burst) / perSecond * float64(time.Second))
	}
	return l
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
	secs := 1.0
	if lim.Limit() > 0 {
		secs = math.Max(1, math.Ceil(missing/float64(lim.Limit())))
	} else {
		secs = 60 // a zero rate never refills; tell the client to come back much later
	}
	return time.Duration(secs) * time.Second
}

// size reports how many buckets are held (for tests of pruning).
func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// preAuthCounter caps the connections per IP that are upgraded but not yet authenticated
// (first-message auth): each of them holds a socket and a goroutine for up to AuthTimeout.
type preAuthCounter struct {
	max int // <= 0: unlimited

	mu     sync.Mutex
	counts map[string]int
}

func newPreAuthCounter(max int) *preAuthCounter {
	return &preAuthCounter{max: max, counts: make(map[string]int)}
}

// acquire takes a slot for ip, or reports false when ip already holds max slots.
func (p *preAuthCounter) acquire(ip string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.counts[ip] >= p.max {
		return false
	}
	p.counts[ip]++
	return true
}

// release gives back a slot taken by acquire; entries drop out of the map at zero.
func (p *preAuthCounter) release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts[ip] <= 1 {
		delete(p.counts, ip)
		return
	}
	p.counts[ip]--
}

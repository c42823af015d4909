package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/wsauth/wsauth"
)

// A fleet is the storm's N wsauth clients, in this process. Each records
// its events; the fleet counts, by events, when all of them are connected
// and when all of them have reconnected after the restart.

// perAddr is how many clients share a source address. An explicitly bound
// socket never takes a port in TIME_WAIT, and every run closes thousands
// of ticket and WebSocket connections: 500 a source address keeps far
// below the 28,000 ephemeral ports of one, for every run of the command.
const perAddr = 500

// sourceAddr spreads client i of run r over 127.0.r+1.2 and up.
func sourceAddr(r, i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, byte(r/250), byte(1+r%250), byte(2+i/perAddr))}
}

// clientLog is what one client went through, from its events.
type clientLog struct {
	mu     sync.Mutex
	events []wsauth.Event
}

// fleet is the clients of one run.
type fleet struct {
	clients []*wsauth.Client
	logs    []*clientLog
	hcs     []*http.Client
	offered *offeredTickets

	restart atomic.Int64 // Unix nanoseconds of the restart; 0 before it
	initial *countdown   // clients not yet connected once
	again   *countdown   // clients not yet connected after the restart
	stopped chan error   // a client stopped for good
}

// policy makes the backoff of one client.
type policy struct {
	name    string
	backoff func() backoff.BackOff // nil: the default, FullJitter
}

// The two policies of the storm.
var (
	fullJitter = policy{name: "full jitter"}
	noJitter   = policy{name: "no jitter", backoff: func() backoff.BackOff {
		// The same ceilings as FullJitter's (500ms, ×2, 30s), without the
		// randomisation: every client waits exactly as long.
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 500 * time.Millisecond
		b.Multiplier = 2
		b.MaxInterval = 30 * time.Second
		b.RandomizationFactor = 0
		b.MaxElapsedTime = 0
		b.Reset()
		return b
	}}
)

// fleetConfig is what the clients of a run are made with.
type fleetConfig struct {
	run         int // the run's index, which picks its source addresses
	n           int
	wsURL       string
	ticketURL   string
	tokens      []string
	policy      policy
	stableAfter time.Duration // 0: the default
	parallel    int           // first connections in flight at once
}

// connectFleet starts the clients, cfg.parallel first connections at a
// time, and returns once every one of them is connected.
func connectFleet(ctx context.Context, cfg fleetConfig) (*fleet, error) {
	f := &fleet{
		logs:    make([]*clientLog, cfg.n),
		clients: make([]*wsauth.Client, cfg.n),
		offered: &offeredTickets{seen: map[[32]byte]int{}},
		initial: newCountdown(cfg.n),
		again:   newCountdown(cfg.n),
		stopped: make(chan error, cfg.n),
	}
	for i := range cfg.n {
		f.logs[i] = &clientLog{}
	}
	hcFor := map[string]*http.Client{}
	hcOf := make([]*http.Client, cfg.n)
	for i := range cfg.n {
		a := sourceAddr(cfg.run, i)
		hc := hcFor[a.IP.String()]
		if hc == nil {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: a.IP}, Timeout: 30 * time.Second}
			tr := &http.Transport{DialContext: d.DialContext, MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
			hc = &http.Client{Transport: &recordingTransport{rt: tr, offered: f.offered}}
			hcFor[a.IP.String()] = hc
			f.hcs = append(f.hcs, hc)
		}
		hcOf[i] = hc
	}

	sem := make(chan struct{}, max(cfg.parallel, 1))
	errs := make(chan error, cfg.n)
	var wg sync.WaitGroup
	for i := range cfg.n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			f.close()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			opts := &wsauth.Options{
				Auth:       &wsauth.TicketAuth{Endpoint: cfg.ticketURL, Tokens: wsauth.StaticToken(cfg.tokens[i])},
				HTTPClient: hcOf[i],
				OnEvent:    func(e wsauth.Event) { f.onEvent(i, e) },
				Reconnect:  wsauth.ReconnectPolicy{StableAfter: cfg.stableAfter},
			}
			if cfg.policy.backoff != nil {
				opts.Reconnect.Backoff = cfg.policy.backoff()
			}
			dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			c, err := wsauth.Dial(dctx, cfg.wsURL, opts)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			f.clients[i] = c
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		f.close()
		return nil, err
	}
	// Dial returned for every client, but its EventConnected may still be
	// on its way to onEvent.
	select {
	case <-f.initial.done:
	case <-ctx.Done():
		f.close()
		return nil, ctx.Err()
	}
	return f, nil
}

func collect(ch <-chan error) []error {
	var errs []error
	for err := range ch {
		errs = append(errs, err)
	}
	return errs
}

// onEvent records client i's event and counts its connections.
func (f *fleet) onEvent(i int, e wsauth.Event) {
	l := f.logs[i]
	l.mu.Lock()
	l.events = append(l.events, e)
	var initial, again bool
	switch r := f.restart.Load(); {
	case e.Kind == wsauth.EventConnected && (r == 0 || e.Time.UnixNano() < r):
		initial = countKind(l.events, wsauth.EventConnected, 0) == 1
	case e.Kind == wsauth.EventConnected || e.Kind == wsauth.EventRotated:
		// Back after the restart: a reconnection, or a rotation after a
		// going_away notice.
		again = countKind(l.events, wsauth.EventConnected, r)+countKind(l.events, wsauth.EventRotated, r) == 1
	}
	l.mu.Unlock()
	if initial {
		f.initial.dec()
	}
	if again {
		f.again.dec()
	}
	if e.Kind == wsauth.EventStopped && f.restart.Load() != 0 {
		f.stopped <- fmt.Errorf("client %d stopped: %v", i, e.Err)
	}
}

// countKind counts the events of kind at or after since (Unix
// nanoseconds).
func countKind(evs []wsauth.Event, kind wsauth.EventKind, since int64) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind && e.Time.UnixNano() >= since {
			n++
		}
	}
	return n
}

// markRestart records the moment of the restart: connections after it
// count as reconnections.
func (f *fleet) markRestart(at time.Time) { f.restart.Store(at.UnixNano()) }

// waitReconnected waits until every client has connected again (or
// rotated) after the restart, a client stops, or timeout passes.
func (f *fleet) waitReconnected(ctx context.Context, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-f.again.done:
		return nil
	case err := <-f.stopped:
		return err
	case <-tm.C:
		return fmt.Errorf("%d of %d clients not reconnected within %s", f.again.left(), len(f.clients), timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close closes every client and releases the idle connections of the
// fleet's HTTP clients.
func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, c := range f.clients {
		if c != nil {
			wg.Go(func() { _ = c.Close() })
		}
	}
	wg.Wait()
	for _, hc := range f.hcs {
		hc.CloseIdleConnections()
	}
}

// snapshot copies the events of every client.
func (f *fleet) snapshot() [][]wsauth.Event {
	out := make([][]wsauth.Event, len(f.logs))
	for i, l := range f.logs {
		l.mu.Lock()
		out[i] = append([]wsauth.Event(nil), l.events...)
		l.mu.Unlock()
	}
	return out
}

// countdown closes done when it has been decremented n times.
type countdown struct {
	n    atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown {
	c := &countdown{done: make(chan struct{})}
	c.n.Store(int64(n))
	if n == 0 {
		close(c.done)
	}
	return c
}

func (c *countdown) dec() {
	if c.n.Add(-1) == 0 {
		close(c.done)
	}
}

func (c *countdown) left() int64 { return c.n.Load() }

// offeredTickets counts, by their hashes, the tickets the fleet's
// handshakes carried: every one must be offered once.
type offeredTickets struct {
	mu    sync.Mutex
	seen  map[[32]byte]int
	twice int
}

func (o *offeredTickets) add(ticket string) {
	h := sha256.Sum256([]byte(ticket))
	o.mu.Lock()
	o.seen[h]++
	if o.seen[h] == 2 {
		o.twice++
	}
	o.mu.Unlock()
}

func (o *offeredTickets) counts() (offered, twice int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen), o.twice
}

// recordingTransport notes the ticket of every handshake, and counts the
// ticket requests the clients make.
type recordingTransport struct {
	rt      http.RoundTripper
	offered *offeredTickets
}

func (t *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		if tk := r.URL.Query().Get("ticket"); tk != "" {
			t.offered.add(tk)
		}
	}
	return t.rt.RoundTrip(r)
}

func (t *recordingTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

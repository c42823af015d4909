package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/faultproxy"
)

// A phase is a part of a connection's life that a cell aims its fault at,
// with the settings that make the phase happen and the shape its faults
// take there.
type phase struct {
	name string
	// short phases (credentials, handshake, auth) last a round trip or
	// two: their faults are sized for that (pick's first value).
	short bool
	// rest: the fault goes on the ticket endpoint's proxy, not the
	// WebSocket's.
	rest bool
	// firstMessage: the client authenticates with the in-band auth
	// message instead of a ticket.
	firstMessage bool
	// sessionTTL is the server's session lifetime (0: an hour), renewal
	// how the client renews it.
	sessionTTL time.Duration
	renewal    wsauth.Renewal
	// trigger is the client event after which a reconnect-driven phase's
	// fault goes on; 0 for the timer-driven phases.
	trigger wsauth.EventKind
	// Where cut-mid-frame and data-limit bite.
	cutDir   faultproxy.Direction
	cutAt    int
	limitDir faultproxy.Direction
	limit    int64
	// closeForSlowClose makes a close happen under a slow close; set per
	// cell for the phases that have no close of their own.
	closeForSlowClose func()
}

func pick[T any](ph *phase, short, long T) T {
	if ph.short {
		return short
	}
	return long
}

// phases returns the phases, in the matrix's order.
func phases() []phase {
	return []phase{
		{name: "credentials", short: true, rest: true, trigger: wsauth.EventConnecting,
			cutDir: faultproxy.Downstream, cutAt: 20, limitDir: faultproxy.Downstream, limit: 30},
		{name: "handshake", short: true, trigger: wsauth.EventConnecting,
			cutDir: faultproxy.Upstream, cutAt: 40, limitDir: faultproxy.Upstream, limit: 60},
		{name: "auth", short: true, firstMessage: true, trigger: wsauth.EventAuthenticating,
			cutDir: faultproxy.Downstream, cutAt: 3, limitDir: faultproxy.Downstream, limit: 4},
		{name: "refresh", sessionTTL: 3 * time.Second, renewal: wsauth.RenewRefresh,
			cutDir: faultproxy.Upstream, cutAt: 5, limitDir: faultproxy.Upstream, limit: 4096},
		{name: "steady", cutDir: faultproxy.Upstream, cutAt: 5, limitDir: faultproxy.Upstream, limit: 4096},
		{name: "rotation", sessionTTL: 3 * time.Second, renewal: wsauth.RenewRotate,
			cutDir: faultproxy.Upstream, cutAt: 5, limitDir: faultproxy.Upstream, limit: 4096},
	}
}

// cellConfig is one cell of the matrix.
type cellConfig struct {
	phase     phase
	fault     fault
	confirmed bool
	messages  int
	senders   int
	duration  time.Duration // how long the traffic is spread over
}

func (cc cellConfig) mode() string {
	if cc.confirmed {
		return "confirmed"
	}
	return "send"
}

// cellResult is what a cell found.
type cellResult struct {
	Phase      string   `json:"phase"`
	Fault      string   `json:"fault"`
	Mode       string   `json:"mode"`
	Reconnects int      `json:"reconnects"`
	Fetches    int      `json:"credential_fetches"`
	Tokens     int      `json:"tokens_minted"`
	Tickets    int      `json:"tickets_issued"`
	Refusals   int      `json:"refusals"`
	Reoffered  int      `json:"refused_credentials_reoffered"`
	Refreshes  int      `json:"refreshes"`
	Rotations  int      `json:"rotations"`
	Injected   int      `json:"faults_injected"`
	Stopped    string   `json:"client_stopped,omitempty"`
	Seconds    float64  `json:"seconds"`
	Failures   []string `json:"failures,omitempty"`
	Err        string   `json:"error,omitempty"`
	tally      `json:"messages"`
}

// line is the cell's one line of the table.
func (r cellResult) line() string {
	s := fmt.Sprintf("%-11s %-13s %-9s: sent %d, delivered %d, errored %d, unconfirmed %d, lost silently %d, duplicated %d, reconnects %d, credential fetches %d",
		r.Phase, r.Fault, r.Mode, r.Sent, r.Delivered, r.Errored, r.Unconfirmed, r.Lost, r.Duplicated, r.Reconnects, r.Fetches)
	s += fmt.Sprintf(" (refused %d, re-offered %d, refreshes %d, rotations %d, faults %d, %.1fs)",
		r.Refusals, r.Reoffered, r.Refreshes, r.Rotations, r.Injected, r.Seconds)
	if r.Stopped != "" {
		s += " client stopped: " + r.Stopped
	}
	if r.Err != "" {
		s += " ERROR: " + r.Err
	}
	if len(r.Failures) > 0 {
		s += fmt.Sprintf(" FAIL: %v", r.Failures)
	}
	return s
}

// eventLog counts a client's events and lets a driver wait for one.
type eventLog struct {
	ledger *ledger

	mu      sync.Mutex
	counts  map[wsauth.EventKind]int
	changed chan struct{} // closed and replaced on every event
}

func newEventLog(l *ledger) *eventLog {
	return &eventLog{ledger: l, counts: map[wsauth.EventKind]int{}, changed: make(chan struct{})}
}

// on is the client's Options.OnEvent.
func (l *eventLog) on(e wsauth.Event) {
	if e.Kind == wsauth.EventUnconfirmed {
		l.ledger.unconfirmed(e)
	}
	l.mu.Lock()
	l.counts[e.Kind]++
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *eventLog) count(k wsauth.EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[k]
}

// waitFor waits until more than n events of kind k have been seen, ctx
// ends or d passes; it reports whether the event came.
func (l *eventLog) waitFor(ctx context.Context, k wsauth.EventKind, n int, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		l.mu.Lock()
		got, changed := l.counts[k], l.changed
		l.mu.Unlock()
		if got > n {
			return true
		}
		select {
		case <-changed:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// pause waits d or until ctx ends, and reports whether ctx is still live.
// It paces the workload; nothing waits on it for synchronization.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// clientOptions are the options every client of the suite uses: short
// timeouts and a quick backoff so that a cell sees many faults, copies of
// every unconfirmed send, and the event log.
func clientOptions(e *env, ph *phase, ev *eventLog, keep int, rest *http.Client) *wsauth.Options {
	o := &wsauth.Options{
		OnEvent:  ev.on,
		Timeouts: wsauth.Timeouts{Dial: 3 * time.Second, Auth: 3 * time.Second, Write: 2 * time.Second},
		Limits:   wsauth.Limits{KeepUnconfirmed: keep},
		Liveness: wsauth.Liveness{PingInterval: 500 * time.Millisecond, PongTimeout: time.Second},
		Reconnect: wsauth.ReconnectPolicy{
			Backoff: &wsauth.FullJitter{Initial: 20 * time.Millisecond, Multiplier: 2, Max: 250 * time.Millisecond},
			// Refusals are injected on purpose (every fifth token); the
			// default budget of 5 could end a cell early by bad luck.
			MaxAuthFailures: 20,
		},
		Renewal: wsauth.RenewalPolicy{Strategy: ph.renewal},
	}
	if ph.firstMessage {
		o.Auth = &wsauth.FirstMessageAuth{Tokens: e.tokens}
	} else {
		o.Auth = &wsauth.TicketAuth{Endpoint: e.ticketURL(), Tokens: e.tokens, HTTPClient: rest}
	}
	return o
}

// restClient makes the ticket calls: a connection per call, so that a
// fault on the ticket proxy meets a fetch rather than an idle connection.
func restClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// runCell runs one cell: a server, the proxies, one client with
// cc.senders senders sending cc.messages in all over cc.duration, and the
// phase's driver injecting the fault again and again until the senders are
// done. Then it settles, closes everything and counts.
func runCell(ctx context.Context, cc cellConfig) cellResult {
	start := time.Now()
	ph := cc.phase
	res := cellResult{Phase: ph.name, Fault: cc.fault.name, Mode: cc.mode()}
	e, err := newEnv(envConfig{sessionTTL: ph.sessionTTL, badEvery: 5})
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer e.close()
	if !ph.short {
		ph.closeForSlowClose = func() { e.restartAll() }
	}
	ev := newEventLog(e.ledger)
	rest := restClient()
	defer rest.CloseIdleConnections()
	c, err := wsauth.New(e.wsURL(), clientOptions(e, &ph, ev, cc.messages+cc.senders+16, rest))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(ctx, 10*cc.duration+2*time.Minute)
	defer cancel()
	driving, stopDriving := context.WithCancel(ctx)
	var injected int
	var drv sync.WaitGroup
	drv.Go(func() { injected = drive(driving, e, &ph, cc.fault, ev) })

	send := c.Send
	if cc.confirmed {
		send = c.SendConfirmed
	}
	lim := rate.NewLimiter(rate.Limit(float64(cc.messages)/cc.duration.Seconds()), cc.senders)
	var senders sync.WaitGroup
	for s := range cc.senders {
		n := cc.messages / cc.senders
		if s < cc.messages%cc.senders {
			n++
		}
		senders.Go(func() {
			for seq := range n {
				if lim.Wait(ctx) != nil {
					e.ledger.sent(s, seq, ctx.Err())
					continue
				}
				e.ledger.sent(s, seq, send(ctx, wsauth.MessageText, message(s, seq)))
			}
		})
	}
	senders.Wait()
	stopDriving()
	drv.Wait()
	e.clearFaults()

	// Settle: one confirmed send on a healthy path confirms everything
	// written before it on that connection, then Close's handshake.
	for range 3 {
		bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
		err := c.SendConfirmed(bctx, wsauth.MessageText, []byte("barrier"))
		bcancel()
		if err == nil || !errors.Is(err, wsauth.ErrUnconfirmed) {
			break
		}
	}
	if err := c.Err(); err != nil && !errors.Is(err, wsauth.ErrClosed) {
		res.Stopped = err.Error()
	}
	c.Close()
	e.close() // waits for the handlers: the ledger is complete
	rest.CloseIdleConnections()

	res.tally = e.ledger.tally()
	res.Reconnects = ev.count(wsauth.EventReconnecting)
	res.Refreshes = ev.count(wsauth.EventRefreshed)
	res.Rotations = ev.count(wsauth.EventRotated)
	st := e.srv.Stats()
	res.Tokens, res.Tickets = e.tokens.fetched(), int(st.TicketsIssued)
	res.Fetches = res.Tokens + res.Tickets
	res.Refusals, res.Reoffered, _ = e.creds.counts()
	res.Injected = injected
	res.Seconds = time.Since(start).Seconds()
	res.Failures = res.tally.failures()
	// A fault that loses bytes can swallow the refusal itself (a 401 cut
	// in half, an auth_invalid in a black hole): the client never learned
	// of it, and offering the credential again is then right. Only where
	// every byte arrives is a re-offer a broken guarantee.
	if res.Reoffered > 0 && lossless[cc.fault.name] {
		res.Failures = append(res.Failures, fmt.Sprintf("%d refused credentials offered again", res.Reoffered))
	}
	if cc.confirmed {
		if res.FramesListed > 0 {
			res.Failures = append(res.Failures, fmt.Sprintf("%d confirmed sends listed as unconfirmed frames", res.FramesListed))
		}
		// SendConfirmed(k) returned after the server read k, so k+1
		// cannot be read before it, on whatever connection.
		if res.Crossed > 0 {
			res.Failures = append(res.Failures, fmt.Sprintf("%d read before an earlier confirmed one", res.Crossed))
		}
	}
	if res.Sent != cc.messages {
		res.Failures = append(res.Failures, fmt.Sprintf("accounted for %d of %d messages", res.Sent, cc.messages))
	}
	return res
}

// lossless are the faults that delay bytes but never lose them.
var lossless = map[string]bool{"latency": true, "bandwidth": true, "slow-close": true}

// drive injects f at ph again and again until ctx ends, and returns how
// many times it did.
func drive(ctx context.Context, e *env, ph *phase, f fault, ev *eventLog) int {
	target := e.ws
	if ph.rest {
		target = e.rest
	}
	window := f.window
	if window == 0 {
		window = pick(ph, time.Second, 400*time.Millisecond)
	}
	n := 0
	if ph.trigger == 0 {
		// Timer-driven: the phase happens on its own (steady traffic,
		// refreshes and rotations every couple of seconds); the fault
		// comes and goes across it.
		for pause(ctx, 600*time.Millisecond) {
			f.on(target, ph)
			n++
			pause(ctx, window)
			f.off(target)
		}
		return n
	}
	// Reconnect-driven: make the client reconnect, and when it reaches
	// the phase (its trigger event), put the fault on. A little latency on
	// both paths while it does stretches the phase to tens of
	// milliseconds, so the fault lands inside it rather than after it.
	for ctx.Err() == nil {
		connected := ev.count(wsauth.EventConnected)
		triggered := ev.count(ph.trigger)
		e.ws.SetLatency(25 * time.Millisecond)
		e.rest.SetLatency(25 * time.Millisecond)
		e.restartAll()
		if ev.waitFor(ctx, ph.trigger, triggered, 10*time.Second) {
			if f.name == "reset" {
				// A reset needs a connection in the phase to hit.
				until := time.Now().Add(window)
				for target.Conns() == 0 && time.Now().Before(until) && pause(ctx, time.Millisecond) {
				}
			}
			f.on(target, ph)
			n++
			ev.waitFor(ctx, wsauth.EventConnected, connected, window)
			f.off(target)
		}
		e.ws.SetLatency(0)
		e.rest.SetLatency(0)
		ev.waitFor(ctx, wsauth.EventConnected, connected, 15*time.Second)
		pause(ctx, 300*time.Millisecond)
	}
	return n
}

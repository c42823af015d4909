package wsauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// run is the one goroutine that decides to connect and reconnect. It asks
// for credentials, connects, hands a connection that authenticated to
// supervise, and when it ends asks the policy (reconnect.go) what next.
func (c *Client) run() {
	var stopErr error
	defer func() { c.finish(stopErr) }()

	if c.o.InitialJitter > 0 {
		if sleep(c.ctx, rand.N(c.o.InitialJitter)) != nil {
			stopErr = c.localCause()
			return
		}
	}
	why := ReasonInitial
	var run streak
	var verdict Ending // the last ending that carried the server's word
	for {
		run.attempts++
		attempt := run.attempts
		c.enter(StateConnecting, Event{Kind: EventConnecting, Attempt: attempt, Reason: why})
		pc, end := c.connectAside(c.ctx, why, attempt, false)
		if pc != nil {
			end = c.supervise(pc, attempt, why)
		}
		if end.Local {
			stopErr = c.localCause()
			return
		}
		c.mu.Lock()
		c.lastErr = end.Err
		c.mu.Unlock()
		if end.Code != 0 || end.HTTPStatus != 0 || isAuthError(end.Err) {
			verdict = end
		}
		if end.Uptime >= c.o.StableAfter {
			c.bo.Reset()
			run = streak{}
		}

		action := c.classify(end)
		next := run.next(end, action, &c.o)
		if next.stop != "" {
			stopErr = c.gaveUp(next.stop, attempt, end, verdict)
			return
		}
		why = next.why
		if end.renew {
			action = ActionReauth
		}
		var delay time.Duration
		if !next.immediate {
			delay = c.bo.NextBackOff()
			if delay == backoff.Stop {
				stopErr = c.gaveUp("backoff", attempt, end, verdict)
				return
			}
		}
		if ra := min(end.RetryAfter, c.o.MaxRetryAfter); ra > delay {
			delay = ra
		}
		c.enter(StateReconnecting, Event{Kind: EventReconnecting, Attempt: run.attempts + 1, Action: action, Err: end.Err,
			Code: end.Code, CloseReason: end.Reason, HTTPStatus: end.HTTPStatus, Delay: delay})
		if sleep(c.ctx, delay) != nil {
			stopErr = c.localCause()
			return
		}
	}
}

// session is what the supervisor keeps of the logical connection while it
// is up: the live physical connection, the renewal clock, a refresh in
// flight, and the pacing of failed rotations.
type session struct {
	pc      *physConn
	attempt int
	since   time.Time // when the logical connection went live
	renew   lazyTimer
	answer  lazyTimer // the deadline of the refresh in flight
	pending *refreshing
	rotBO   FullJitter
}

// lazyTimer is a timer made on its first Reset: most sessions never renew
// (a static token, no expiry) and never wait for a refresh answer, and a
// connection should not pay for timers it does not use.
type lazyTimer struct{ t *time.Timer }

// C is the timer's channel; nil, which never fires, until the first Reset.
func (l *lazyTimer) C() <-chan time.Time {
	if l.t == nil {
		return nil
	}
	return l.t.C
}

func (l *lazyTimer) Reset(d time.Duration) {
	if l.t == nil {
		l.t = time.NewTimer(d)
		return
	}
	l.t.Reset(d)
}

func (l *lazyTimer) Stop() {
	if l.t != nil {
		l.t.Stop()
	}
}

// supervise runs a connection from authentication to its end: it makes the
// connection live, handles every protocol message the server sends, renews
// the session, follows rotations, and returns the Ending of the last
// physical connection. It is the one place protocol messages are acted on.
func (c *Client) supervise(pc *physConn, attempt int, why Reason) Ending {
	if err := c.onConnect(pc, attempt, why, false); err != nil {
		pc.shutdown(0, "")
		return Ending{Phase: PhaseConnected, Err: err, Local: c.ctx.Err() != nil}
	}
	at := c.goLive(pc)
	c.emit(Event{Kind: EventConnected, Time: at, Attempt: attempt, Expiry: pc.expiry, Subprotocol: pc.ws.Subprotocol(), Verdict: pc.verdict})

	s := &session{pc: pc, attempt: attempt, since: pc.connectedAt, rotBO: rotationBackoff()}
	defer s.renew.Stop()
	defer s.answer.Stop()
	c.plan(s)
	for {
		select {
		case <-s.pc.dead:
			s.pc.shutdown(0, "")
			c.reportUnconfirmed(s.pc)
			return s.pc.ending(s.since)
		case <-c.ctx.Done():
			code, reason := c.closeParams()
			s.pc.shutdown(code, reason)
			c.reportUnconfirmed(s.pc)
			return Ending{Phase: PhaseConnected, Local: true, Err: ErrClosed}
		case <-s.pc.notes.wake:
			if end, over := c.hear(s); over {
				return end
			}
		case <-s.renew.C():
			// What the server said first: it may have moved the expiry.
			if end, over := c.hear(s); over {
				return end
			}
			if end, over := c.renewNow(s); over {
				return end
			}
		case <-s.answer.C():
			// The answer may be waiting among the protocol messages.
			if end, over := c.hear(s); over {
				return end
			}
			if s.pending != nil {
				return c.refreshFailed(s, errNoRefreshAnswer)
			}
		}
	}
}

// plan sets the renewal timer for the session's expiry, if it has one.
func (c *Client) plan(s *session) {
	s.renew.Stop()
	if c.o.Renewal == RenewNone || s.pc.expiry.IsZero() {
		return
	}
	s.renew.Reset(time.Until(renewAt(s.pc.obtained, s.pc.expiry, c.o.RefreshLead, rand.Float64)))
}

// hear acts on every protocol message the live connection has queued.
func (c *Client) hear(s *session) (end Ending, over bool) {
	for _, in := range s.pc.notes.take() {
		if end, over := c.heard(s, in); over {
			return end, true
		}
	}
	return Ending{}, false
}

// heard acts on one protocol message of the live connection; over means
// the connection is done and end says how.
func (c *Client) heard(s *session, in Inbound) (end Ending, over bool) {
	switch in.Kind {
	case InboundExpiring:
		if in.ExpiresIn > 0 {
			s.pc.obtained, s.pc.expiry = time.Now(), time.Now().Add(in.ExpiresIn)
			if s.pending == nil {
				c.plan(s)
			}
		}
	case InboundGoingAway:
		if nw := c.rotate(s.pc, s.attempt); nw != nil {
			c.moved(s, nw)
		}
	case InboundRefreshOK:
		if s.pending == nil {
			return Ending{}, false // an answer that came too late to count
		}
		exp := s.pending.refreshed(s.pc, in)
		s.pending = nil
		s.answer.Stop()
		s.pc.obtained, s.pc.expiry = time.Now(), exp
		c.emit(Event{Kind: EventRefreshed, Expiry: exp})
		c.plan(s)
	case InboundRefreshFailed:
		if s.pending == nil {
			return Ending{}, false
		}
		return c.refreshFailed(s, fmt.Errorf("wsauth: refresh refused: %w", &AuthError{Message: s.pc.red.String(in.Message)})), true
	}
	return Ending{}, false
}

// renewNow renews the session by the strategy, at its renewal time.
func (c *Client) renewNow(s *session) (end Ending, over bool) {
	switch c.strategy() {
	case RenewRotate:
		if nw := c.rotate(s.pc, s.attempt); nw != nil {
			c.moved(s, nw)
		} else if !s.pc.isDead() && c.ctx.Err() == nil {
			s.renew.Reset(rotationRetry(&s.rotBO, s.pc))
		}
	case RenewReconnect:
		c.retire(s.pc, "session expiring")
		e := s.pc.ending(s.since)
		e.renew = true
		return e, true
	case RenewRefresh:
		r, err := c.startRefresh(s.pc)
		switch {
		case s.pc.isDead() || c.ctx.Err() != nil:
			// The supervisor's loop sees the end.
		case err != nil:
			return c.refreshFailed(s, err), true
		default:
			s.pending = r
			s.answer.Reset(time.Until(r.deadline))
		}
	}
	return Ending{}, false
}

// moved makes nw, which a rotation put in place, the session's connection.
func (c *Client) moved(s *session, nw *physConn) {
	s.pc, s.pending = nw, nil
	s.answer.Stop()
	s.rotBO.Reset()
	c.plan(s)
}

// refreshFailed reports a refusal or a timeout and falls back to a
// reconnect with fresh credentials, before the session expires.
func (c *Client) refreshFailed(s *session, err error) Ending {
	c.emit(Event{Kind: EventRefreshFailed, Err: err})
	c.retire(s.pc, "refresh failed")
	e := s.pc.ending(s.since)
	e.Err, e.renew = err, true
	return e
}

// onConnect runs Options.OnConnect on a new connection before it goes
// live. Its context ends with the connection or the client.
func (c *Client) onConnect(pc *physConn, attempt int, why Reason, rotated bool) error {
	if c.o.OnConnect == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(pc.ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	var err error
	runCallback(func() { err = c.o.OnConnect(ctx, &Session{pc: pc, Attempt: attempt, Reason: why, Rotated: rotated}) })
	if err != nil {
		return fmt.Errorf("wsauth: OnConnect: %w", scrubError(pc.red, err))
	}
	return nil
}

// goLive makes pc the connection whose writer drains the send queue, and
// returns when, for the event that reports it.
func (c *Client) goLive(pc *physConn) time.Time {
	at := time.Now()
	pc.startWriter()
	c.mu.Lock()
	c.cur = pc
	c.setStateLocked(StateConnected)
	c.mu.Unlock()
	return at
}

func (c *Client) closeParams() (StatusCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode == 0 {
		return StatusNormalClosure, ""
	}
	return c.closeCode, c.closeReason
}

func (c *Client) gaveUp(why string, attempts int, last, verdict Ending) error {
	return &GaveUpError{Why: why, Attempts: attempts, Code: verdict.Code, Reason: verdict.Reason,
		HTTPStatus: verdict.HTTPStatus, Err: last.Err, Verdict: verdict.Err}
}

// localCause is the stop cause when the client was told to stop.
func (c *Client) localCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCause != nil {
		return c.closeCause
	}
	return ErrClosed
}

// finish runs once when the engine stops: it settles every pending send,
// lets Receive drain, and reports the stop.
func (c *Client) finish(stopErr error) {
	if stopErr == nil {
		stopErr = ErrClosed
	}
	c.cancel()
	at := time.Now()
	c.mu.Lock()
	c.err = stopErr
	c.setStateLocked(StateClosed)
	c.cur = nil
	c.mu.Unlock()
	c.queue.close(stopErr)
	var ev error = stopErr
	if stopErr == ErrClosed {
		ev = nil
	}
	c.emit(Event{Kind: EventStopped, Time: at, Err: ev})
	c.events.close()
	switch {
	case c.ownHC:
		c.hc.CloseIdleConnections()
	case c.onShared:
		shared.leave()
	}
	close(c.done)
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCallback runs one of the application's callbacks (OnConnect,
// OnEvent). It is the frame Close looks for on its caller's stack: Go has
// no goroutine identity, and a Close called from inside a callback must not
// wait for the goroutine it is running on.
//
//go:noinline
func runCallback(fn func()) {
	callbacksRunning.Add(1)
	defer callbacksRunning.Add(-1)
	fn()
}

// callbacksRunning counts the callbacks running now, in every client: when
// none is, no goroutine can be inside one and inCallback need not read
// the stack.
var callbacksRunning atomic.Int64

// callbackFrame is the name of runCallback as stack frames spell it.
var callbackFrame = runtime.FuncForPC(reflect.ValueOf(runCallback).Pointer()).Name()

// inCallback reports whether the calling goroutine is inside a callback
// the client is running, by finding runCallback on its stack (the way
// testing's Helper reads the caller's stack).
func inCallback() bool {
	if callbacksRunning.Load() == 0 {
		return false
	}
	var first [64]uintptr
	pcs := first[:]
	for {
		n := runtime.Callers(2, pcs)
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Function == callbackFrame {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
		pcs = make([]uintptr, 2*len(pcs))
	}
}

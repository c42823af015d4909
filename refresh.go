package wsauth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Renewal is how a client keeps its session alive past the expiry of its
// proof.
type Renewal int

// The renewal strategies.
const (
	// RenewRefresh, the default, sends the dialect's refresh message with a
	// fresh token ahead of expiry and waits for the answer. When the dialect
	// has no refresh message or there is no token source, it reconnects
	// shortly before expiry instead. A refused or unanswered refresh falls
	// back to a reconnect with fresh credentials, before expiry.
	RenewRefresh Renewal = iota
	// RenewRotate opens and authenticates a new connection ahead of expiry,
	// moves sends and receives to it, and closes the old one with 1000
	// (make-before-break): no gap, nothing lost or duplicated at the
	// switch. For servers without a refresh message.
	RenewRotate
	// RenewReconnect closes the connection with 1000 shortly before expiry
	// and reconnects with fresh credentials; sends wait in the queue
	// meanwhile.
	RenewReconnect
	// RenewNone does nothing ahead of expiry: the server's close at expiry
	// (1008) sends the client through re-authentication.
	RenewNone
)

func (r Renewal) String() string {
	switch r {
	case RenewRefresh:
		return "refresh"
	case RenewRotate:
		return "rotate"
	case RenewReconnect:
		return "reconnect"
	case RenewNone:
		return "none"
	}
	return fmt.Sprintf("Renewal(%d)", int(r))
}

// Refresh timing defaults: the lead is a fifth of the lifetime, at least
// minRefreshLead and at most half the lifetime; up to half the lead again
// is subtracted at random so that clients with the same lifetime spread.
const (
	refreshLeadFraction = 5
	minRefreshLead      = 2 * time.Second
)

// renewAt is when to start renewing a session that was obtained at from and
// expires at exp. rnd returns a number in [0, 1).
func renewAt(from, exp time.Time, lead time.Duration, rnd func() float64) time.Time {
	life := exp.Sub(from)
	if life <= 0 {
		return from
	}
	if lead <= 0 {
		lead = max(life/refreshLeadFraction, minRefreshLead)
	}
	lead = min(lead, life/2)
	jitter := time.Duration(rnd() * float64(lead/2))
	return exp.Add(-lead - jitter)
}

// errConnDead says the connection died while the supervisor was busy with
// it; its ending is read from the connection.
var errConnDead = errors.New("wsauth: connection died")

// supervise runs a connection from authentication to its end: it makes the
// connection live, renews the session, follows rotations, and returns the
// Ending of the last physical connection.
func (c *Client) supervise(pc *physConn, attempt int, why Reason) Ending {
	if err := c.onConnect(pc, attempt, why, false); err != nil {
		pc.shutdown(0, "")
		return Ending{Phase: PhaseConnected, Err: err}
	}
	at := c.goLive(pc)
	c.emit(Event{Kind: EventConnected, Time: at, Attempt: attempt, Expiry: pc.expiry, Subprotocol: pc.ws.Subprotocol(), Verdict: pc.verdict})
	since := pc.connectedAt

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	plan := func() {
		timer.Stop()
		if at, ok := c.renewalTime(pc); ok {
			timer.Reset(time.Until(at))
		}
	}
	plan()
	for {
		select {
		case <-pc.dead:
			pc.shutdown(0, "")
			return pc.ending(since)
		case <-c.ctx.Done():
			code, reason := c.closeParams()
			pc.shutdown(code, reason)
			return Ending{Phase: PhaseConnected, Local: true, Err: ErrClosed}
		case in := <-pc.control:
			switch in.Kind {
			case InboundExpiring:
				if in.ExpiresIn > 0 {
					pc.obtained, pc.expiry = time.Now(), time.Now().Add(in.ExpiresIn)
					plan()
				}
			case InboundGoingAway:
				if nw := c.rotateOrReport(pc, attempt); nw != nil {
					pc = nw
					plan()
				}
			}
		case <-timer.C:
			switch c.renewal() {
			case RenewRotate:
				if nw := c.rotateOrReport(pc, attempt); nw != nil {
					pc = nw
					plan()
				} else if !pc.isDead() && c.ctx.Err() == nil {
					// Try again a little later; the server's close at expiry
					// is the backstop.
					timer.Reset(max(c.bo.NextBackOff(), 100*time.Millisecond))
				}
			case RenewReconnect:
				c.retire(pc, "session expiring")
				e := pc.ending(since)
				e.renew = true
				return e
			default:
				exp, err := c.refresh(pc)
				switch {
				case err == nil:
					pc.obtained, pc.expiry = time.Now(), exp
					c.emit(Event{Kind: EventRefreshed, Expiry: exp})
					plan()
				case errors.Is(err, errConnDead) || c.ctx.Err() != nil:
					// The dead or ctx case ends the loop.
				default:
					c.emit(Event{Kind: EventRefreshFailed, Err: err})
					c.retire(pc, "refresh failed")
					e := pc.ending(since)
					e.Err, e.renew = err, true
					return e
				}
			}
		}
	}
}

// renewal resolves RenewRefresh to RenewReconnect when a refresh cannot be
// made.
func (c *Client) renewal() Renewal {
	r := c.o.Renewal
	if r == RenewRefresh && !c.canRefresh() {
		return RenewReconnect
	}
	return r
}

func (c *Client) canRefresh() bool {
	if c.tokens == nil {
		return false
	}
	_, err := c.dialect.RefreshMessage("probe")
	return !errors.Is(err, ErrRefreshUnsupported)
}

// renewalTime is when pc's session should be renewed, if ever.
func (c *Client) renewalTime(pc *physConn) (time.Time, bool) {
	if c.o.Renewal == RenewNone || pc.expiry.IsZero() {
		return time.Time{}, false
	}
	return renewAt(pc.obtained, pc.expiry, c.o.RefreshLead, rand.Float64), true
}

func (c *Client) closeParams() (StatusCode, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode == 0 {
		return StatusNormalClosure, ""
	}
	return c.closeCode, c.closeReason
}

// onConnect runs Options.OnConnect on a new connection before it goes
// live.
func (c *Client) onConnect(pc *physConn, attempt int, why Reason, rotated bool) error {
	if c.o.OnConnect == nil {
		return nil
	}
	if err := c.o.OnConnect(pc.ctx, &Session{pc: pc, Attempt: attempt, Reason: why, Rotated: rotated}); err != nil {
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
	c.connects++
	c.setStateLocked(StateConnected)
	c.mu.Unlock()
	return at
}

// refresh extends pc's session in place with the dialect's refresh message
// and returns the new expiry.
func (c *Client) refresh(pc *physConn) (time.Time, error) {
	if c.tokens == nil {
		return time.Time{}, errors.New("wsauth: no token source for refresh (set Options.TokenSource)")
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.o.RefreshTimeout)
	defer cancel()
	if !pc.expiry.IsZero() {
		// An answer after expiry is no use: the fallback must start before.
		slack := min(time.Second, pc.expiry.Sub(pc.obtained)/4)
		var cancel2 context.CancelFunc
		ctx, cancel2 = context.WithDeadline(ctx, pc.expiry.Add(-slack))
		defer cancel2()
	}
	tok, err := c.tokens.tokenAfter(ctx, pc.expiry)
	if err != nil {
		return time.Time{}, fmt.Errorf("wsauth: refresh: %w", scrubError(pc.red, err))
	}
	pc.red.Add(tok.AccessToken)
	msg, err := c.dialect.RefreshMessage(tok.AccessToken)
	if err != nil {
		return time.Time{}, fmt.Errorf("wsauth: refresh: %w", scrubError(pc.red, err))
	}
	// Drop answers to an earlier refresh that came too late to count.
	for len(pc.control) > 0 {
		<-pc.control
	}
	wctx, wcancel := context.WithTimeout(pc.ctx, c.o.WriteTimeout)
	err = pc.ws.Write(wctx, MessageText, msg)
	wcancel()
	if err != nil {
		pc.fail(err)
		return time.Time{}, errConnDead
	}
	for {
		select {
		case in := <-pc.control:
			switch in.Kind {
			case InboundRefreshOK:
				exp := tok.Expiry
				if in.ExpiresIn > 0 {
					exp = earliest(exp, time.Now().Add(in.ExpiresIn))
				}
				if exp.IsZero() {
					exp = time.Now().Add(pc.expiry.Sub(pc.obtained))
				}
				return exp, nil
			case InboundRefreshFailed:
				return time.Time{}, fmt.Errorf("wsauth: refresh refused: %w", &AuthError{Message: pc.red.String(in.Message)})
			case InboundExpiring:
				if in.ExpiresIn > 0 {
					pc.obtained, pc.expiry = time.Now(), time.Now().Add(in.ExpiresIn)
				}
			}
		case <-pc.dead:
			return time.Time{}, errConnDead
		case <-ctx.Done():
			if c.ctx.Err() != nil {
				return time.Time{}, c.ctx.Err()
			}
			return time.Time{}, errors.New("wsauth: refresh: no answer from the server in time")
		}
	}
}

// rotateOrReport rotates and reports a failure as an event; nil means the
// old connection stays.
func (c *Client) rotateOrReport(old *physConn, attempt int) *physConn {
	nw, err := c.rotate(old, attempt)
	if err != nil {
		if c.ctx.Err() == nil {
			c.emit(Event{Kind: EventRefreshFailed, Err: err})
		}
		return nil
	}
	return nw
}

// rotate replaces old with a new, authenticated connection without a gap:
// the new one is dialed and authenticated while the old one carries on;
// then the old writer finishes its frame, the new writer takes over the
// queue, a ping on the old connection marks the end of what the server
// sent there (pongs come in order with data), the old connection is closed
// with 1000, and only then are the new connection's messages delivered.
func (c *Client) rotate(old *physConn, attempt int) (*physConn, error) {
	nw, end := c.connect(c.ctx, ReasonReconnect, attempt, true)
	if nw == nil {
		return nil, end.Err
	}
	if err := c.onConnect(nw, attempt, ReasonReconnect, true); err != nil {
		// The old connection keeps the queue.
		nw.shutdown(0, "")
		return nil, err
	}
	old.stopWriter()
	at := c.goLive(nw)
	c.retire(old, "rotated")
	nw.openGate()
	c.emit(Event{Kind: EventRotated, Time: at, Attempt: attempt, Expiry: nw.expiry, Subprotocol: nw.ws.Subprotocol(), Verdict: nw.verdict})
	return nw, nil
}

// retire closes a connection the client is done with on purpose (a
// rotation, a reconnect ahead of expiry, a failed refresh) without losing
// what the server still had to say: it stops sends to it, then waits, up
// to DrainTimeout, for the pong to a ping, which comes after the server's
// answers to everything sent before it, and closes with 1000.
func (c *Client) retire(pc *physConn, reason string) {
	pc.stopWriter()
	dctx, cancel := context.WithTimeout(c.ctx, c.o.DrainTimeout)
	_ = pc.ws.Ping(dctx)
	cancel()
	pc.shutdown(StatusNormalClosure, reason)
}

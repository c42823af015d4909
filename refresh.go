package wsauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
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

// RenewalPolicy is how the client keeps a session alive past the expiry of
// its proof. Zero means the default; negative values are refused.
type RenewalPolicy struct {
	// Strategy picks how. Default RenewRefresh.
	Strategy Renewal
	// Lead is how long before expiry the renewal starts, before jitter.
	// Default: a fifth of the session's lifetime, at least 2s and at most
	// half the lifetime.
	Lead time.Duration
	// Timeout bounds the wait for the refresh answer; it is cut shorter
	// when the session would expire first. Default 10s.
	Timeout time.Duration
	// Drain bounds how long a connection the client closes on purpose (a
	// rotation, a reconnect ahead of expiry) waits for the server's last
	// messages on it. Default 5s.
	Drain time.Duration
	// Tokens supplies the tokens of refresh messages. Default: the
	// provider's token source when it has one (see TokenSourcer).
	Tokens oauth2.TokenSource
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

// strategy resolves RenewRefresh to RenewReconnect when no refresh can be
// made: the dialect has no refresh message, or there is no token source.
func (c *Client) strategy() Renewal {
	r := c.o.Renewal
	if _, ok := c.dialect.(Refresher); r == RenewRefresh && (!ok || c.tokens == nil) {
		return RenewReconnect
	}
	return r
}

// refreshing is a refresh the supervisor is waiting on: the token it
// carries, and until when an answer counts.
type refreshing struct {
	tok      *oauth2.Token
	deadline time.Time
}

// startRefresh sends the dialect's refresh message on pc with a token that
// outlives the session; the answer comes back to the supervisor as a
// protocol message. An error means no refresh is in flight.
func (c *Client) startRefresh(pc *physConn) (*refreshing, error) {
	deadline := time.Now().Add(c.o.RefreshTimeout)
	if !pc.expiry.IsZero() {
		// An answer after expiry is no use: the fallback must start before.
		slack := min(time.Second, pc.expiry.Sub(pc.obtained)/4)
		deadline = earliest(deadline, pc.expiry.Add(-slack))
	}
	ctx, cancel := context.WithDeadline(pc.ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	tok, err := c.tokens.tokenAfter(ctx, pc.expiry)
	if err != nil {
		return nil, fmt.Errorf("wsauth: refresh: %w", scrubError(pc.red, err))
	}
	pc.red.Add(tok.AccessToken)
	msg, err := c.dialect.(Refresher).RefreshMessage(tok.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("wsauth: refresh: %w", scrubError(pc.red, err))
	}
	if err := pc.write(ctx, MessageText, msg); err != nil {
		return nil, err
	}
	return &refreshing{tok: tok, deadline: deadline}, nil
}

// refreshed is the session's new expiry after the server accepted r.
func (r *refreshing) refreshed(pc *physConn, in Inbound) time.Time {
	exp := r.tok.Expiry
	if in.ExpiresIn > 0 {
		exp = earliest(exp, time.Now().Add(in.ExpiresIn))
	}
	if exp.IsZero() {
		// Neither said: the same lifetime again.
		exp = time.Now().Add(pc.expiry.Sub(pc.obtained))
	}
	return exp
}

// errNoRefreshAnswer is the cause of a refresh the server did not answer
// in time.
var errNoRefreshAnswer = errors.New("wsauth: refresh: no answer from the server in time")

// rotation pacing: a failed rotation is tried again after a delay of its
// own, jittered and growing, never later than halfway to the expiry (the
// server's close at expiry is the backstop).
const (
	rotationRetryInitial = time.Second
	rotationRetryFloor   = 100 * time.Millisecond
)

func rotationBackoff() FullJitter {
	return FullJitter{Initial: rotationRetryInitial, Multiplier: 2, Max: defaultBackoffMax}
}

// rotationRetry is when to try a failed rotation of pc again.
func rotationRetry(bo *FullJitter, pc *physConn) time.Duration {
	d := bo.NextBackOff()
	if !pc.expiry.IsZero() {
		d = min(d, time.Until(pc.expiry)/2)
	}
	return max(d, rotationRetryFloor)
}

// rotate replaces old with a new, authenticated connection without a gap:
// the new one is dialed and authenticated while the old one carries on;
// then the old writer finishes its frame, the new writer takes over the
// queue, the old connection is retired (its last messages drained), and
// only then are the new connection's messages delivered. A failure is
// reported as an event; nil means the old connection stays.
func (c *Client) rotate(old *physConn, attempt int) *physConn {
	nw, end := c.connectAside(c.ctx, ReasonReconnect, attempt, true)
	if nw == nil {
		if c.ctx.Err() == nil {
			c.emit(Event{Kind: EventRefreshFailed, Err: end.Err})
		}
		return nil
	}
	if err := c.onConnect(nw, attempt, ReasonReconnect, true); err != nil {
		// The old connection keeps the queue.
		nw.shutdown(0, "")
		if c.ctx.Err() == nil {
			c.emit(Event{Kind: EventRefreshFailed, Err: err})
		}
		return nil
	}
	old.stopWriter()
	at := c.goLive(nw)
	c.retire(old, "rotated")
	nw.openGate()
	c.emit(Event{Kind: EventRotated, Time: at, Attempt: attempt, Expiry: nw.expiry, Subprotocol: nw.ws.Subprotocol(), Verdict: nw.verdict})
	return nw
}

// retire closes a connection the client is done with on purpose (a
// rotation, a reconnect ahead of expiry, a failed refresh) without losing
// what the server still had to say: it stops sends to it, then waits, up
// to RenewalPolicy.Drain, for the pong to a ping, which comes after the
// server's answers to everything sent before it, and closes with 1000.
func (c *Client) retire(pc *physConn, reason string) {
	pc.stopWriter()
	dctx, cancel := context.WithTimeout(c.ctx, c.o.DrainTimeout)
	if pc.ws.Ping(dctx) == nil {
		pc.confirmAll()
	}
	cancel()
	pc.shutdown(StatusNormalClosure, reason)
	c.reportUnconfirmed(pc)
}

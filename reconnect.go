package wsauth

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Action is what the client does after a connection, or an attempt at one,
// ends.
type Action int

// The actions of the reconnect policy.
const (
	// ActionDefault, returned by an override, defers to the next rule: the
	// dialect's, then DefaultClassify.
	ActionDefault Action = iota
	// ActionRetry reconnects after the backoff delay, reusing credentials
	// that are still valid.
	ActionRetry
	// ActionReauth invalidates the credentials (token cache, ticket,
	// cookie), gets fresh ones and reconnects: at once the first time, then
	// with backoff. Consecutive rejections count toward
	// Options.MaxAuthFailures.
	ActionReauth
	// ActionStop ends the client; its stop cause is the ending's error.
	ActionStop
)

func (a Action) String() string {
	switch a {
	case ActionDefault:
		return "default"
	case ActionRetry:
		return "retry"
	case ActionReauth:
		return "reauth"
	case ActionStop:
		return "stop"
	}
	return "Action(?)"
}

// Phase says how far a connection attempt got.
type Phase int

// The phases of a connection.
const (
	// PhaseCredentials: the provider was getting credentials (token source,
	// ticket endpoint, login).
	PhaseCredentials Phase = iota + 1
	// PhaseHandshake: the HTTP upgrade.
	PhaseHandshake
	// PhaseAuth: the in-band exchange after the upgrade.
	PhaseAuth
	// PhaseConnected: the connection was authenticated and in use.
	PhaseConnected
)

func (p Phase) String() string {
	switch p {
	case PhaseCredentials:
		return "credentials"
	case PhaseHandshake:
		return "handshake"
	case PhaseAuth:
		return "auth"
	case PhaseConnected:
		return "connected"
	}
	return "Phase(?)"
}

// Ending describes how a physical connection, or an attempt at one, ended.
// The reconnect policy classifies it.
type Ending struct {
	// Err is the cause, with credentials redacted.
	Err error
	// Phase is how far the attempt got.
	Phase Phase
	// Code and Reason are the close frame the server sent, zero and empty
	// when it sent none.
	Code   StatusCode
	Reason string
	// HTTPStatus is the status of a refused handshake or provider call
	// (ticket, login, token endpoint), zero when there was none.
	HTTPStatus int
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// Local is true when the client itself ended it: Close, or the context
	// given to Dial ending before the first connection.
	Local bool
	// Uptime is how long the connection was authenticated, zero if it never
	// was.
	Uptime time.Duration

	// renew marks a planned break (refresh fallback, reconnect at expiry):
	// the next attempt starts at once.
	renew bool
	// atExpiry marks an ending at or after the session's known expiry.
	atExpiry bool
}

// minLivedSession is how long a session that the server ended at its known
// expiry must have lasted for the next attempt to start at once even in a
// streak: shorter sessions meet the backoff like any quick ending.
const minLivedSession = time.Second

// DefaultClassify is the reconnect policy's table. Options.Classify can
// override any row; returning ActionDefault from the override falls back to
// the dialect and then to this table.
//
//	ending                                           action
//	Close, cancelled context                         stop
//	close 1008, or a code in Options.ReauthCodes     reauth
//	HTTP 401/403 (handshake, ticket, login, token)   reauth
//	HTTP 429/503, Retry-After honoured               retry
//	other HTTP statuses                              retry
//	close 1000 sent by the server                    retry
//	close 1001, 1006, 1011-1014, 3000-4999           retry
//	network error, dial or auth timeout, no pong     retry
//	close 1002, 1003, 1007, 1009, 1010               retry; stop after Options.MaxProtocolErrors in a row
//	credentials refused MaxAuthFailures times in a row   stop (GaveUpError)
//	credentials sent over an insecure transport      stop
func DefaultClassify(e Ending) Action {
	switch {
	case e.Local:
		return ActionStop
	case errors.Is(e.Err, ErrInsecureTransport), errors.Is(e.Err, ErrRedirect):
		return ActionStop
	case e.Phase == PhaseHandshake && isRedirect(e.HTTPStatus):
		return ActionStop
	case e.Code == StatusPolicyViolation:
		return ActionReauth
	case e.Phase == PhaseAuth && e.Code == StatusNormalClosure:
		// A server that ends the connection before its verdict refused it
		// (gqlgen closes 1000 when its init function says no).
		return ActionReauth
	case e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden:
		return ActionReauth
	case errors.Is(e.Err, ErrCredentialRejected), errors.Is(e.Err, ErrNoCredential):
		return ActionReauth
	}
	var ae *AuthError
	if errors.As(e.Err, &ae) {
		return ActionReauth
	}
	return ActionRetry
}

// isProtocolError reports the close codes that say one side broke the
// protocol; a client that keeps provoking them stops.
func isProtocolError(code StatusCode) bool {
	switch code {
	case 1002, 1003, 1007, 1009, 1010:
		return true
	}
	return false
}

// FullJitter is the default backoff policy: the n-th delay is drawn
// uniformly from [0, min(Max, Initial*Multiplier^n)] ("full jitter"), which
// spreads a fleet reconnecting after an outage far better than the ±50%
// randomisation of backoff.ExponentialBackOff. It implements
// backoff.BackOff; one value serves one client.
type FullJitter struct {
	// Initial is the first ceiling. Default 500ms.
	Initial time.Duration
	// Multiplier grows the ceiling after each attempt. Default 2.
	Multiplier float64
	// Max caps the ceiling. Default 30s.
	Max time.Duration
	// MaxAttempts stops after this many delays in a row without a Reset;
	// 0 means never.
	MaxAttempts int

	mu       sync.Mutex
	attempts int
	rnd      func() float64
}

// Default backoff values.
const (
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffMax        = 30 * time.Second
)

// NewFullJitter returns a FullJitter with the default values.
func NewFullJitter() *FullJitter {
	return &FullJitter{Initial: DefaultBackoffInitial, Multiplier: DefaultBackoffMultiplier, Max: DefaultBackoffMax}
}

// NextBackOff implements backoff.BackOff.
func (b *FullJitter) NextBackOff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.MaxAttempts > 0 && b.attempts >= b.MaxAttempts {
		return backoff.Stop
	}
	ceil := b.ceiling(b.attempts)
	b.attempts++
	r := rand.Float64
	if b.rnd != nil {
		r = b.rnd
	}
	return time.Duration(r() * float64(ceil))
}

// ceiling is min(Max, Initial*Multiplier^n).
func (b *FullJitter) ceiling(n int) time.Duration {
	initial, mult, max := b.Initial, b.Multiplier, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if mult < 1 {
		mult = DefaultBackoffMultiplier
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	c := float64(initial) * math.Pow(mult, float64(n))
	if c > float64(max) || math.IsInf(c, 0) || math.IsNaN(c) {
		return max
	}
	return time.Duration(c)
}

// Reset implements backoff.BackOff.
func (b *FullJitter) Reset() {
	b.mu.Lock()
	b.attempts = 0
	b.mu.Unlock()
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

// run is the one goroutine that decides to connect and reconnect.
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
		pc, end := c.connect(c.ctx, why, attempt, false)
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
		immediate := next.immediate
		if end.renew {
			action = ActionReauth
		}

		var delay time.Duration
		if !immediate {
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

// streak is the run of endings since the last stable connection, which
// the limits count.
type streak struct {
	attempts     int // connection attempts
	authFailures int // refusals in a row
	protoErrors  int // protocol-error closes in a row
	ended        int // sessions the server ended
	certFailures int // unverifiable certificates in a row
}

// maxCertificateFailures is how many unverifiable certificates in a row
// stop the client: a configuration error, given a little room for a
// network that briefly intercepted TLS.
const maxCertificateFailures = 3

// step is what the policy makes of one ending: why the next credentials
// are asked for and whether the attempt starts at once, or which limit
// stops the client.
type step struct {
	why       Reason
	immediate bool
	stop      string // GaveUpError.Why; empty to go on
}

// next counts end, classified as action, into the streak and decides the
// next step. A refusal during authentication marks the credential
// rejected and counts toward MaxAuthFailures; a session the server ended
// after accepting it (an administrator's 1008, a session reset) asks for
// fresh credentials without holding the last ones against the client,
// at once the first time in a streak or when it lived to its known expiry,
// and with backoff after.
func (s *streak) next(end Ending, action Action, o *Options) step {
	switch {
	case end.renew:
		// A planned break ahead of expiry: fresh credentials, at once.
		return step{why: ReasonSessionEnded, immediate: true}
	case action == ActionStop:
		return step{stop: "policy"}
	case action == ActionReauth && end.Phase == PhaseConnected:
		s.authFailures = 0
		s.ended++
		lived := end.atExpiry && end.Uptime >= minLivedSession
		return step{why: ReasonSessionEnded, immediate: s.ended == 1 || lived}
	case action == ActionReauth:
		s.authFailures++
		if s.authFailures >= o.MaxAuthFailures {
			return step{stop: "authentication"}
		}
		return step{why: ReasonRejected, immediate: s.authFailures == 1}
	}
	if errors.Is(end.Err, ErrCertificate) {
		s.certFailures++
		if s.certFailures >= maxCertificateFailures {
			return step{stop: "certificate"}
		}
	} else {
		s.certFailures = 0
	}
	if isProtocolError(end.Code) || errors.Is(end.Err, ErrProtocol) {
		s.protoErrors++
		if s.protoErrors >= o.MaxProtocolErrors {
			return step{stop: "protocol"}
		}
	} else {
		s.protoErrors = 0
	}
	return step{why: ReasonReconnect}
}

// isAuthError reports an in-band refusal (a dialect's auth_invalid, an
// error reply): a verdict of the server as much as a close code is.
func isAuthError(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}

// classify applies the override, the dialect, the extra reauth codes and
// the default table, in that order. The client's own Close always stops.
func (c *Client) classify(e Ending) Action {
	if e.Local {
		return ActionStop
	}
	if c.o.Classify != nil {
		if a := c.o.Classify(e); a != ActionDefault {
			return a
		}
	}
	if e.Code != 0 {
		if a := c.dialect.ClassifyClose(e.Code, e.Reason); a != ActionDefault {
			return a
		}
		for _, rc := range c.o.ReauthCodes {
			if rc == e.Code {
				return ActionReauth
			}
		}
	}
	return DefaultClassify(e)
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
	if c.ownHC {
		c.hc.CloseIdleConnections()
	}
	close(c.done)
}

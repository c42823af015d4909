package wsauth

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// minLivedSession is how long a session that the server ended at its known
// expiry must have lasted for the next attempt to start at once even in a
// streak: shorter sessions meet the backoff like any quick ending.
const minLivedSession = 500 * time.Millisecond

// ReconnectPolicy is how the client reconnects: the pacing of attempts,
// the budgets that stop it, and how an ending is classified. Zero means the
// default; negative values are refused.
type ReconnectPolicy struct {
	// Backoff paces reconnects. Default NewFullJitter() (500ms initial,
	// ×2, 30s cap, no attempt limit); backoff.ExponentialBackOff works too.
	// One value serves one client.
	Backoff backoff.BackOff
	// StableAfter is how long a connection must stay up for the backoff and
	// the budgets to reset. Default 10s.
	StableAfter time.Duration
	// InitialJitter delays the first attempt by a random time up to this,
	// so that a fleet started together does not dial together. Default 0.
	InitialJitter time.Duration
	// MaxRetryAfter caps the server's Retry-After. Default 5m.
	MaxRetryAfter time.Duration
	// MaxAuthFailures is how many refusals stop the client with a
	// GaveUpError (Why "authentication"). Refusals count until a
	// connection stays up for StableAfter or the server ends a session it
	// had accepted (a reauth after the verdict); a connection that
	// authenticated and was lost sooner for another reason (a network
	// error, a restart) does not reset the count, nor do the retries
	// between refusals. Default 5.
	MaxAuthFailures int
	// MaxProtocolErrors is how many protocol errors in a row (closes 1002,
	// 1003, 1007, 1009, 1010, or ErrProtocol) stop the client. Default 5.
	MaxProtocolErrors int
	// Classify overrides DefaultClassify: it is given every ending, and
	// returning ActionDefault falls back to the table. Default none.
	Classify func(Ending) Action
}

// DefaultClassify is the reconnect policy's table, the one place an ending
// becomes an action; ReconnectPolicy.Classify may override any row and
// fall back to this table for the rest:
//
//	ending                                                action
//	Close, cancelled context                              stop
//	a credential over an insecure transport               stop
//	a handshake redirect, a REST redirect to another origin   stop
//	a server echoing the bearer subprotocol               stop
//	a close code the dialect gives a meaning (CloseMeaning)   that meaning
//	close 1008                                            reauth
//	close 1000 before the verdict                         reauth
//	HTTP 401/403 (handshake, ticket, login, token)        reauth
//	nothing to offer, an in-band refusal (AuthError)      reauth
//	anything else: HTTP 429/503 (Retry-After honoured), other statuses,
//	close 1000 after the verdict, 1001, 1006, 1011-1014, 3000-4999,
//	network errors, timeouts, no pong                     retry
//
// What the policy then does with the action (whether a reauth counts as a
// refusal, the limits on refusals and protocol errors, an unverifiable
// certificate) is the second half of the table, in the package
// documentation.
func DefaultClassify(e Ending) Action {
	switch {
	case e.Local:
		return ActionStop
	case errors.Is(e.Err, ErrInsecureTransport), errors.Is(e.Err, ErrRedirect), errors.Is(e.Err, ErrEchoedCredential):
		return ActionStop
	case e.Phase == PhaseHandshake && isRedirect(e.HTTPStatus):
		return ActionStop
	case e.CloseMeaning != ActionDefault:
		return e.CloseMeaning
	case e.Code == StatusPolicyViolation:
		return ActionReauth
	case e.Phase == PhaseAuth && e.Code == StatusNormalClosure:
		// A server that ends the connection before its verdict refused it
		// (gqlgen closes 1000 when its init function says no).
		return ActionReauth
	case e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden:
		return ActionReauth
	case errors.Is(e.Err, ErrCredentialRejected), errors.Is(e.Err, ErrNoCredential), isAuthError(e.Err):
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
	defaultBackoffInitial    = 500 * time.Millisecond
	defaultBackoffMultiplier = 2.0
	defaultBackoffMax        = 30 * time.Second
)

// NewFullJitter returns a FullJitter with the default values.
func NewFullJitter() *FullJitter {
	return &FullJitter{Initial: defaultBackoffInitial, Multiplier: defaultBackoffMultiplier, Max: defaultBackoffMax}
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
		initial = defaultBackoffInitial
	}
	if mult < 1 {
		mult = defaultBackoffMultiplier
	}
	if max <= 0 {
		max = defaultBackoffMax
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
func (s *streak) next(end Ending, action Action, o *config) step {
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

// classify applies the override, then the table. The client's own Close
// always stops.
func (c *Client) classify(e Ending) Action {
	if e.Local {
		return ActionStop
	}
	if c.o.Classify != nil {
		if a := c.o.Classify(e); a != ActionDefault {
			return a
		}
	}
	return DefaultClassify(e)
}

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

// sessionEnded tells a server ending a session that had lasted (or reached
// its known expiry) from a rejection of fresh credentials: only the latter
// counts toward MaxAuthFailures and forbids offering the credential again.
func (e Ending) sessionEnded(stableAfter time.Duration) bool {
	return e.Phase == PhaseConnected && (e.Uptime >= stableAfter || e.atExpiry)
}

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
	case errors.Is(e.Err, ErrInsecureTransport):
		return ActionStop
	case e.Code == StatusPolicyViolation:
		return ActionReauth
	case e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden:
		return ActionReauth
	case errors.Is(e.Err, ErrCredentialRejected):
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

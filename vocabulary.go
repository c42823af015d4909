package wsauth

import (
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// The words the client, its providers, its dialects and its reconnect
// policy share: message types and close codes, why credentials are asked
// for, what decided a verdict, how far an attempt got, and how a
// connection ended.

// MessageType is the type of a WebSocket data message.
type MessageType = websocket.MessageType

// Message types.
const (
	MessageText   = websocket.MessageText
	MessageBinary = websocket.MessageBinary
)

// StatusCode is a WebSocket close code.
type StatusCode = websocket.StatusCode

// Close codes the client treats specially.
const (
	StatusNormalClosure   = websocket.StatusNormalClosure
	StatusGoingAway       = websocket.StatusGoingAway
	StatusPolicyViolation = websocket.StatusPolicyViolation
)

// Reason tells a provider why it is asked for credentials.
type Reason int

// Why credentials are asked for.
const (
	// ReasonInitial is the client's first connection attempt.
	ReasonInitial Reason = iota + 1
	// ReasonReconnect follows an ending that says nothing against the
	// credentials (network loss, server restart): cached credentials that
	// are still valid may be used again.
	ReasonReconnect
	// ReasonSessionEnded follows the server ending a session it had
	// accepted (a close with 1008 or a re-authentication code after the
	// verdict, or at its expiry), or the client renewing one ahead of
	// expiry: fresh credentials are preferred (caches are invalidated, a
	// login runs again), but a source with nothing fresher may offer its
	// current credential again: the server never refused it.
	ReasonSessionEnded
	// ReasonRejected follows the server refusing the credentials during
	// authentication (handshake or REST 401/403, the dialect's refusal, a
	// close before or inside the verdict): the refused credential must
	// never be offered again.
	ReasonRejected
)

func (r Reason) String() string {
	switch r {
	case ReasonInitial:
		return "initial"
	case ReasonReconnect:
		return "reconnect"
	case ReasonSessionEnded:
		return "session_ended"
	case ReasonRejected:
		return "rejected"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Verdict says what told the client that a connection was authenticated.
type Verdict int

// The verdicts, from the strongest.
const (
	// VerdictPending, the zero value, is what a dialect's Open returns when
	// its protocol has no confirmation of its own for this connection. The
	// client then decides: a credential refused before the upgrade (header,
	// subprotocol) was accepted by the 101 itself; for one the server may
	// still refuse after the upgrade (ticket, query, cookie, an in-band
	// token) it waits for the first of an explicit confirmation the dialect
	// recognises (InboundAuthOK), the server's first application message, or
	// Timeouts.Verdict without a close.
	VerdictPending Verdict = iota
	// VerdictExplicit: the server confirmed the authentication (wsauth's
	// auth_ok, Home Assistant's auth_ok, graphql-ws connection_ack, the
	// reply to Centrifugo's connect, Slack's hello).
	VerdictExplicit
	// VerdictHandshake: the 101 was the verdict. Servers refuse header and
	// subprotocol credentials with 401 or 403 before the upgrade, and
	// PlainDialect takes every upgrade as accepted.
	VerdictHandshake
	// VerdictFirstMessage: the server's first application message came
	// before any close. The message is delivered to the application.
	VerdictFirstMessage
	// VerdictWindow: Timeouts.Verdict passed after the upgrade without a
	// close. A server that refuses later than that is caught as a late
	// refusal (see Timeouts.Verdict).
	VerdictWindow
)

func (v Verdict) String() string {
	switch v {
	case VerdictPending:
		return "pending"
	case VerdictExplicit:
		return "explicit"
	case VerdictHandshake:
		return "handshake"
	case VerdictFirstMessage:
		return "first-message"
	case VerdictWindow:
		return "window"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Action is what the client does after a connection, or an attempt at one,
// ends.
type Action int

// The actions of the reconnect policy.
const (
	// ActionDefault says nothing of its own. Returned by
	// ReconnectPolicy.Classify it leaves the ending to DefaultClassify,
	// which follows the dialect's meaning of the close code (CloseMeaning)
	// after its stop rows; returned by a CloseClassifier it says the
	// protocol gives the code no meaning.
	ActionDefault Action = iota
	// ActionRetry reconnects after the backoff delay, reusing credentials
	// that are still valid (ReasonReconnect).
	ActionRetry
	// ActionReauth reconnects with fresh credentials. An ending during
	// authentication is a refusal: the next attempt gets ReasonRejected
	// (the provider never offers the refused credential again) and the
	// refusal counts toward ReconnectPolicy.MaxAuthFailures. An ending of
	// an established session is not: the next attempt gets
	// ReasonSessionEnded. The first attempt after a refusal, and the first
	// after an ended session, start at once; the package documentation
	// says when later ones wait for the backoff delay.
	ActionReauth
	// ActionStop ends the client; its stop cause is a GaveUpError with Why
	// "policy" that wraps the ending's error.
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
	// CloseMeaning is what the dialect's protocol says Code means (see
	// CloseClassifier), ActionDefault when it says nothing.
	CloseMeaning Action
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

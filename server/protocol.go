package server

import (
	"encoding/json"
	"time"

	"github.com/coder/websocket"
)

// Close reasons of docs/protocol.md. They are fixed strings so that clients and tests can
// compare them, and so that no reason ever carries a credential.
const (
	// ReasonUnauthorized (1008): the credential was not accepted.
	ReasonUnauthorized = "Unauthorized"
	// ReasonInvalidTicket (1008): the ticket was unknown, used or expired.
	ReasonInvalidTicket = "Invalid or expired ticket"
	// ReasonAuthTimeout (1008): no auth message within Config.AuthTimeout.
	ReasonAuthTimeout = "Auth timeout"
	// ReasonExpectedAuth (1008): the first message was not an auth message.
	ReasonExpectedAuth = "Expected auth message"
	// ReasonSessionExpired (1008): the session reached its expiry without a refresh.
	ReasonSessionExpired = "Session expired"
	// ReasonPrincipalMismatch (1008): a refresh carried another principal's token.
	ReasonPrincipalMismatch = "Principal mismatch"
	// ReasonRevoked (1008): the principal was revoked while connected.
	ReasonRevoked = "Revoked"
	// ReasonLoggedOut (1008): the cookie session that authenticated the connection was ended
	// by the logout endpoint.
	ReasonLoggedOut = "Logged out"
	// ReasonShuttingDown (1001): Server.Close.
	ReasonShuttingDown = "Server shutting down"
	// ReasonNoCredential (1008): the handshake's query carried a parameter named like a
	// credential, but none the server accepts (an unknown name, or a disabled pattern).
	ReasonNoCredential = "No credential"
	// ReasonTooManyConnections (1013, Try Again Later): the principal already holds
	// Config.MaxConnsPerPrincipal connections.
	ReasonTooManyConnections = "Too many connections"
	// ReasonPingTimeout (1001): the peer did not answer a ping within Config.PongTimeout
	// while the server was reading.
	ReasonPingTimeout = "Ping timeout"
)

// Message types of the default dialect.
const (
	typeAuth          = "auth"
	typeAuthOK        = "auth_ok"
	typeRefresh       = "refresh"
	typeRefreshOK     = "refresh_ok"
	typeRefreshFailed = "refresh_failed"
	typeExpiring      = "expiring"
	typeGoingAway     = "going_away"
)

// serverMessage is every message the server sends on its own behalf. ExpiresIn is a pointer
// so that a connection without expiry omits it rather than claiming zero seconds.
type serverMessage struct {
	Type      string   `json:"type"`
	ExpiresIn *float64 `json:"expires_in,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// clientMessage is the part of a client message the server looks at. Token is kept raw so
// that a message whose type is ours but whose token is not a string is still recognized.
type clientMessage struct {
	Type  string          `json:"type"`
	Token json.RawMessage `json:"token"`
}

// parseClientMessage reports the type of a text message and its token, if it is a JSON
// object with a "type". ok is false for anything else: such messages belong to the
// application.
func parseClientMessage(typ websocket.MessageType, data []byte) (msgType, token string, ok bool) {
	if typ != websocket.MessageText {
		return "", "", false
	}
	var m clientMessage
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		return "", "", false
	}
	if len(m.Token) > 0 {
		// A token that is not a JSON string stays empty, which every verifier refuses.
		_ = json.Unmarshal(m.Token, &token)
	}
	return m.Type, token, true
}

// expiresIn renders the time left until exp for a message; nil when exp is zero (no expiry).
func expiresIn(exp, now time.Time) *float64 {
	if exp.IsZero() {
		return nil
	}
	v := max(0, seconds(exp.Sub(now)))
	return &v
}

// verdictHeader, on the 101, announces that the server ends every
// authentication with an explicit verdict: auth_ok, or a close.
const (
	verdictHeader = "Wsauth-Verdict"
	verdictAuthOK = "auth_ok"
)

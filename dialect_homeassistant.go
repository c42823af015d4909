package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// HomeAssistant speaks the authentication phase of the Home Assistant
// WebSocket API (https://developers.home-assistant.io/docs/api/websocket),
// served at /api/websocket:
//
//	server  {"type":"auth_required","ha_version":"2026.4.0"}
//	client  {"type":"auth","access_token":"…"}
//	server  {"type":"auth_ok","ha_version":"2026.4.0"}
//	    or  {"type":"auth_invalid","message":"Invalid access token or password"}, then closes
//
// The access token goes in the first message, so use it with
// FirstMessageAuth (a long-lived access token from the user's profile, or
// the access token of an OAuth refresh flow). auth_invalid becomes an
// *AuthError, which the client treats as a rejection: the token is never
// offered again and a fresh one is fetched, up to Options.MaxAuthFailures
// times (Home Assistant bans an IP after repeated failed logins, so the
// limit matters). After auth_ok every message, including the "pong"
// answers to the application's own {"id":N,"type":"ping"} commands,
// belongs to the application.
//
// The protocol has no refresh message, and Home Assistant does not end an
// authenticated connection when its access token expires: with short-lived
// tokens set Options.Renewal to RenewNone, or the client reconnects before
// every token expiry. Out of scope: the legacy api_password login, the
// supported_features/coalesce_messages negotiation, and message ids (the
// application numbers its commands).
type HomeAssistant struct{}

// Name implements Dialect.
func (HomeAssistant) Name() string { return "homeassistant" }

// Subprotocols implements Dialect: Home Assistant uses none.
func (HomeAssistant) Subprotocols() []string { return nil }

type haMessage struct {
	Type        string `json:"type"`
	AccessToken string `json:"access_token,omitempty"`
	Message     string `json:"message,omitempty"`
}

// Open implements Dialect: it waits for auth_required, answers with the
// access token and waits for the verdict.
func (HomeAssistant) Open(ctx context.Context, conn Conn, token string) (Opened, error) {
	first, err := readHA(ctx, conn)
	if err != nil {
		return Opened{}, err
	}
	if first.Type != "auth_required" {
		return Opened{}, fmt.Errorf("wsauth: homeassistant: expected auth_required as the server's first message, got %q", first.Type)
	}
	if token == "" {
		// Home Assistant accepts no other proof; counted as a refusal so
		// that a misconfigured client stops after MaxAuthFailures.
		return Opened{}, &AuthError{Message: "the homeassistant dialect needs an access token in band: use FirstMessageAuth"}
	}
	msg, err := json.Marshal(haMessage{Type: "auth", AccessToken: token})
	if err != nil {
		return Opened{}, err
	}
	if err := conn.Write(ctx, MessageText, msg); err != nil {
		return Opened{}, err
	}
	verdict, err := readHA(ctx, conn)
	if err != nil {
		return Opened{}, err
	}
	switch verdict.Type {
	case "auth_ok":
		return Opened{Verdict: VerdictExplicit}, nil
	case "auth_invalid":
		return Opened{}, &AuthError{Message: verdict.Message}
	}
	return Opened{}, fmt.Errorf("wsauth: homeassistant: expected auth_ok or auth_invalid, got %q", verdict.Type)
}

func readHA(ctx context.Context, conn Conn) (haMessage, error) {
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return haMessage{}, err
	}
	var m haMessage
	if typ != MessageText || json.Unmarshal(data, &m) != nil || m.Type == "" {
		return haMessage{}, errors.New("wsauth: homeassistant: the server sent something other than a JSON message with a type")
	}
	return m, nil
}

// RefreshMessage implements Dialect: Home Assistant has no refresh.
func (HomeAssistant) RefreshMessage(string) ([]byte, error) { return nil, ErrRefreshUnsupported }

// Inspect implements Dialect: after authentication everything is the
// application's, except a repeated auth_ok or auth_required.
func (HomeAssistant) Inspect(typ MessageType, data []byte) Inbound {
	if typ == MessageText && len(data) <= maxControlSize &&
		mentionsAny(data, [][]byte{[]byte(`"auth_ok"`), []byte(`"auth_required"`)}) {
		var m haMessage
		if json.Unmarshal(data, &m) == nil && (m.Type == "auth_ok" || m.Type == "auth_required") {
			return Inbound{Kind: InboundIgnore}
		}
	}
	return Inbound{Kind: InboundData}
}

// ClassifyClose implements Dialect: Home Assistant documents no close
// codes of its own (a refused login is auth_invalid, not a close code), so
// the client's table applies.
func (HomeAssistant) ClassifyClose(StatusCode, string) Action { return ActionDefault }

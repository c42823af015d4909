// Package homeassistant is the wsauth dialect of the Home Assistant
// WebSocket API (https://developers.home-assistant.io/docs/api/websocket),
// served at /api/websocket:
//
//	server  {"type":"auth_required","ha_version":"2026.4.0"}
//	client  {"type":"auth","access_token":"…"}
//	server  {"type":"auth_ok","ha_version":"2026.4.0"}
//	    or  {"type":"auth_invalid","message":"Invalid access token or password"}, then closes
//
// The access token goes in the first message, so use it with
// wsauth.FirstMessageAuth (a long-lived access token from the user's
// profile, or the access token of an OAuth refresh flow):
//
//	c, err := wsauth.Dial(ctx, "wss://ha.example.com/api/websocket", &wsauth.Options{
//		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(longLivedToken)},
//		Dialect: homeassistant.Dialect{},
//	})
//
// auth_invalid becomes a *wsauth.AuthError, which the client treats as a
// refusal: the token is never offered again and a fresh one is fetched, up
// to ReconnectPolicy.MaxAuthFailures times (Home Assistant bans an IP after
// repeated failed logins, so the limit matters). A close of a working
// session (an administrator's, a restart) is no refusal: the client
// authenticates again with the same long-lived token. After auth_ok every
// message, including the "pong" answers to the application's own
// {"id":N,"type":"ping"} commands, belongs to the application.
//
// The protocol has no refresh message, and Home Assistant does not end an
// authenticated connection when its access token expires: with short-lived
// tokens set RenewalPolicy.Strategy to wsauth.RenewNone, or the client
// reconnects before every token expiry. Out of scope: the legacy
// api_password login, the supported_features/coalesce_messages
// negotiation, and message ids (the application numbers its commands).
package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wire"
)

// Dialect speaks Home Assistant's authentication phase; see the package
// documentation.
type Dialect struct{}

type haMessage struct {
	Type        string `json:"type"`
	AccessToken string `json:"access_token,omitempty"`
	Message     string `json:"message,omitempty"`
}

// Open implements wsauth.Dialect: it waits for auth_required, answers
// with the access token and waits for the verdict.
func (Dialect) Open(ctx context.Context, conn wsauth.Conn, proof wsauth.Proof) (wsauth.Opened, error) {
	token := proof.InBand
	first, err := readHA(ctx, conn)
	if err != nil {
		return wsauth.Opened{}, err
	}
	if first.Type != "auth_required" {
		return wsauth.Opened{}, fmt.Errorf("wsauth: homeassistant: expected auth_required as the server's first message, got %q", first.Type)
	}
	if token == "" {
		// Home Assistant accepts no other proof; counted as a refusal so
		// that a misconfigured client stops after MaxAuthFailures.
		return wsauth.Opened{}, &wsauth.AuthError{Message: "the homeassistant dialect needs an access token in band: use wsauth.FirstMessageAuth"}
	}
	msg, err := json.Marshal(haMessage{Type: "auth", AccessToken: token})
	if err != nil {
		return wsauth.Opened{}, err
	}
	if err := conn.Write(ctx, wsauth.MessageText, msg); err != nil {
		return wsauth.Opened{}, err
	}
	verdict, err := readHA(ctx, conn)
	if err != nil {
		return wsauth.Opened{}, err
	}
	switch verdict.Type {
	case "auth_ok":
		return wsauth.Opened{Verdict: wsauth.VerdictExplicit}, nil
	case "auth_invalid":
		return wsauth.Opened{}, &wsauth.AuthError{Message: verdict.Message}
	}
	return wsauth.Opened{}, fmt.Errorf("wsauth: homeassistant: expected auth_ok or auth_invalid, got %q", verdict.Type)
}

func readHA(ctx context.Context, conn wsauth.Conn) (haMessage, error) {
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return haMessage{}, err
	}
	var m haMessage
	if typ != wsauth.MessageText || json.Unmarshal(data, &m) != nil || m.Type == "" {
		return haMessage{}, errors.New("wsauth: homeassistant: the server sent something other than a JSON message with a type")
	}
	return m, nil
}

// Inspect implements wsauth.Dialect: after authentication everything is the
// application's, except a repeated auth_ok or auth_required.
func (Dialect) Inspect(typ wsauth.MessageType, data []byte) wsauth.Inbound {
	if typ == wsauth.MessageText && len(data) <= wire.MaxControlSize &&
		wire.MentionsAny(data, []byte(`"auth_ok"`), []byte(`"auth_required"`)) {
		var m haMessage
		if json.Unmarshal(data, &m) == nil && (m.Type == "auth_ok" || m.Type == "auth_required") {
			return wsauth.Inbound{Kind: wsauth.InboundIgnore}
		}
	}
	return wsauth.Inbound{Kind: wsauth.InboundData}
}

// Package graphqlws is the wsauth dialect of graphql-ws, the
// graphql-transport-ws subprotocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md), which
// Apollo, gqlgen, Hasura and the graphql-ws library speak. It offers the
// subprotocol, sends {"type":"connection_init","payload":{…}} right after
// the upgrade and waits for {"type":"connection_ack"}. The token travels in
// the payload (see Dialect.Payload), so pair it with
// wsauth.FirstMessageAuth; with a provider that authenticates the
// handshake (HeaderAuth, TicketAuth, …) connection_init is still sent,
// with the payload Payload("") gives (none by default):
//
//	c, err := wsauth.Dial(ctx, "wss://api.example.com/graphql", &wsauth.Options{
//		Auth:    &wsauth.FirstMessageAuth{Tokens: tokens},
//		Dialect: graphqlws.Dialect{},
//	})
//
// The server's {"type":"ping"} is answered with {"type":"pong"} at any
// time, during the connection_init exchange too; pongs are dropped. Every
// other message (next, error, complete, …) is the application's, which
// sends its own subscribe messages with ids of its choosing.
//
// Close codes, as the client reads them:
//
//	4401 Unauthorized, 4403 Forbidden             reauth: fresh credentials
//	4400 bad request, 4406 subprotocol not
//	acceptable, 4409 subscriber already exists     stop: retrying repeats the mistake
//	4408 init timeout, 4429 too many init
//	requests, 4500 internal server error           retry with backoff
//	anything else                                  the client's table
//
// A close with 1000 before connection_ack is a refusal too (gqlgen closes
// 1000 when its init function says no). The graphql-ws library's
// own client gives up on 4429 and 4500; a long-lived Go client retries them
// with backoff instead. The protocol has no refresh message: a token that
// expires is replaced by reconnecting before expiry, or after the server's
// 4401/4403. Out of scope: the operations themselves (subscribe, next and
// complete are the application's), the deprecated subscriptions-transport-ws
// protocol (subprotocol "graphql-ws"), and payloads on ping and pong.
package graphqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wire"
)

// Subprotocol is the subprotocol of the graphql-ws protocol.
const Subprotocol = "graphql-transport-ws"

// The close codes of the graphql-ws protocol (PROTOCOL.md and the CloseCode
// list of the graphql-ws library).
const (
	BadRequest               wsauth.StatusCode = 4400 // an invalid message
	Unauthorized             wsauth.StatusCode = 4401 // an operation before connection_ack
	Forbidden                wsauth.StatusCode = 4403 // the server's onConnect refused the connection_init
	SubprotocolNotAcceptable wsauth.StatusCode = 4406
	InitTimeout              wsauth.StatusCode = 4408 // no connection_init in time
	SubscriberAlreadyExists  wsauth.StatusCode = 4409
	TooManyInitRequests      wsauth.StatusCode = 4429
	InternalServerError      wsauth.StatusCode = 4500
)

// Dialect speaks graphql-ws; see the package documentation.
type Dialect struct {
	// Payload builds the connection_init payload from the token, which is
	// "" when the credential rode the handshake. A nil map sends no
	// payload. Default BearerPayload: {"Authorization":"Bearer …"}. For
	// servers that read the token elsewhere use TokenPayload or a function
	// of your own (Hasura, for example, reads
	// {"headers":{"Authorization":"Bearer …"}}).
	Payload func(token string) map[string]any
}

// BearerPayload is the default payload: {"Authorization":"Bearer <token>"},
// and no payload for an empty token.
func BearerPayload(token string) map[string]any {
	if token == "" {
		return nil
	}
	return map[string]any{"Authorization": "Bearer " + token}
}

// TokenPayload returns a payload builder that puts the bare token under
// key: TokenPayload("token") gives {"token":"<token>"}. An empty token
// gives no payload.
func TokenPayload(key string) func(token string) map[string]any {
	return func(token string) map[string]any {
		if token == "" {
			return nil
		}
		return map[string]any{key: token}
	}
}

// Subprotocols implements wsauth.SubprotocolProvider.
func (Dialect) Subprotocols() []string { return []string{Subprotocol} }

type message struct {
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload,omitempty"`
}

var pong = []byte(`{"type":"pong"}`)

// Open implements wsauth.Dialect.
func (d Dialect) Open(ctx context.Context, conn wsauth.Conn, proof wsauth.Proof) (wsauth.Opened, error) {
	if sp := conn.Subprotocol(); sp != Subprotocol {
		return wsauth.Opened{}, fmt.Errorf("wsauth: graphql-ws: the server selected subprotocol %q, not %q", sp, Subprotocol)
	}
	payload := d.Payload
	if payload == nil {
		payload = BearerPayload
	}
	hello, err := json.Marshal(message{Type: "connection_init", Payload: payload(proof.InBand)})
	if err != nil {
		return wsauth.Opened{}, fmt.Errorf("wsauth: graphql-ws: encoding connection_init: %w", err)
	}
	if err := conn.Write(ctx, wsauth.MessageText, hello); err != nil {
		return wsauth.Opened{}, err
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return wsauth.Opened{}, err
		}
		var m message
		if typ != wsauth.MessageText || json.Unmarshal(data, &m) != nil {
			return wsauth.Opened{}, errors.New("wsauth: graphql-ws: the server sent something other than a JSON message before connection_ack")
		}
		switch m.Type {
		case "connection_ack":
			return wsauth.Opened{Verdict: wsauth.VerdictExplicit}, nil
		case "ping":
			if err := conn.Write(ctx, wsauth.MessageText, pong); err != nil {
				return wsauth.Opened{}, err
			}
		case "pong":
		default:
			return wsauth.Opened{}, fmt.Errorf("wsauth: graphql-ws: expected connection_ack, got %q", m.Type)
		}
	}
}

// control are the message types the dialect consumes, as they appear on the
// wire.
var control = [][]byte{[]byte(`"ping"`), []byte(`"pong"`), []byte(`"connection_ack"`)}

// maxControl bounds the messages parsed for their type: a ping may carry a
// payload, but not a large one.
const maxControl = 64 << 10

// Inspect implements wsauth.Dialect.
func (Dialect) Inspect(typ wsauth.MessageType, data []byte) wsauth.Inbound {
	if typ != wsauth.MessageText || len(data) > maxControl || !wire.MentionsAny(data, control...) {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	var m struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(bytes.TrimSpace(data), &m) != nil || m.ID != "" {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	switch m.Type {
	case "ping":
		return wsauth.Inbound{Kind: wsauth.InboundReply, Reply: pong}
	case "pong", "connection_ack":
		return wsauth.Inbound{Kind: wsauth.InboundIgnore}
	}
	return wsauth.Inbound{Kind: wsauth.InboundData}
}

// ClassifyClose implements wsauth.CloseClassifier; the table is in the
// package documentation.
func (Dialect) ClassifyClose(code wsauth.StatusCode, _ string) wsauth.Action {
	switch code {
	case Unauthorized, Forbidden:
		return wsauth.ActionReauth
	case BadRequest, SubprotocolNotAcceptable, SubscriberAlreadyExists:
		return wsauth.ActionStop
	case InitTimeout, TooManyInitRequests, InternalServerError:
		return wsauth.ActionRetry
	}
	return wsauth.ActionDefault
}

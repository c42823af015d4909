package wsauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// GraphQLTransportWS is the subprotocol of the graphql-ws protocol.
const GraphQLTransportWS = "graphql-transport-ws"

// The close codes of the graphql-ws protocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md and the
// CloseCode list of the graphql-ws library).
const (
	GraphQLBadRequest               StatusCode = 4400 // an invalid message
	GraphQLUnauthorized             StatusCode = 4401 // an operation before connection_ack
	GraphQLForbidden                StatusCode = 4403 // the server's onConnect refused the connection_init
	GraphQLSubprotocolNotAcceptable StatusCode = 4406
	GraphQLInitTimeout              StatusCode = 4408 // no connection_init in time
	GraphQLSubscriberAlreadyExists  StatusCode = 4409
	GraphQLTooManyInitRequests      StatusCode = 4429
	GraphQLInternalServerError      StatusCode = 4500
)

// GraphQLWS speaks graphql-ws, the graphql-transport-ws subprotocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md). It
// offers the subprotocol, sends {"type":"connection_init","payload":{…}}
// right after the upgrade and waits for {"type":"connection_ack"}. The
// token travels in the payload (see Payload), so pair it with
// FirstMessageAuth; with a provider that authenticates the handshake
// (HeaderAuth, TicketAuth, …) connection_init is still sent, with the
// payload Payload("") gives (none by default).
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
// (The graphql-ws library's own client gives up on 4429 and 4500; a
// long-lived Go client retries them with backoff instead.) The protocol has
// no refresh message: a token that expires is replaced by reconnecting
// before expiry, or after the server's 4401/4403. Out of scope: the
// operations themselves (subscribe/next/complete are the application's),
// the deprecated subscriptions-transport-ws protocol (subprotocol
// "graphql-ws"), and payloads on ping/pong.
type GraphQLWS struct {
	// Payload builds the connection_init payload from the token, which is
	// "" when the credential rode the handshake. A nil map sends no
	// payload. Default GraphQLBearerPayload: {"Authorization":"Bearer …"}.
	// For servers that read the token elsewhere use GraphQLTokenPayload or
	// a function of your own (Hasura, for example, reads
	// {"headers":{"Authorization":"Bearer …"}}).
	Payload func(token string) map[string]any
}

// GraphQLBearerPayload is GraphQLWS's default payload:
// {"Authorization":"Bearer <token>"}, and no payload for an empty token.
func GraphQLBearerPayload(token string) map[string]any {
	if token == "" {
		return nil
	}
	return map[string]any{"Authorization": "Bearer " + token}
}

// GraphQLTokenPayload returns a payload builder that puts the bare token
// under key: GraphQLTokenPayload("token") gives {"token":"<token>"}. An
// empty token gives no payload.
func GraphQLTokenPayload(key string) func(token string) map[string]any {
	return func(token string) map[string]any {
		if token == "" {
			return nil
		}
		return map[string]any{key: token}
	}
}

// Name implements Dialect.
func (GraphQLWS) Name() string { return "graphql-ws" }

// Subprotocols implements Dialect.
func (GraphQLWS) Subprotocols() []string { return []string{GraphQLTransportWS} }

type gqlMessage struct {
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload,omitempty"`
}

var gqlPong = []byte(`{"type":"pong"}`)

// Open implements Dialect.
func (d GraphQLWS) Open(ctx context.Context, conn Conn, token string) (Opened, error) {
	if sp := conn.Subprotocol(); sp != GraphQLTransportWS {
		return Opened{}, fmt.Errorf("wsauth: graphql-ws: the server selected subprotocol %q, not %q", sp, GraphQLTransportWS)
	}
	payload := d.Payload
	if payload == nil {
		payload = GraphQLBearerPayload
	}
	hello, err := json.Marshal(gqlMessage{Type: "connection_init", Payload: payload(token)})
	if err != nil {
		return Opened{}, fmt.Errorf("wsauth: graphql-ws: encoding connection_init: %w", err)
	}
	if err := conn.Write(ctx, MessageText, hello); err != nil {
		return Opened{}, err
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return Opened{}, err
		}
		var m gqlMessage
		if typ != MessageText || json.Unmarshal(data, &m) != nil {
			return Opened{}, errors.New("wsauth: graphql-ws: the server sent something other than a JSON message before connection_ack")
		}
		switch m.Type {
		case "connection_ack":
			return Opened{Verdict: VerdictExplicit}, nil
		case "ping":
			if err := conn.Write(ctx, MessageText, gqlPong); err != nil {
				return Opened{}, err
			}
		case "pong":
		default:
			return Opened{}, fmt.Errorf("wsauth: graphql-ws: expected connection_ack, got %q", m.Type)
		}
	}
}

// RefreshMessage implements Dialect: graphql-ws has no refresh.
func (GraphQLWS) RefreshMessage(string) ([]byte, error) { return nil, ErrRefreshUnsupported }

// gqlControl are the message types the dialect consumes, as they appear on
// the wire.
var gqlControl = [][]byte{[]byte(`"ping"`), []byte(`"pong"`), []byte(`"connection_ack"`)}

// maxGraphQLControl bounds the messages parsed for their type: a ping may
// carry a payload, but not a large one.
const maxGraphQLControl = 64 << 10

// Inspect implements Dialect.
func (GraphQLWS) Inspect(typ MessageType, data []byte) Inbound {
	if typ != MessageText || len(data) > maxGraphQLControl || !mentionsAny(data, gqlControl) {
		return Inbound{Kind: InboundData}
	}
	var m struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(bytes.TrimSpace(data), &m) != nil || m.ID != "" {
		return Inbound{Kind: InboundData}
	}
	switch m.Type {
	case "ping":
		return Inbound{Kind: InboundReply, Reply: gqlPong}
	case "pong", "connection_ack":
		return Inbound{Kind: InboundIgnore}
	}
	return Inbound{Kind: InboundData}
}

// ClassifyClose implements Dialect; the table is on GraphQLWS.
func (GraphQLWS) ClassifyClose(code StatusCode, _ string) Action {
	switch code {
	case GraphQLUnauthorized, GraphQLForbidden:
		return ActionReauth
	case GraphQLBadRequest, GraphQLSubprotocolNotAcceptable, GraphQLSubscriberAlreadyExists:
		return ActionStop
	case GraphQLInitTimeout, GraphQLTooManyInitRequests, GraphQLInternalServerError:
		return ActionRetry
	}
	return ActionDefault
}

package dialecttest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// GraphQLWS is a graphql-ws server, subprotocol graphql-transport-ws
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md), at
// /graphql. It closes with the protocol's codes: 4406 without the
// subprotocol, 4408 when connection_init does not come within InitTimeout,
// 4403 when the token in the connection_init payload is not allowed (what
// the graphql-ws server does when onConnect returns false), 4401 for a
// subscribe before connection_ack, 4429 for a second connection_init, 4409
// for a duplicate subscription id, and 4400 for an invalid message.
//
// A subscribe {"id":…,"type":"subscribe","payload":{"query":Q}} is
// answered with {"id":…,"type":"next","payload":{"data":{"echo":Q}}} and a
// complete. Ping sends the protocol's {"type":"ping"}; Pongs counts the
// answers.
type GraphQLWS struct {
	base
	allowList

	// TokenKey is the connection_init payload key that carries the token;
	// a "Bearer " prefix is stripped. Default "Authorization". Set before
	// the first connection.
	TokenKey string
	// InitTimeout is the connectionInitWaitTimeout. Default 3s, like
	// graphql-ws. Set before the first connection.
	InitTimeout time.Duration
	// PingBeforeAck makes the server ping after connection_init and wait
	// for the pong before it acknowledges. Set before the first
	// connection.
	PingBeforeAck bool

	imu   sync.Mutex
	inits []map[string]any
}

// NewGraphQLWS starts a server that accepts the tokens passed to Allow.
func NewGraphQLWS(t testing.TB) *GraphQLWS {
	s := &GraphQLWS{TokenKey: "Authorization", InitTimeout: 3 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", s.serve)
	s.start(t, mux)
	return s
}

// URL is the WebSocket URL.
func (s *GraphQLWS) URL() string { return s.wsURL("/graphql") }

// Inits returns the payloads of every connection_init received, nil for
// one without a payload.
func (s *GraphQLWS) Inits() []map[string]any {
	s.imu.Lock()
	defer s.imu.Unlock()
	return append([]map[string]any(nil), s.inits...)
}

type gqlMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (s *GraphQLWS) serve(w http.ResponseWriter, r *http.Request) {
	p, ok := s.accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if !ok {
		return
	}
	defer s.drop(p)
	ctx := s.ctx
	if p.ws.Subprotocol() != "graphql-transport-ws" {
		_ = p.ws.Close(4406, "Subprotocol not acceptable")
		return
	}
	_, data, err := readWithin(ctx, p.ws, s.InitTimeout, 4408, "Connection initialisation timeout")
	if err != nil {
		return
	}
	var m gqlMsg
	if json.Unmarshal(data, &m) != nil {
		_ = p.ws.Close(4400, "Invalid message received")
		return
	}
	switch m.Type {
	case "connection_init":
	case "subscribe":
		_ = p.ws.Close(4401, "Unauthorized")
		return
	default:
		_ = p.ws.Close(4400, "Invalid message received")
		return
	}
	var payload map[string]any
	if len(m.Payload) > 0 && string(m.Payload) != "null" {
		if json.Unmarshal(m.Payload, &payload) != nil {
			_ = p.ws.Close(4400, "Invalid message received")
			return
		}
	}
	s.imu.Lock()
	s.inits = append(s.inits, payload)
	s.imu.Unlock()
	tok, _ := payload[s.TokenKey].(string)
	tok = strings.TrimPrefix(tok, "Bearer ")
	s.presented(tok)
	if !s.ok(tok) {
		_ = p.ws.Close(4403, "Forbidden")
		return
	}
	if s.PingBeforeAck {
		if p.write(ctx, []byte(`{"type":"ping"}`)) != nil {
			return
		}
		_, data, err := readWithin(ctx, p.ws, s.InitTimeout, 4408, "Connection initialisation timeout")
		if err != nil {
			return
		}
		if json.Unmarshal(data, &m) != nil || m.Type != "pong" {
			_ = p.ws.Close(4400, "Invalid message received")
			return
		}
		s.ponged()
	}
	s.authenticated(p, tok)
	if p.write(ctx, []byte(`{"type":"connection_ack"}`)) != nil {
		return
	}
	active := map[string]bool{}
	for {
		_, data, err := p.ws.Read(ctx)
		if err != nil {
			return
		}
		var m gqlMsg
		if json.Unmarshal(data, &m) != nil {
			_ = p.ws.Close(4400, "Invalid message received")
			return
		}
		switch m.Type {
		case "connection_init":
			_ = p.ws.Close(4429, "Too many initialisation requests")
			return
		case "ping":
			if p.write(ctx, []byte(`{"type":"pong"}`)) != nil {
				return
			}
		case "pong":
			s.ponged()
		case "complete":
			delete(active, m.ID)
		case "subscribe":
			if m.ID == "" {
				_ = p.ws.Close(4400, "Invalid message received")
				return
			}
			if active[m.ID] {
				_ = p.ws.Close(4409, "Subscriber for "+m.ID+" already exists")
				return
			}
			var q struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(m.Payload, &q)
			next, _ := json.Marshal(map[string]any{"id": m.ID, "type": "next",
				"payload": map[string]any{"data": map[string]any{"echo": q.Query}}})
			done, _ := json.Marshal(gqlMsg{ID: m.ID, Type: "complete"})
			if p.write(ctx, next) != nil || p.write(ctx, done) != nil {
				return
			}
		default:
			_ = p.ws.Close(4400, "Invalid message received")
			return
		}
	}
}

// Ping sends {"type":"ping"} to every authenticated connection and returns
// how many it was sent to; Pongs counts the answers.
func (s *GraphQLWS) Ping() int {
	n := 0
	for _, p := range s.authedPeers() {
		if p.write(s.ctx, []byte(`{"type":"ping"}`)) == nil {
			n++
		}
	}
	return n
}

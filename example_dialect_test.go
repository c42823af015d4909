package wsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth"
)

// opsDialect speaks the authentication protocol of a made-up "ops"
// service, the way you would write a dialect for a real one:
//
//	client  {"op":"login","key":"…"}            first message after the upgrade
//	server  {"op":"welcome","ttl":3600}         or {"op":"denied","why":"…"}
//	client  {"op":"renew","key":"…"}            extends the session
//	server  {"op":"renewed","ttl":3600}         or {"op":"renew_denied","why":"…"}
//	server  {"op":"heartbeat"}                  answered {"op":"heartbeat_ack"}
//	close   4001 key expired: get a new key; 4002 banned: give up
//
// The required part of a dialect is Open and Inspect; refresh, close codes
// and subprotocols are optional methods the client finds on its own. A
// dialect is shared by every connection of a client, so it keeps no
// per-connection state (or guards it).
type opsDialect struct{}

type opsMessage struct {
	Op  string  `json:"op"`
	Key string  `json:"key,omitempty"`
	TTL float64 `json:"ttl,omitempty"`
	Why string  `json:"why,omitempty"`
}

// Subprotocols makes the client offer ops.v1 (wsauth.SubprotocolProvider).
func (opsDialect) Subprotocols() []string { return []string{"ops.v1"} }

// Open proves identity in band with the proof's token. A refusal is a
// *wsauth.AuthError: the client then never offers that key again and
// fetches a fresh one. "welcome" is the server's explicit verdict.
func (opsDialect) Open(ctx context.Context, conn wsauth.Conn, proof wsauth.Proof) (wsauth.Opened, error) {
	login, _ := json.Marshal(opsMessage{Op: "login", Key: proof.InBand})
	if err := conn.Write(ctx, wsauth.MessageText, login); err != nil {
		return wsauth.Opened{}, err
	}
	_, data, err := conn.Read(ctx)
	if err != nil {
		return wsauth.Opened{}, err // a close during login, as a *wsauth.CloseError
	}
	var m opsMessage
	if json.Unmarshal(data, &m) != nil {
		return wsauth.Opened{}, fmt.Errorf("ops: unexpected first message")
	}
	switch m.Op {
	case "welcome":
		return wsauth.Opened{Verdict: wsauth.VerdictExplicit, ExpiresIn: time.Duration(m.TTL * float64(time.Second))}, nil
	case "denied":
		return wsauth.Opened{}, &wsauth.AuthError{Message: m.Why}
	}
	return wsauth.Opened{}, fmt.Errorf("ops: expected welcome, got %q", m.Op)
}

// RefreshMessage is sent ahead of expiry with a fresh key
// (wsauth.Refresher).
func (opsDialect) RefreshMessage(token string) ([]byte, error) {
	return json.Marshal(opsMessage{Op: "renew", Key: token})
}

// Inspect sorts the service's protocol messages from the application's.
func (opsDialect) Inspect(typ wsauth.MessageType, data []byte) wsauth.Inbound {
	if typ != wsauth.MessageText || !bytes.Contains(data, []byte(`"op"`)) {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	var m opsMessage
	if json.Unmarshal(data, &m) != nil {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	switch m.Op {
	case "heartbeat":
		return wsauth.Inbound{Kind: wsauth.InboundReply, Reply: []byte(`{"op":"heartbeat_ack"}`)}
	case "renewed":
		return wsauth.Inbound{Kind: wsauth.InboundRefreshOK, ExpiresIn: time.Duration(m.TTL * float64(time.Second))}
	case "renew_denied":
		return wsauth.Inbound{Kind: wsauth.InboundRefreshFailed, Message: m.Why}
	}
	return wsauth.Inbound{Kind: wsauth.InboundData}
}

// ClassifyClose maps the service's own close codes
// (wsauth.CloseClassifier); everything else is left to the client's table.
func (opsDialect) ClassifyClose(code wsauth.StatusCode, reason string) wsauth.Action {
	switch code {
	case 4001:
		return wsauth.ActionReauth
	case 4002:
		return wsauth.ActionStop
	}
	return wsauth.ActionDefault
}

// opsServer is a tiny stand-in for the service: it logs the client in,
// sends one heartbeat, and answers {"op":"say",…} with {"op":"said",…}
// once the heartbeat has been acknowledged.
func opsServer(wg *sync.WaitGroup) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"ops.v1"}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		send := func(v any) error {
			b, _ := json.Marshal(v)
			return ws.Write(ctx, websocket.MessageText, b)
		}
		var login opsMessage
		if _, data, err := ws.Read(ctx); err != nil || json.Unmarshal(data, &login) != nil {
			return
		}
		if login.Op != "login" || login.Key != "ops-key-1" {
			_ = send(opsMessage{Op: "denied", Why: "unknown key"})
			return
		}
		if send(opsMessage{Op: "welcome", TTL: 3600}) != nil || send(opsMessage{Op: "heartbeat"}) != nil {
			return
		}
		acked := false
		var waiting []string
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var m struct{ Op, Text string }
			_ = json.Unmarshal(data, &m)
			switch m.Op {
			case "heartbeat_ack":
				acked = true
			case "say":
				waiting = append(waiting, m.Text)
			}
			for acked && len(waiting) > 0 {
				reply := map[string]any{"op": "said", "text": waiting[0], "after_heartbeat": true}
				waiting = waiting[1:]
				if send(reply) != nil {
					return
				}
			}
		}
	})
}

// A custom dialect lets the client talk to a service whose authentication
// messages are its own: login, renewal, heartbeats and close codes.
func Example_customDialect() {
	var handlers sync.WaitGroup
	srv := httptest.NewServer(opsServer(&handlers))
	defer srv.Close()
	defer handlers.Wait() // the WebSocket handler ends once the client has closed

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := wsauth.Dial(ctx, "ws"+srv.URL[len("http"):], &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("ops-key-1")},
		Dialect: opsDialect{},
	})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	fmt.Printf("connected, subprotocol %q\n", c.Subprotocol())

	if err := c.SendText(ctx, `{"op":"say","text":"hello"}`); err != nil {
		fmt.Println("send:", err)
		return
	}
	// The heartbeat was answered by the client and never shows up here.
	_, msg, err := c.Receive(ctx)
	if err != nil {
		fmt.Println("receive:", err)
		return
	}
	fmt.Println(string(msg))
	// Output:
	// connected, subprotocol "ops.v1"
	// {"after_heartbeat":true,"op":"said","text":"hello"}
}

package graphqlws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
)

// The fuzz targets of the graphql-ws dialect: what it makes of the
// server's messages before connection_ack and after. Without -fuzz only
// the seeds run; run one for a while with, for example,
//
//	go test ./dialect/graphqlws -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s

// FuzzOpen: Open refuses a server that did not select the subprotocol
// without writing; otherwise it writes connection_init with the payload
// first, answers every ping before connection_ack with one pong, skips
// pongs, and succeeds exactly when connection_ack arrives after nothing
// but pings and pongs.
func FuzzOpen(f *testing.F) {
	for _, seed := range []struct {
		proto          bool
		token          string
		m1, m2, m3, m4 string
	}{
		{true, "gql-token", `{"type":"connection_ack"}`, "", "", ""},
		{true, "gql-token", `{"type":"ping"}`, `{"type":"pong"}`, `{"type":"connection_ack","payload":{"x":1}}`, ""},
		{true, "", `{"type":"ping","payload":{"a":"b"}}`, `{"type":"ping"}`, `{"type":"ping"}`, `{"type":"connection_ack"}`},
		{true, "t", "close:4403", "", "", ""},
		{true, "t", "close:1000", "", "", ""},
		{true, "t", `{"type":"next","id":"1","payload":{}}`, `{"type":"connection_ack"}`, "", ""},
		{true, "t", `{"type":"connection_ack","payload":"not an object"}`, "", "", ""},
		{true, "t", `{"type":"error"}`, "", "", ""},
		{false, "t", `{"type":"connection_ack"}`, "", "", ""},
		{true, "\xffbad utf-8", `[]`, "", "", ""},
	} {
		f.Add(seed.proto, seed.token, seed.m1, seed.m2, seed.m3, seed.m4)
	}
	f.Fuzz(func(t *testing.T, proto bool, token, m1, m2, m3, m4 string) {
		conn := &clienttest.ScriptConn{Script: []string{m1, m2, m3, m4}}
		if proto {
			conn.Proto = Subprotocol
		}
		opened, err := Dialect{}.Open(context.Background(), conn, wsauth.Proof{InBand: token})
		if !proto {
			if err == nil || len(conn.Wrote) != 0 {
				t.Fatalf("wrong subprotocol: %v, wrote %q", err, conn.Wrote)
			}
			return
		}
		if len(conn.Wrote) == 0 {
			t.Fatal("connection_init was not written")
		}
		var init message
		if json.Unmarshal([]byte(conn.Wrote[0]), &init) != nil || init.Type != "connection_init" {
			t.Fatalf("first write %q is not connection_init", conn.Wrote[0])
		}
		if utf8.ValidString(token) && !reflect.DeepEqual(init.Payload, BearerPayload(token)) {
			t.Fatalf("payload %v, want %v", init.Payload, BearerPayload(token))
		}

		// What the protocol says should happen, message by message.
		pongs, acked := 0, false
	script:
		for _, m := range []string{m1, m2, m3, m4} {
			var msg message
			if json.Unmarshal([]byte(m), &msg) != nil {
				break
			}
			switch msg.Type {
			case "connection_ack":
				acked = true
				break script
			case "ping":
				pongs++
			case "pong":
			default:
				break script
			}
		}
		for _, w := range conn.Wrote[1:] {
			if !bytes.Equal([]byte(w), pong) {
				t.Fatalf("wrote %q besides connection_init and pongs", w)
			}
		}
		if got := len(conn.Wrote) - 1; got != pongs {
			t.Fatalf("%d pongs for %d pings", got, pongs)
		}
		switch {
		case acked && (err != nil || opened.Verdict != wsauth.VerdictExplicit):
			t.Fatalf("connection_ack: %+v, %v", opened, err)
		case !acked && err == nil:
			t.Fatalf("confirmed without connection_ack: %q", []string{m1, m2, m3, m4})
		case err != nil && opened.Verdict != wsauth.VerdictPending:
			t.Fatalf("an error with verdict %v", opened.Verdict)
		}
		var ae *wsauth.AuthError
		if errors.As(err, &ae) {
			t.Fatalf("graphql-ws refuses by closing, not by message: %v", err)
		}
		if opened.ExpiresIn != 0 || opened.Pending != nil {
			t.Fatalf("Open = %+v", opened)
		}
	})
}

// FuzzInspect: a ping (without an id) is answered with a pong, a pong or a
// late connection_ack is ignored, and everything else is the
// application's: binary messages, messages too large to be protocol
// messages, and every message with an operation id (next, error,
// complete), whatever its type.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping"}`, `{"type":"pong","payload":{"x":1}}`, ` {"type":"connection_ack"} `,
		`{"id":"1","type":"next","payload":{"data":{"type":"ping"}}}`, `{"id":"2","type":"ping"}`,
		`{"id":7,"type":"ping"}`, `{"type":"complete","id":"3"}`, `"type" "ping"`, ``,
	} {
		f.Add([]byte(s), false, "ping", "")
	}
	f.Add([]byte(`{"type":"ping"}`), true, "next", "op-1")
	f.Fuzz(func(t *testing.T, data []byte, binary bool, typ, id string) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		in := Dialect{}.Inspect(mt, data)
		var m struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		parsed := json.Unmarshal(bytes.TrimSpace(data), &m) == nil
		consumed := in.Kind != wsauth.InboundData
		if consumed && (binary || len(data) > maxControl || !parsed || m.ID != "") {
			t.Fatalf("Inspect(%q, binary %v) = %+v: not a protocol message", data, binary, in)
		}
		switch in.Kind {
		case wsauth.InboundData:
		case wsauth.InboundReply:
			if m.Type != "ping" || !bytes.Equal(in.Reply, pong) {
				t.Fatalf("Inspect(%q) = %+v", data, in)
			}
		case wsauth.InboundIgnore:
			if m.Type != "pong" && m.Type != "connection_ack" {
				t.Fatalf("Inspect(%q) ignored type %q", data, m.Type)
			}
		default:
			t.Fatalf("Inspect(%q) = %+v: a kind graphql-ws never sends", data, in)
		}
		if in.ExpiresIn != 0 || in.Message != "" {
			t.Fatalf("Inspect(%q) = %+v", data, in)
		}

		// Well-formed messages: with an id they are always the
		// application's; without, the protocol's types are consumed.
		if !utf8.ValidString(typ) || !utf8.ValidString(id) {
			return
		}
		fields := map[string]any{"type": typ, "payload": map[string]any{"type": "ping"}}
		if id != "" {
			fields["id"] = id
		}
		msg, _ := json.Marshal(fields)
		want := wsauth.InboundData
		if id == "" {
			switch typ {
			case "ping":
				want = wsauth.InboundReply
			case "pong", "connection_ack":
				want = wsauth.InboundIgnore
			}
		}
		if got := (Dialect{}).Inspect(wsauth.MessageText, msg).Kind; got != want {
			t.Fatalf("Inspect(%s) = %v, want %v", msg, got, want)
		}
	})
}

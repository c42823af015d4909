package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/wire"
)

// The fuzz targets of the Home Assistant dialect: what it makes of the
// server's messages, during the authentication phase and after. Without
// -fuzz only the seeds run; run one for a while with, for example,
//
//	go test ./dialect/homeassistant -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s

// typeIs reports whether a server message reads, as the dialect decodes it,
// as a message of type typ.
func typeIs(msg, typ string) (haMessage, bool) {
	var m haMessage
	return m, json.Unmarshal([]byte(msg), &m) == nil && m.Type == typ
}

// FuzzOpen: whatever the server sends, the access token is written once,
// and only after auth_required; the connection is confirmed only after
// auth_required and auth_ok; auth_invalid and a missing token are
// refusals (*wsauth.AuthError), anything else a plain error; Open reads
// two messages at most.
func FuzzOpen(f *testing.F) {
	for _, seed := range []struct{ first, verdict, token string }{
		{`{"type":"auth_required","ha_version":"2026.4.0"}`, `{"type":"auth_ok","ha_version":"2026.4.0"}`, "llat-token"},
		{`{"type":"auth_required"}`, `{"type":"auth_invalid","message":"Invalid access token or password"}`, "llat-token"},
		{`{"type":"auth_required"}`, "close:1008", "llat-token"},
		{`{"type":"auth_required"}`, `{"type":"auth_ok"}`, ""},
		{`{"type":"auth_ok"}`, `{"type":"auth_ok"}`, "llat-token"},
		{`{"type":"auth_required","message":7}`, `{"type":"auth_ok"}`, "t"},
		{`{"TYPE":"auth_required"}`, `{"type":"result","success":true}`, "t"},
		{"close:4000", "", "t"},
		{`not json`, `[]`, "t"},
		{`{"type":"auth_required"}`, `{"type":"auth_invalid","message":"` + strings.Repeat("é", 300) + `"}`, "\xff"},
	} {
		f.Add(seed.first, seed.verdict, seed.token)
	}
	f.Fuzz(func(t *testing.T, first, verdict, token string) {
		conn := &clienttest.ScriptConn{Script: []string{first, verdict, `{"type":"auth_ok"}`}}
		opened, err := Dialect{}.Open(context.Background(), conn, wsauth.Proof{InBand: token})
		_, required := typeIs(first, "auth_required")
		_, ok := typeIs(verdict, "auth_ok")
		invalid, refused := typeIs(verdict, "auth_invalid")

		if len(conn.Script) < 1 {
			t.Fatalf("Open read %d messages", 3-len(conn.Script))
		}
		if !required || token == "" {
			if len(conn.Wrote) != 0 {
				t.Fatalf("wrote %q without auth_required and a token", conn.Wrote)
			}
		} else {
			if len(conn.Wrote) != 1 {
				t.Fatalf("wrote %d messages after auth_required", len(conn.Wrote))
			}
			var m haMessage
			if json.Unmarshal([]byte(conn.Wrote[0]), &m) != nil || m.Type != "auth" {
				t.Fatalf("wrote %q, not an auth message", conn.Wrote[0])
			}
			if utf8.ValidString(token) && m.AccessToken != token {
				t.Fatalf("wrote token %q, want %q", m.AccessToken, token)
			}
		}

		var ae *wsauth.AuthError
		switch {
		case required && token != "" && ok:
			if err != nil || opened.Verdict != wsauth.VerdictExplicit {
				t.Fatalf("auth_ok: %+v, %v", opened, err)
			}
		case err == nil:
			t.Fatalf("confirmed without auth_required and auth_ok: %q %q", first, verdict)
		case required && token == "":
			if !errors.As(err, &ae) {
				t.Fatalf("no token: %v, want an AuthError", err)
			}
		case required && refused:
			if !errors.As(err, &ae) || ae.Message != invalid.Message {
				t.Fatalf("auth_invalid %q: %v", invalid.Message, err)
			}
		case errors.As(err, &ae):
			t.Fatalf("%q %q: a refusal (%v) without auth_invalid", first, verdict, err)
		}
		if err != nil && (opened.Verdict != wsauth.VerdictPending || opened.ExpiresIn != 0 || opened.Pending != nil) {
			t.Fatalf("an error with %+v", opened)
		}
	})
}

// FuzzInspect: after authentication everything is the application's but a
// repeated auth_ok or auth_required, which is ignored; binary messages and
// messages too large to be protocol messages are always data.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth_ok","ha_version":"2026.4.0"}`, `{"type":"auth_required"}`,
		`{"id":1,"type":"result","success":true,"result":"auth_ok"}`, `{"id":2,"type":"pong"}`,
		`{"id":3,"type":"event","event":{"data":{"type":"auth_ok"}}}`, `{"type":"auth_ok","message":1}`,
		`{"type":"auth_invalid","message":"x"}`, `not json "type" "auth_ok"`, ``,
	} {
		f.Add([]byte(s), false, "auth_ok", "2026.4.0")
	}
	f.Add([]byte(`{"type":"auth_ok"}`), true, "result", "")
	f.Fuzz(func(t *testing.T, data []byte, binary bool, typ, version string) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		in := Dialect{}.Inspect(mt, data)
		switch in.Kind {
		case wsauth.InboundData:
		case wsauth.InboundIgnore:
			_, authOK := typeIs(string(data), "auth_ok")
			_, required := typeIs(string(data), "auth_required")
			if binary || len(data) > wire.MaxControlSize || !authOK && !required {
				t.Fatalf("ignored %q (binary %v)", data, binary)
			}
		default:
			t.Fatalf("Inspect(%q) = %+v: a kind Home Assistant never sends", data, in)
		}
		if in.ExpiresIn != 0 || in.Reply != nil || in.Message != "" {
			t.Fatalf("Inspect(%q) = %+v", data, in)
		}

		// A well-formed message: auth_ok and auth_required are consumed,
		// every other type reaches the application, even when it quotes
		// one of them.
		msg, err := json.Marshal(map[string]any{"type": typ, "ha_version": version, "result": "auth_ok"})
		if err != nil || len(msg) > wire.MaxControlSize || !utf8.ValidString(typ) {
			return
		}
		want := wsauth.InboundData
		if typ == "auth_ok" || typ == "auth_required" {
			want = wsauth.InboundIgnore
		}
		if got := (Dialect{}).Inspect(wsauth.MessageText, msg).Kind; got != want {
			t.Fatalf("Inspect(%s) = %v, want %v", msg, got, want)
		}
		if got := (Dialect{}).Inspect(wsauth.MessageBinary, msg).Kind; got != wsauth.InboundData {
			t.Fatalf("binary %s = %v", msg, got)
		}
	})
}

package wsauth_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/wire"
)

// The fuzz targets of the root package's dialects, written against the
// public API (in-package tests could not import internal/clienttest).
// Without -fuzz only the seeds run; run one for a while with, for example,
//
//	go test . -run '^$' -fuzz '^FuzzDefaultInspect$' -fuzztime 30s

// wsauthMessage is the shape of the wsauth protocol's messages
// (docs/protocol.md), decoded independently of the dialect.
type wsauthMessage struct {
	Type      string   `json:"type"`
	Token     string   `json:"token"`
	ExpiresIn *float64 `json:"expires_in"`
	Reason    string   `json:"reason"`
}

// controlKinds are the message types DefaultDialect consumes, and what it
// makes of them.
var controlKinds = map[string]wsauth.InboundKind{
	"auth_ok": wsauth.InboundAuthOK, "refresh_ok": wsauth.InboundRefreshOK, "refresh_failed": wsauth.InboundRefreshFailed,
	"expiring": wsauth.InboundExpiring, "going_away": wsauth.InboundGoingAway,
}

// FuzzDefaultInspect: DefaultDialect consumes a message only when it is a
// small text message whose type is one of the protocol's five, and then
// says what the protocol says (a lifetime only with auth_ok, refresh_ok and
// expiring, never negative nor absurd; a reason only with refresh_failed and
// going_away); it never asks for a reply and never ignores. Binary messages,
// large messages and every other type are the application's, even when they
// quote a protocol type.
func FuzzDefaultInspect(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth_ok","expires_in":3600}`, `{"type":"refresh_ok","expires_in":59.5}`, `{"type":"refresh_failed","reason":"revoked"}`,
		`{"type":"expiring","expires_in":-1}`, `{"type":"going_away","reason":"deploy"}`, `{"type":"expiring","expires_in":1e300}`,
		`{"type":"chat","text":"\"auth_ok\""}`, `{"type":"auth_ok","expires_in":"soon"}`, `{"type":"auth_ok","token":7}`,
		`["type","auth_ok"]`, `{"TYPE":"going_away"}`, `"type" "auth_ok"`, ``,
		`{"type":"auth_ok","expires_in":1e308}`, `{"type":"refresh_failed","reason":7}`, `not json`,
	} {
		f.Add([]byte(s), false, "refresh_ok", 30.0, "because")
	}
	f.Add([]byte(`{"type":"auth_ok"}`), true, "chat", math.Inf(1), "")
	f.Fuzz(func(t *testing.T, data []byte, binary bool, typ string, expires float64, reason string) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		in := wsauth.DefaultDialect.Inspect(mt, data)
		if in.Reply != nil {
			t.Fatalf("Inspect(%q) asks for a reply: %+v", data, in)
		}
		if in.ExpiresIn < 0 || in.ExpiresIn > wire.Seconds(ptr(10*365*24*3600.0)) {
			t.Fatalf("Inspect(%q): ExpiresIn %v", data, in.ExpiresIn)
		}
		if in.Kind != wsauth.InboundData {
			var m wsauthMessage
			if binary || len(data) > wire.MaxControlSize || json.Unmarshal(data, &m) != nil {
				t.Fatalf("Inspect(%q, binary %v) = %+v: not a protocol message", data, binary, in)
			}
			if want, ok := controlKinds[m.Type]; !ok || want != in.Kind {
				t.Fatalf("Inspect(%q) = %+v for type %q", data, in, m.Type)
			}
			if in.ExpiresIn != wire.Seconds(m.ExpiresIn) && in.Kind != wsauth.InboundRefreshFailed && in.Kind != wsauth.InboundGoingAway {
				t.Fatalf("Inspect(%q): ExpiresIn %v", data, in.ExpiresIn)
			}
		}
		switch in.Kind {
		case wsauth.InboundRefreshFailed, wsauth.InboundGoingAway:
			if in.ExpiresIn != 0 {
				t.Fatalf("Inspect(%q) = %+v", data, in)
			}
		default:
			if in.Message != "" {
				t.Fatalf("Inspect(%q) = %+v: a message without a refusal", data, in)
			}
		}

		// A well-formed message reads as its type says.
		if !utf8.ValidString(typ) || !utf8.ValidString(reason) || math.IsNaN(expires) || math.IsInf(expires, 0) {
			return
		}
		msg, _ := json.Marshal(map[string]any{"type": typ, "expires_in": expires, "reason": reason})
		if len(msg) > wire.MaxControlSize {
			return
		}
		got := wsauth.DefaultDialect.Inspect(wsauth.MessageText, msg)
		want, ok := controlKinds[typ]
		if !ok {
			want = wsauth.InboundData
		}
		if got.Kind != want {
			t.Fatalf("Inspect(%s) = %v, want %v", msg, got.Kind, want)
		}
		switch want {
		case wsauth.InboundAuthOK, wsauth.InboundRefreshOK, wsauth.InboundExpiring:
			if got.ExpiresIn != wire.Seconds(&expires) {
				t.Fatalf("Inspect(%s): ExpiresIn %v, want %v", msg, got.ExpiresIn, wire.Seconds(&expires))
			}
		case wsauth.InboundRefreshFailed, wsauth.InboundGoingAway:
			if got.Message != reason {
				t.Fatalf("Inspect(%s): Message %q", msg, got.Message)
			}
		}
		if got := wsauth.DefaultDialect.Inspect(wsauth.MessageBinary, msg); got.Kind != wsauth.InboundData {
			t.Fatalf("binary %s = %+v", msg, got)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// FuzzDefaultOpen: Open reads nothing, leaves the verdict to the client,
// and writes one auth message carrying the in-band token, or nothing
// without one; the refresh message carries its token the same way.
func FuzzDefaultOpen(f *testing.F) {
	for _, s := range []string{"eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "", `"quoted"<&>`, "\xff\xfe", "tok\u2028en"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		conn := &clienttest.ScriptConn{Script: []string{`{"type":"auth_ok"}`}}
		opened, err := wsauth.DefaultDialect.Open(context.Background(), conn, wsauth.Proof{InBand: token})
		if err != nil {
			t.Fatal(err)
		}
		if opened.Verdict != wsauth.VerdictPending || opened.ExpiresIn != 0 || opened.Pending != nil {
			t.Fatalf("Open = %+v: the verdict is the client's", opened)
		}
		if len(conn.Script) != 1 {
			t.Fatal("Open read a message")
		}
		if token == "" {
			if len(conn.Wrote) != 0 {
				t.Fatalf("wrote %q without a token", conn.Wrote)
			}
			return
		}
		if len(conn.Wrote) != 1 {
			t.Fatalf("wrote %q", conn.Wrote)
		}
		checkTokenMessage(t, conn.Wrote[0], "auth", token)
		refresh, err := wsauth.DefaultDialect.(wsauth.Refresher).RefreshMessage(token)
		if err != nil {
			t.Fatal(err)
		}
		checkTokenMessage(t, string(refresh), "refresh", token)
	})
}

func checkTokenMessage(t *testing.T, msg, typ, token string) {
	t.Helper()
	var m wsauthMessage
	if err := json.Unmarshal([]byte(msg), &m); err != nil || m.Type != typ {
		t.Fatalf("%q is not a %s message: %v", msg, typ, err)
	}
	if utf8.ValidString(token) && m.Token != token {
		t.Fatalf("%s message carries %q, want %q", typ, m.Token, token)
	}
}

// FuzzPlainDialect: PlainDialect exchanges nothing: every message is the
// application's, the upgrade is the verdict, and an in-band token is a
// configuration error, never written anywhere.
func FuzzPlainDialect(f *testing.F) {
	f.Add([]byte(`{"type":"auth_ok"}`), false, "")
	f.Add([]byte(`{"type":"going_away"}`), true, "tok")
	f.Fuzz(func(t *testing.T, data []byte, binary bool, token string) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		if in := wsauth.PlainDialect.Inspect(mt, data); in.Kind != wsauth.InboundData || in.Reply != nil || in.Message != "" || in.ExpiresIn != 0 {
			t.Fatalf("Inspect(%q) = %+v", data, in)
		}
		conn := &clienttest.ScriptConn{Script: []string{string(data)}}
		opened, err := wsauth.PlainDialect.Open(context.Background(), conn, wsauth.Proof{InBand: token})
		if len(conn.Wrote) != 0 || len(conn.Script) != 1 {
			t.Fatalf("Open exchanged messages: wrote %q", conn.Wrote)
		}
		switch {
		case token != "" && err == nil:
			t.Fatal("an in-band token was accepted")
		case token == "" && (err != nil || opened.Verdict != wsauth.VerdictHandshake):
			t.Fatalf("Open = %+v, %v", opened, err)
		}
	})
}

package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/testkit"
)

// The fuzz targets of Socket Mode: the answer of apps.connections.open
// that Auth reads, and the connection-level messages Dialect reads.
// Without -fuzz only the seeds run; run one for a while with, for example,
//
//	go test ./dialect/slack -run '^$' -fuzz '^FuzzAuthAnswer$' -fuzztime 30s

// FuzzOpen: Open confirms exactly on hello as the first message, never
// writes (the credential is the URL: an in-band token, if any, stays
// unsent), and reads one message.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","num_connections":1,"debug_info":{"host":"applink-1"},"connection_info":{"app_id":"A1"}}`,
		`{"type":"disconnect","reason":"too_many_websockets"}`, `{"type":"events_api","envelope_id":"e1"}`,
		`{"type":7}`, `{"reason":"hello"}`, `hello`, "close:1011", ``,
	} {
		f.Add(s, "xapp-in-band")
	}
	f.Fuzz(func(t *testing.T, first, token string) {
		conn := &clienttest.ScriptConn{Script: []string{first, `{"type":"hello"}`}}
		opened, err := Dialect{}.Open(context.Background(), conn, wsauth.Proof{InBand: token})
		if len(conn.Wrote) != 0 {
			t.Fatalf("wrote %q", conn.Wrote)
		}
		if len(conn.Script) != 1 {
			t.Fatalf("read %d messages", 2-len(conn.Script))
		}
		var m message
		hello := json.Unmarshal([]byte(first), &m) == nil && m.Type == "hello"
		switch {
		case hello && (err != nil || opened.Verdict != wsauth.VerdictExplicit):
			t.Fatalf("hello: %+v, %v", opened, err)
		case !hello && err == nil:
			t.Fatalf("confirmed on %q", first)
		}
		var ae *wsauth.AuthError
		if errors.As(err, &ae) {
			t.Fatalf("Slack refuses the URL, not a message: %v", err)
		}
		if opened.ExpiresIn != 0 || opened.Pending != nil || err != nil && opened.Verdict != wsauth.VerdictPending {
			t.Fatalf("Open = %+v, %v", opened, err)
		}
	})
}

// FuzzInspect: every disconnect notice is a going-away request carrying
// its reason, a repeated hello is ignored, and everything else (the event
// envelopes, whatever their payload says) is the application's.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{"type":"disconnect","reason":"warning","debug_info":{"host":"h"}}`, `{"type":"disconnect","reason":"refresh_requested"}`,
		`{"type":"hello"}`, `{"type":"events_api","envelope_id":"e1","payload":{"event":{"type":"disconnect"}}}`,
		`{"type":"disconnect","reason":5}`, `"type" "hello"`, ``,
	} {
		f.Add([]byte(s), false, "disconnect", "warning")
	}
	f.Add([]byte(`{"type":"hello"}`), true, "events_api", "")
	f.Fuzz(func(t *testing.T, data []byte, binary bool, typ, reason string) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		in := Dialect{}.Inspect(mt, data)
		var m message
		parsed := json.Unmarshal(data, &m) == nil
		switch in.Kind {
		case wsauth.InboundData:
		case wsauth.InboundGoingAway:
			if binary || !parsed || m.Type != "disconnect" || in.Message != m.Reason {
				t.Fatalf("Inspect(%q, binary %v) = %+v", data, binary, in)
			}
		case wsauth.InboundIgnore:
			if binary || !parsed || m.Type != "hello" {
				t.Fatalf("Inspect(%q, binary %v) = %+v", data, binary, in)
			}
		default:
			t.Fatalf("Inspect(%q) = %+v: a kind Slack never sends", data, in)
		}
		if in.ExpiresIn != 0 || in.Reply != nil || in.Kind != wsauth.InboundGoingAway && in.Message != "" {
			t.Fatalf("Inspect(%q) = %+v", data, in)
		}

		// Well-formed messages: a notice by its type, and an envelope is
		// data even when its payload has a type of its own.
		if !utf8.ValidString(typ) || !utf8.ValidString(reason) {
			return
		}
		notice, _ := json.Marshal(map[string]any{"type": typ, "reason": reason})
		got := Dialect{}.Inspect(wsauth.MessageText, notice)
		switch typ {
		case "disconnect":
			if got.Kind != wsauth.InboundGoingAway || got.Message != reason {
				t.Fatalf("Inspect(%s) = %+v", notice, got)
			}
		case "hello":
			if got.Kind != wsauth.InboundIgnore {
				t.Fatalf("Inspect(%s) = %+v", notice, got)
			}
		default:
			if got.Kind != wsauth.InboundData {
				t.Fatalf("Inspect(%s) = %+v", notice, got)
			}
		}
		envelope, _ := json.Marshal(map[string]any{"type": "events_api", "envelope_id": reason,
			"payload": map[string]any{"type": typ, "reason": reason}})
		if got := (Dialect{}).Inspect(wsauth.MessageText, envelope); got.Kind != wsauth.InboundData {
			t.Fatalf("Inspect(%s) = %+v: an envelope is the application's", envelope, got)
		}
	})
}

// fuzzAppToken is the bearer token FuzzAuthAnswer's Auth sends.
const fuzzAppToken = "xapp-1-A0FUZZ-0123456789-feedc0ffee"

// FuzzAuthAnswer drives Auth, inside a real client, against an
// apps.connections.open that answers with the fuzzed status and body.
// The client never dials (the provider stops the attempt right after Auth
// returned, with an error that spells out the URL it would have dialed),
// so nothing leaves loopback. Auth hands over a URL exactly when the answer
// is a 2xx {"ok":true,"url":…} with a ws or wss URL that has a host and
// obeys the transport rule; a refusal of the token is an AuthError, other
// errors and statuses are not; and neither the bearer token nor any part
// of the URL's query ever appears in the client's events or its stop cause.
func FuzzAuthAnswer(f *testing.F) {
	var mu sync.Mutex
	var status int
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		w.Write(b)
	}))
	f.Cleanup(srv.Close)

	for _, s := range []string{
		`{"ok":true,"url":"wss://wss-primary.slack.com/link/?ticket=0123-abcd-ef&app_id=A0FUZZ"}`,
		`{"ok":true,"url":"ws://127.0.0.1:9/link/?ticket=t1ck3t"}`,
		`{"ok":true,"url":"ws://wss-primary.slack.com/link/?ticket=t1ck3t"}`,
		`{"ok":true,"url":"https://wss-primary.slack.com/link/?ticket=t1ck3t"}`,
		`{"ok":true,"url":"wss:///link/?ticket=t1ck3t"}`,
		`{"ok":true,"url":"wss://h/%zz?ticket=t1ck3t"}`,
		`{"ok":true}`, `{"ok":false,"error":"invalid_auth"}`, `{"ok":false,"error":"ratelimited"}`,
		`{"ok":false,"error":"` + fuzzAppToken + `"}`, `{"ok":"yes"}`, `<html>`, ``,
	} {
		f.Add(uint16(0), []byte(s))
	}
	f.Add(uint16(1<<15+429), []byte(`{"ok":false,"error":"ratelimited"}`))
	f.Add(uint16(1<<15+401), []byte(`{"error":"`+fuzzAppToken+`"}`))

	f.Fuzz(func(t *testing.T, code uint16, answer []byte) {
		// 1<<15 + s is status s; any other number from 1<<15 up maps into
		// 200-599, and those below to 200.
		st := http.StatusOK
		if s := int(code) - 1<<15; s >= 200 && s <= 599 {
			st = s
		} else if s >= 0 {
			st = 200 + int(code)%400
		}
		mu.Lock()
		status, body = st, answer
		mu.Unlock()

		auth := &Auth{Endpoint: srv.URL, Tokens: wsauth.StaticToken(fuzzAppToken)}
		var dialed *url.URL
		events := testkit.NewLog[wsauth.Event]()
		c, err := wsauth.New("wss://wss-primary.slack.com/link/", &wsauth.Options{
			HTTPClient: srv.Client(),
			Dialect:    Dialect{},
			Auth: wsauth.AuthenticatorFunc(func(ctx context.Context, why wsauth.Reason, hs *wsauth.Handshake) (wsauth.Proof, error) {
				p, err := auth.Prepare(ctx, why, hs)
				if err != nil {
					return p, err
				}
				u := *hs.URL
				dialed = &u
				parts := []string{hs.URL.Scheme, hs.URL.Host, hs.URL.Path, hs.URL.RawQuery}
				for _, vs := range hs.URL.Query() {
					parts = append(parts, vs...)
				}
				return wsauth.Proof{}, fmt.Errorf("fuzz: not dialing %q", parts)
			}),
			Reconnect: wsauth.ReconnectPolicy{Classify: func(wsauth.Ending) wsauth.Action { return wsauth.ActionStop }},
			OnEvent:   events.Add,
		})
		if err != nil {
			t.Fatal(err)
		}
		events.WaitFor(t, 1, clienttest.Kind(wsauth.EventStopped))
		stop := c.Err()
		c.Close()

		var out struct {
			OK    bool   `json:"ok"`
			URL   string `json:"url"`
			Error string `json:"error"`
		}
		decoded := json.Unmarshal(answer, &out) == nil
		var want *url.URL
		if u, err := url.Parse(out.URL); st/100 == 2 && decoded && out.OK && err == nil && u.Host != "" {
			scheme := strings.ToLower(u.Scheme)
			ip := net.ParseIP(u.Hostname())
			loopback := strings.EqualFold(u.Hostname(), "localhost") || ip != nil && ip.IsLoopback()
			if scheme == "wss" || scheme == "ws" && loopback {
				want = u
			}
		}
		switch {
		case want == nil && dialed != nil:
			t.Fatalf("status %d, answer %q: Auth handed over %s", st, answer, dialed)
		case want != nil && dialed == nil:
			t.Fatalf("status %d, answer %q: Auth refused the URL: %v", st, answer, stop)
		case want != nil && dialed.String() != want.String():
			t.Fatalf("Auth handed over %s, Slack said %s", dialed, want)
		}

		var he *wsauth.HTTPError
		if st/100 != 2 && (!errors.As(stop, &he) || he.StatusCode != st) {
			t.Fatalf("status %d: stop cause %v", st, stop)
		}
		var ae *wsauth.AuthError
		refused := st/100 == 2 && decoded && !out.OK && refusals[out.Error]
		if refused != errors.As(stop, &ae) {
			t.Fatalf("answer %q: refusal %v, stop cause %v", answer, refused, stop)
		}

		secrets := redact.Forms(fuzzAppToken)
		if dialed != nil {
			for _, vs := range dialed.Query() {
				for _, v := range vs {
					if len(v) >= redact.MinLen {
						secrets = append(secrets, redact.Forms(v)...)
					}
				}
			}
			if q := dialed.RawQuery; len(q) >= redact.MinLen {
				secrets = append(secrets, q)
			}
		}
		for _, e := range events.All() {
			text := e.String()
			if e.Err != nil {
				text += fmt.Sprintf(" %v %+v", e.Err, e.Err)
			}
			if l := testkit.Leaked(text, redact.Placeholder, secrets...); l != "" {
				t.Fatalf("event %s holds %q", text, l)
			}
		}
		if l := testkit.Leaked(stop.Error(), redact.Placeholder, secrets...); l != "" {
			t.Fatalf("stop cause %v holds %q", stop, l)
		}
	})
}

package centrifugo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/wire"
)

// The fuzz targets of the Centrifugo dialect: the connect exchange, the
// replies and pings after it, and the splitting of batched frames.
// Without -fuzz only the seeds run; run one for a while with, for example,
//
//	go test ./dialect/centrifugo -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s

// connectID is the id of the first command of a fresh Dialect; "$ID" in a
// fuzzed frame stands for it, so that the fuzzer reaches the reply to
// connect without guessing ten digits.
const connectID = ReservedIDs | 1

func withID(frame string) string {
	return strings.ReplaceAll(frame, "$ID", strconv.FormatUint(uint64(connectID), 10))
}

// nonBlankLines are the lines of a frame that carry a message.
func nonBlankLines(frame []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.Split(frame, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// FuzzOpen: Open writes the connect command (with the token, on a reserved
// id) and then only pongs, one for each ping before the reply to connect;
// it succeeds exactly when that reply carries a result, with the ttl as
// the session lifetime; an error reply is a refusal unless temporary; and
// every other line of the frames it read comes back in Pending, in order,
// none lost and none twice.
func FuzzOpen(f *testing.F) {
	for _, seed := range []struct{ token, f1, f2, f3 string }{
		{"cf-token", `{"id":$ID,"connect":{"client":"c1","version":"5.0.0","expires":true,"ttl":300}}`, "", ""},
		{"cf-token", "{}", `{"id":$ID,"connect":{"client":"c1"}}` + "\n" + `{"push":{"channel":"news","pub":{"data":{}}}}`, ""},
		{"", `{"push":{"channel":"a"}}` + "\n{}\n" + `{"id":$ID,"connect":{"expires":true,"ttl":1e300}}` + "\n{}\n", "", ""},
		{"cf-token", `{"id":$ID,"error":{"code":109,"message":"token expired"}}`, "", ""},
		{"cf-token", `{"id":$ID,"error":{"code":100,"message":"internal"}}`, "", ""},
		{"cf-token", `{"id":$ID,"error":{"code":3501,"message":"x","temporary":true}}`, "", ""},
		{"cf-token", `{"id":$ID}`, "", ""},
		{"cf-token", `{"id":1,"connect":{}}`, "\n\n  \n", `{"id":$ID,"connect":{"expires":true,"ttl":-5}}`},
		{"cf-token", "close:3500", "", ""},
		{"\xff", `{"id":"$ID","connect":{}}`, `{"id":$ID,"connect":{"ttl":"x"}}`, `{"id":$ID,"connect":{"expires":true,"ttl":0.5}}`},
	} {
		f.Add(seed.token, seed.f1, seed.f2, seed.f3)
	}
	f.Fuzz(func(t *testing.T, token, f1, f2, f3 string) {
		frames := []string{withID(f1), withID(f2), withID(f3)}
		conn := &clienttest.ScriptConn{Script: slices.Clone(frames)}
		d := &Dialect{ClientName: "fuzz"}
		opened, err := d.Open(context.Background(), conn, wsauth.Proof{InBand: token})

		if len(conn.Wrote) == 0 {
			t.Fatal("the connect command was not written")
		}
		var cmd centCommand
		if json.Unmarshal([]byte(conn.Wrote[0]), &cmd) != nil || cmd.Connect == nil || cmd.ID != connectID {
			t.Fatalf("first write %q is not connect on id %d", conn.Wrote[0], connectID)
		}
		if utf8.ValidString(token) && cmd.Connect.Token != token {
			t.Fatalf("connect carries token %q, want %q", cmd.Connect.Token, token)
		}

		// What the protocol says should happen, line by line.
		var pending [][]byte
		var reply *centReply
		pings := 0
	frames:
		for _, fr := range frames {
			var code int
			if _, err := fmt.Sscanf(fr, "close:%d", &code); err == nil {
				break // ScriptConn's close
			}
			for _, line := range nonBlankLines([]byte(fr)) {
				if reply != nil {
					pending = append(pending, line)
					continue
				}
				if isCentPing(line) {
					pings++
					continue
				}
				var r centReply
				if json.Unmarshal(line, &r) != nil || r.ID != connectID {
					pending = append(pending, line)
					continue
				}
				reply = &r
			}
			if reply != nil {
				break frames
			}
		}

		for _, w := range conn.Wrote[1:] {
			if !bytes.Equal([]byte(w), centPong) {
				t.Fatalf("wrote %q besides connect and pongs", w)
			}
		}
		if got := len(conn.Wrote) - 1; got != pings {
			t.Fatalf("%d pongs for %d pings", got, pings)
		}
		var ae *wsauth.AuthError
		var ce *Error
		switch {
		case reply == nil:
			if err == nil {
				t.Fatalf("confirmed without a reply to connect: %q", frames)
			}
		case reply.Error != nil:
			if !errors.As(err, &ce) || *ce != *reply.Error {
				t.Fatalf("error reply %+v: %v", reply.Error, err)
			}
			temporary := ce.Temporary || ce.Code == codeInternal || ce.Code == codeTooManyRequests
			if temporary == errors.As(err, &ae) {
				t.Fatalf("error reply %+v (temporary %v): %v", ce, temporary, err)
			}
		case reply.Connect == nil:
			if err == nil || errors.As(err, &ae) {
				t.Fatalf("a reply without result or error: %v", err)
			}
		default:
			if err != nil {
				t.Fatalf("connect reply: %v", err)
			}
			if opened.Verdict != wsauth.VerdictExplicit {
				t.Fatalf("verdict %v", opened.Verdict)
			}
			if opened.ExpiresIn != reply.Connect.lifetime() || opened.ExpiresIn < 0 {
				t.Fatalf("ExpiresIn %v for %+v", opened.ExpiresIn, reply.Connect)
			}
			if !slices.Equal(clienttest.Strings(opened.Pending), clienttest.Strings(pending)) {
				t.Fatalf("Pending %q, want %q", opened.Pending, pending)
			}
		}
		if err != nil && (opened.Verdict != wsauth.VerdictPending || opened.Pending != nil) {
			t.Fatalf("an error with %+v", opened)
		}
	})
}

// FuzzInspect: a ping is answered with {}; only replies on the dialect's
// reserved ids are consumed (a refresh result, an error, a late reply);
// replies to the application's own commands (ids below ReservedIDs),
// pushes, binary frames and large messages are always the application's;
// a refresh result's ttl is a sane lifetime.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		`{}`, ` {} `, `{"id":2147483650,"refresh":{"expires":true,"ttl":300}}`,
		`{"id":2147483650,"error":{"code":109,"message":"token expired"}}`, `{"id":2147483649,"connect":{}}`,
		`{"id":5,"refresh":{"expires":true,"ttl":300}}`, `{"id":5,"error":{"code":1}}`,
		`{"push":{"channel":"news","pub":{"data":{"id":2147483650,"refresh":{}}}}}`,
		`{"id":4294967296,"refresh":{}}`, `{"id":2147483650,"refresh":{"expires":true,"ttl":1e308}}`,
	} {
		f.Add([]byte(s), false, uint32(0), 300.0, false)
	}
	f.Add([]byte(`{}`), true, uint32(ReservedIDs), 1.5, true)
	f.Fuzz(func(t *testing.T, data []byte, binary bool, id uint32, ttl float64, failed bool) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		d := &Dialect{}
		in := d.Inspect(mt, data)
		var r centReply
		parsed := json.Unmarshal(data, &r) == nil
		switch in.Kind {
		case wsauth.InboundData:
		case wsauth.InboundReply:
			if binary || !isCentPing(data) || !bytes.Equal(in.Reply, centPong) {
				t.Fatalf("Inspect(%q) = %+v", data, in)
			}
		case wsauth.InboundRefreshOK, wsauth.InboundRefreshFailed, wsauth.InboundIgnore:
			if binary || len(data) > maxControl || !parsed || r.ID < ReservedIDs {
				t.Fatalf("Inspect(%q, binary %v) = %+v: not a reply on a reserved id", data, binary, in)
			}
			if in.Kind == wsauth.InboundRefreshOK && (r.Refresh == nil || in.ExpiresIn != r.Refresh.lifetime()) {
				t.Fatalf("Inspect(%q) = %+v", data, in)
			}
			if in.Kind == wsauth.InboundRefreshFailed && r.Error == nil {
				t.Fatalf("Inspect(%q) = %+v without an error", data, in)
			}
		default:
			t.Fatalf("Inspect(%q) = %+v: a kind Centrifugo never sends", data, in)
		}
		if in.ExpiresIn < 0 || in.ExpiresIn > wire.Seconds(ptr(10*365*24*3600.0)) {
			t.Fatalf("Inspect(%q): ExpiresIn %v", data, in.ExpiresIn)
		}

		// A well-formed reply: consumed exactly when its id is reserved.
		if math.IsNaN(ttl) || math.IsInf(ttl, 0) {
			return
		}
		reply := map[string]any{"id": id, "refresh": map[string]any{"expires": true, "ttl": ttl}}
		if failed {
			reply = map[string]any{"id": id, "error": map[string]any{"code": 109, "message": "token expired"}}
		}
		msg, err := json.Marshal(reply)
		if err != nil {
			t.Fatal(err)
		}
		got := d.Inspect(wsauth.MessageText, msg)
		switch {
		case id < ReservedIDs:
			if got.Kind != wsauth.InboundData {
				t.Fatalf("the application's reply %s was consumed: %+v", msg, got)
			}
		case failed:
			if got.Kind != wsauth.InboundRefreshFailed {
				t.Fatalf("Inspect(%s) = %+v", msg, got)
			}
		default:
			if got.Kind != wsauth.InboundRefreshOK || got.ExpiresIn != wire.Seconds(&ttl) {
				t.Fatalf("Inspect(%s) = %+v, want a lifetime of %v", msg, got, wire.Seconds(&ttl))
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

// FuzzSplitFrame: a binary frame or a text frame without a newline is one
// message, as it is; otherwise the frame's non-blank lines come back, in
// order, each without its newline: nothing is lost, nothing added, and a
// ping or a reply batched with pushes is inspected on its own.
func FuzzSplitFrame(f *testing.F) {
	for _, s := range []string{
		"{}", "{}\n{}", `{"id":2147483650,"refresh":{"ttl":5}}` + "\n" + `{"push":{}}`,
		"\n\n", " \r\n\t", "a\n\nb\n", `{"id":1,"rpc":{"data":"x\ny"}}`, "",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("{}\n{}"), true)
	f.Fuzz(func(t *testing.T, data []byte, binary bool) {
		mt := wsauth.MessageText
		if binary {
			mt = wsauth.MessageBinary
		}
		d := &Dialect{}
		parts := d.SplitFrame(mt, data)
		if binary || bytes.IndexByte(data, '\n') < 0 {
			if len(parts) != 1 || !bytes.Equal(parts[0], data) {
				t.Fatalf("SplitFrame(%q, binary %v) = %q, want the frame itself", data, binary, parts)
			}
			return
		}
		want := nonBlankLines(data)
		if len(parts) != len(want) {
			t.Fatalf("SplitFrame(%q) = %q, want %q", data, parts, want)
		}
		for i := range parts {
			if !bytes.Equal(parts[i], want[i]) || bytes.IndexByte(parts[i], '\n') >= 0 {
				t.Fatalf("SplitFrame(%q) = %q, want %q", data, parts, want)
			}
			// Each part is inspected on its own: a ping among pushes is
			// still answered.
			if isCentPing(parts[i]) && d.Inspect(mt, parts[i]).Kind != wsauth.InboundReply {
				t.Fatalf("the ping %q in %q was not answered", parts[i], data)
			}
		}
	})
}

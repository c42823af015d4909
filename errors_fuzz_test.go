package wsauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/testkit"
)

// The fuzz targets of what the client reads from a server's refusal: the
// Retry-After header and the close frame. Without -fuzz only the seeds run
// (those added here and those under testdata/fuzz); run one for a while
// with, for example,
//
//	go test . -run '^$' -fuzz '^FuzzRetryAfter$' -fuzztime 30s

const maxRetryAfter = maxRetryAfterSeconds * time.Second

// FuzzRetryAfter: whatever the header says, the delay is never negative and
// never above the cap; delay-seconds are exact up to the cap and the cap
// beyond it, however many digits (no overflow into a small delay); an HTTP
// date is the time until it, zero when past.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", " 7 ", "0", "-5", "+5", "9300000000", "18446744073709551616", "1e3", "1.5",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Nov 2094 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "soon", ""} {
		f.Add(s, uint64(120), int64(90))
	}
	f.Add("", uint64(1<<63), int64(-3600))
	f.Add("", uint64(maxRetryAfterSeconds+1), int64(1<<40))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string, secs uint64, ahead int64) {
		check := func(v string) time.Duration {
			d := parseRetryAfter(v, now)
			if d < 0 || d > maxRetryAfter {
				t.Fatalf("parseRetryAfter(%q) = %v", v, d)
			}
			return d
		}
		check(v)
		digits := strconv.FormatUint(secs, 10)
		if d := check(digits); d != time.Duration(min(secs, maxRetryAfterSeconds))*time.Second {
			t.Fatalf("parseRetryAfter(%q) = %v", digits, d)
		}
		if d := check(digits + "0000000000"); d != maxRetryAfter && secs != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, want the cap", digits+"0000000000", d)
		}
		ahead %= 1 << 33 // a date within 272 years: a Duration holds it
		date := now.Add(time.Duration(ahead) * time.Second).Format(http.TimeFormat)
		want := time.Duration(0)
		if ahead > 0 {
			want = min(time.Duration(ahead)*time.Second, maxRetryAfter)
		}
		if d := check(date); d != want {
			t.Fatalf("parseRetryAfter(%q) = %v, want %v", date, d, want)
		}
		// And as a refusal carries it.
		for _, h := range []string{v, digits} {
			resp := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {h}}}
			he := refusal("ticket", resp, nil, nil)
			if he.RetryAfter < 0 || he.RetryAfter > maxRetryAfter || h == digits && he.RetryAfter != check(digits) {
				t.Fatalf("refusal with Retry-After %q: %v", h, he.RetryAfter)
			}
		}
	})
}

// fuzzCloser is a dialect that gives the close codes of 4000-4099 a
// meaning, so that the close target sees CloseMeaning filled in.
type fuzzCloser struct{ Dialect }

func (fuzzCloser) ClassifyClose(code StatusCode, _ string) Action {
	if code >= 4000 && code < 4100 {
		return Action(1 + int(code)%3)
	}
	return ActionDefault
}

// fuzzRawConn is a peer whose read fails with err.
type fuzzRawConn struct{ err error }

func (c fuzzRawConn) Read(context.Context) (MessageType, []byte, error) { return 0, nil, c.err }
func (c fuzzRawConn) Write(context.Context, MessageType, []byte) error  { return c.err }
func (fuzzRawConn) Subprotocol() string                                 { return "" }

// FuzzCloseReason: a server's close frame reaches the dialect (through
// Conn) as a *CloseError with its code and reason as sent, and reaches the
// reconnect policy and the user (describe) with its code, the dialect's
// meaning of the code, and the reason scrubbed of every secret of the
// attempt, in every encoding; other errors pass through Conn unchanged.
func FuzzCloseReason(f *testing.F) {
	for _, seed := range []struct {
		code           uint16
		reason, secret string
	}{
		{1008, "token eyJhbGciOiJIUzI1NiJ9.e30.c2ln expired", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
		{4001, `bad ticket "tk_0123456789"`, "tk_0123456789"},
		{1000, "", "abcd"},
		{4401, "dGtfMDEyMzQ1Njc4OQ", "tk_0123456789"},
		{1011, `pa\"ss`, `pa"ss`},
		{3500, "REDACTED", "DACT"},
		{0, "x", "xxxx"},
	} {
		f.Add(seed.code, seed.reason, seed.secret, false)
	}
	f.Fuzz(func(t *testing.T, code uint16, reason, secret string, wrapped bool) {
		var err error = websocket.CloseError{Code: StatusCode(code), Reason: reason}
		if wrapped {
			err = fmt.Errorf("failed to read frame header: %w", err)
		}
		conn := wsConn{c: fuzzRawConn{err}}
		_, _, rerr := conn.Read(context.Background())
		var ce *CloseError
		if !errors.As(rerr, &ce) || ce.Code != StatusCode(code) || ce.Reason != reason {
			t.Fatalf("Read: %#v, want a CloseError %d %q", rerr, code, reason)
		}
		if werr := conn.Write(context.Background(), MessageText, nil); !errors.As(werr, &ce) {
			t.Fatalf("Write: %#v", werr)
		}
		other := errors.New("i/o timeout")
		if _, _, e := (wsConn{c: fuzzRawConn{other}}).Read(context.Background()); e != other {
			t.Fatalf("Read changed %v to %v", other, e)
		}

		red := &redactor{}
		red.Add(secret)
		c := &Client{dialect: fuzzCloser{DefaultDialect}}
		for _, in := range []error{err, rerr} {
			e := c.describe(PhaseConnected, red, in)
			if e.Code != StatusCode(code) || e.Reason != red.String(reason) {
				t.Fatalf("describe: code %d reason %q", e.Code, e.Reason)
			}
			if want := (fuzzCloser{}).ClassifyClose(e.Code, ""); e.Code != 0 && e.CloseMeaning != want {
				t.Fatalf("describe: meaning %v, want %v", e.CloseMeaning, want)
			}
			if !errors.As(e.Err, &ce) || ce.Code != e.Code || ce.Reason != e.Reason {
				t.Fatalf("describe: Err %#v", e.Err)
			}
			if len(secret) < redact.MinLen {
				continue
			}
			forms := redact.Forms(secret)
			if l := testkit.Leaked(e.Reason, redact.Placeholder, forms...); l != "" {
				t.Fatalf("reason %q holds %q", e.Reason, l)
			}
			// The error is the fixed words for the code and the reason,
			// quoted: the reason read back from it holds no secret either.
			// (When the words themselves held the "secret", the scrubber
			// took it out of them, which is no leak.)
			head := (&CloseError{Code: e.Code}).Error()
			rest, ok := strings.CutPrefix(e.Err.Error(), head)
			if !ok || rest == "" {
				continue
			}
			quoted, ok := strings.CutPrefix(rest, ": ")
			shown, err := strconv.Unquote(quoted)
			if !ok || err != nil {
				continue // a replacement inside an escape: nothing to read back
			}
			if l := testkit.Leaked(shown, redact.Placeholder, forms...); l != "" {
				t.Fatalf("error %q shows the reason %q, which holds %q", e.Err, shown, l)
			}
		}
	})
}

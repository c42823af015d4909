package redact

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth/internal/testkit"
)

// The fuzz targets of the redactor, which every printed error, event and
// log line of the client and the command goes through. Without -fuzz only
// the seeds run (those added here and those under testdata/fuzz); run one
// for a while with, for example,
//
//	go test ./internal/redact -run '^$' -fuzz '^FuzzString$' -fuzztime 30s

// fuzzSecrets are seeds shaped like what the client registers: JWTs,
// tickets, cookie values, passwords with quotes and HTML, non-ASCII.
var fuzzSecrets = []string{
	"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5fQ.c2ln", "tk_0123456789", `pa"ss<w>rd&`, "sess=abc;def",
	"pässwörd€", "a b+c/d=", "\xff\xfeinvalid", "REDACTED", "DACT", "abcd", "x",
}

// leak reports a registered form of secret that out still holds.
func leak(out, secret string) string {
	if len(secret) < MinLen {
		return ""
	}
	return testkit.Leaked(out, Placeholder, Forms(secret)...)
}

// FuzzForms: every form Add registers is at least MinLen long, listed
// once, and the forms are exactly the encodings the doc comment names.
func FuzzForms(f *testing.F) {
	for _, s := range fuzzSecrets {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		forms := Forms(v)
		for i, form := range forms {
			if len(form) < MinLen {
				t.Fatalf("form %q of %q is shorter than MinLen", form, v)
			}
			if slices.Contains(forms[i+1:], form) {
				t.Fatalf("form %q listed twice", form)
			}
		}
		want := []string{v, url.QueryEscape(v), url.PathEscape(v),
			base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
			base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v))}
		if j, err := json.Marshal(v); err == nil {
			want = append(want, string(j[1:len(j)-1]))
		}
		for _, w := range want {
			if len(w) >= MinLen && !slices.Contains(forms, w) {
				t.Fatalf("Forms(%q) lacks %q", v, w)
			}
		}
	})
}

// FuzzString: after Add, no registered form of a secret survives String,
// wherever it sits in the text and whatever else was registered; text
// without a secret comes back unchanged; a nil set is the identity.
func FuzzString(f *testing.F) {
	for i, s := range fuzzSecrets {
		f.Add("the server echoed ", s, " back", fuzzSecrets[(i+1)%len(fuzzSecrets)])
	}
	f.Add("", "abcd", "", "abcdef")
	f.Add("REDACT", "EDACTED", "D", "CTEDx")
	f.Fuzz(func(t *testing.T, prefix, secret, suffix, other string) {
		var s Set
		s.Add(secret, other)
		var nilSet *Set
		for _, form := range Forms(secret) {
			in := prefix + form + suffix
			out := s.String(in)
			if l := leak(out, secret); l != "" {
				t.Fatalf("String(%q) = %q still holds %q", in, out, l)
			}
			if l := leak(out, other); l != "" {
				t.Fatalf("String(%q) = %q still holds %q", in, out, l)
			}
			if got := nilSet.String(in); got != in {
				t.Fatalf("a nil set changed %q to %q", in, got)
			}
		}
		plain := prefix + suffix
		holds := func(v string) bool {
			return len(v) >= MinLen && slices.ContainsFunc(Forms(v), func(f string) bool { return strings.Contains(plain, f) })
		}
		if !holds(secret) && !holds(other) && s.String(plain) != plain {
			t.Fatalf("String(%q) = %q, with no secret in it", plain, s.String(plain))
		}
	})
}

// FuzzCut: Cut never exceeds n, never splits a rune (the result is valid
// UTF-8), is the longest such prefix of the scrubbed text, and never holds a
// secret, not even one cut in half at the end; a nil set only cuts.
func FuzzCut(f *testing.F) {
	f.Add(strings.Repeat("x", 500)+"0123456789abcdef-secret"+strings.Repeat("y", 100), 512, "0123456789abcdef-secret")
	f.Add("héllo wörld €€€", 5, "wörld")
	f.Add("\xff\xfe\xfd token=abcd", 3, "abcd")
	f.Add("", 0, "abcd")
	f.Add("日本語のテキスト", 7, "テキスト")
	f.Fuzz(func(t *testing.T, v string, n int, secret string) {
		if n < 0 {
			// Callers pass constants; a negative n is outside the contract.
			n = -(n + 1)
		}
		n %= len(v) + 8
		var s Set
		s.Add(secret)
		full := strings.ToValidUTF8(s.String(v), "?")
		for _, set := range []*Set{&s, nil} {
			out := set.Cut(v, n)
			if len(out) > n {
				t.Fatalf("Cut(%q, %d) = %q: %d bytes", v, n, out, len(out))
			}
			if !utf8.ValidString(out) {
				t.Fatalf("Cut(%q, %d) = %q: not valid UTF-8", v, n, out)
			}
			whole := full
			if set == nil {
				whole = strings.ToValidUTF8(v, "?")
			}
			if !strings.HasPrefix(whole, out) {
				t.Fatalf("Cut(%q, %d) = %q: not a prefix of %q", v, n, out, whole)
			}
			if len(out) < len(whole) {
				if _, size := utf8.DecodeRuneInString(whole[len(out):]); len(out)+size <= n {
					t.Fatalf("Cut(%q, %d) = %q: the next rune of %q would have fitted", v, n, out, whole)
				}
			}
		}
		// Replacing invalid bytes with "?" after scrubbing can spell a
		// secret that itself contains "?"; the server never sent that
		// secret, so only secrets without "?" are held to this.
		if !strings.Contains(secret, "?") {
			if l := leak(s.Cut(v, n), secret); l != "" {
				t.Fatalf("Cut(%q, %d) holds %q", v, n, l)
			}
		}
	})
}

// FuzzURL: URL drops user info, shows the values of registered and
// credential-like parameters as the placeholder, keeps the other
// parameters, and never prints a registered secret; a nil set still
// hides user info and credential-like parameters.
func FuzzURL(f *testing.F) {
	for _, seed := range []struct{ raw, secret, param string }{
		{"wss://api.example.com/ws?ticket=tk_0123456789&room=1", "tk_0123456789", "ticket"},
		{"wss://user:pa55word@api.example.com/ws?x=1", "pa55word", "sig"},
		{"ws://127.0.0.1:8080/ws?access_token=abc.def.ghi&api_key=k3y-k3y", "zzzz", "p"},
		{"wss://h/ws?AUTH=a%20b%2Bc&token=1&token=2", "a b+c", "Auth"},
		{"wss://h/p%2Fq/tk_0123456789?a=tk_0123456789#frag", "tk_0123456789", "x"},
		{"wss://h/ws?a=1;b=2&c=%zz", "abcd", "c"},
		{"https://h/ws?code=0xdeadbeef&state=s", "0xdeadbeef", ""},
	} {
		f.Add(seed.raw, seed.secret, seed.param)
	}
	f.Fuzz(func(t *testing.T, raw, secret, param string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		var s Set
		s.Add(secret)
		s.AddParam(param)
		s.AddURL(u)
		for _, set := range []*Set{&s, nil} {
			out := set.URL(u)
			if set != nil {
				if l := leak(out, secret); l != "" {
					t.Fatalf("URL(%q) = %q holds %q", raw, out, l)
				}
				if p, ok := u.User.Password(); ok {
					if l := leak(out, p); l != "" {
						t.Fatalf("URL(%q) = %q holds the password", raw, out)
					}
				}
			}
			got, err := url.Parse(out)
			if err != nil {
				t.Fatalf("URL(%q) = %q does not parse: %v", raw, out, err)
			}
			if got.User != nil {
				t.Fatalf("URL(%q) = %q keeps user info", raw, out)
			}
			if set != &s {
				// Without secrets the output is exact: check the query.
				for k, vs := range u.Query() {
					gotVs := got.Query()[k]
					if len(gotVs) != len(vs) {
						t.Fatalf("URL(%q) = %q: parameter %q has %d values, want %d", raw, out, k, len(gotVs), len(vs))
					}
					for i, v := range gotVs {
						if CredentialParam(k) && v != Placeholder {
							t.Fatalf("URL(%q) = %q shows credential parameter %q", raw, out, k)
						}
						if !CredentialParam(k) && v != vs[i] {
							t.Fatalf("URL(%q) = %q changed %q=%q to %q", raw, out, k, vs[i], v)
						}
					}
				}
				continue
			}
			for k := range u.Query() {
				if !CredentialParam(k) && !strings.EqualFold(k, param) {
					continue
				}
				// The name itself may have been scrubbed (a name that
				// contains the secret): then the value went with it. A
				// secret that overlaps the placeholder's letters gets the
				// placeholder scrubbed again ("REDACTED" with the secret
				// "DACT" reads "REREDACTEDED"): still no value shows.
				for _, v := range got.Query()[k] {
					if !strings.Contains(v, Placeholder) {
						t.Fatalf("URL(%q) = %q shows %q=%q", raw, out, k, v)
					}
				}
			}
		}
	})
}

// timeoutErr is a net.Error-like error that says it timed out.
type timeoutErr struct{ msg string }

func (e timeoutErr) Error() string { return e.msg }
func (e timeoutErr) Timeout() bool { return true }

var errKept = errors.New("a sentinel the caller keeps")

// FuzzError: Error never returns text with a secret, returns an error
// without one as it is (so errors.Is and errors.As keep working), keeps
// the errors the caller asks for, cancellation and Timeout, and rebuilds
// a *url.Error around a redacted URL; a nil set is the identity.
func FuzzError(f *testing.F) {
	for _, seed := range []struct {
		msg, secret, rawURL string
		kind                uint8
	}{
		{"server said: tk_0123456789 is bad", "tk_0123456789", "wss://h/ws?ticket=tk_0123456789", 0},
		{"dial failed", "tk_0123456789", "wss://h/ws?ticket=tk_0123456789", 2},
		{`refused "pa\"ss"`, `pa"ss`, "https://u:pa%22ss@h/login", 1},
		{"i/o timeout near abcd", "abcd", "ws://127.0.0.1/ws", 3},
		{"nothing secret", "abcd", "::bad url", 2},
	} {
		f.Add(seed.msg, seed.secret, seed.rawURL, seed.kind)
	}
	f.Fuzz(func(t *testing.T, msg, secret, rawURL string, kind uint8) {
		var err error
		switch kind % 4 {
		case 0:
			err = errors.New(msg)
		case 1:
			err = fmt.Errorf("%s: %w", msg, context.Canceled)
		case 2:
			err = &url.Error{Op: "Get", URL: rawURL, Err: errors.New(msg)}
		case 3:
			err = fmt.Errorf("read: %w", timeoutErr{msg})
		}
		var s Set
		s.Add(secret)
		if u, perr := url.Parse(rawURL); perr == nil {
			s.AddURL(u)
		}
		var nilSet *Set
		if nilSet.Error(err) != err {
			t.Fatalf("a nil set changed %v", err)
		}
		out := s.Error(err, errKept)
		text := out.Error()
		secrets := []string{secret}
		if u, perr := url.Parse(rawURL); perr == nil {
			if p, ok := u.User.Password(); ok {
				secrets = append(secrets, p)
			}
			for k, vs := range u.Query() {
				if CredentialParam(k) {
					secrets = append(secrets, vs...)
				}
			}
		}
		for _, sec := range secrets {
			// url.Error quotes its URL; quoting can spell a secret made of
			// escapes that the input never held, which is no leak.
			if l := leak(text, sec); l != "" && leak(err.Error(), sec) != "" {
				t.Fatalf("Error(%q) = %q holds %q", err.Error(), text, l)
			}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			var oe *url.Error
			if !errors.As(out, &oe) {
				t.Fatalf("Error(%#v) = %#v: not a *url.Error", err, out)
			}
			if pu, perr := url.Parse(oe.URL); perr == nil && pu.User != nil {
				t.Fatalf("Error kept the user info of %q: %q", ue.URL, oe.URL)
			}
			return
		}
		if s.String(err.Error()) == err.Error() {
			if out != err {
				t.Fatalf("Error(%v) replaced an error that held no secret", err)
			}
			return
		}
		if !errors.Is(out, errKept) {
			t.Fatalf("Error(%v) lost the error the caller keeps", err)
		}
		if errors.Is(err, context.Canceled) != errors.Is(out, context.Canceled) {
			t.Fatalf("Error(%v) changed errors.Is(context.Canceled)", err)
		}
		var te interface{ Timeout() bool }
		if errors.As(err, &te) {
			var ot interface{ Timeout() bool }
			if !errors.As(out, &ot) || !ot.Timeout() {
				t.Fatalf("Error(%v) lost Timeout", err)
			}
		}
	})
}

// Package redact scrubs credentials out of the text the client and the
// command produce: errors, events, log lines and URLs. One Set holds the
// secrets of one connection attempt (or one run of the command); every
// secret is registered in each encoding it may travel or be echoed in, so
// that a server quoting it JSON-escaped or query-escaped does not get it
// printed.
package redact

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Placeholder replaces every secret.
const Placeholder = "REDACTED"

// MinLen keeps a one- or two-character "secret" from turning every message
// into confetti; shorter values are not registered.
const MinLen = 4

// Set is a set of secrets and of query parameters whose values are
// secrets. The zero value is empty and ready; a nil *Set redacts nothing.
// It is safe for concurrent use.
//
// Registering a secret costs next to nothing: its encodings are worked
// out the first time the set scrubs something, because most connection
// attempts succeed and never print a word.
type Set struct {
	mu      sync.Mutex
	added   []string // secrets as registered; first holds the first few
	first   [2]string
	forms   []string // every form of added, longest first; stale while pending
	pending bool     // added holds secrets whose forms are not worked out
	params  []string
}

// Add registers secrets, each in the forms it travels or is echoed in:
// as it is, query- and path-escaped, JSON-escaped (with and without HTML
// escaping), Go-quoted, and base64 (standard and URL alphabets, padded or
// not).
func (s *Set) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) >= MinLen && !slices.Contains(s.added, v) {
			if s.added == nil {
				s.added = s.first[:0]
			}
			s.added = append(s.added, v)
			s.pending = true
		}
	}
}

// secretForms returns every form of every secret, longest first, working
// them out if secrets were added since the last call. s.mu is held.
func (s *Set) secretForms() []string {
	if !s.pending {
		return s.forms
	}
	s.forms = s.forms[:0]
	for _, v := range s.added {
		for _, form := range Forms(v) {
			if !slices.Contains(s.forms, form) {
				s.forms = append(s.forms, form)
			}
		}
	}
	// Longest first, so that a secret containing another is scrubbed whole.
	slices.SortStableFunc(s.forms, func(a, b string) int { return len(b) - len(a) })
	s.pending = false
	return s.forms
}

// Forms returns v in every encoding Add registers.
func Forms(v string) []string {
	forms := []string{v, url.QueryEscape(v), url.PathEscape(v)}
	if q := strconv.Quote(v); len(q) > 2 {
		forms = append(forms, q[1:len(q)-1]) // as %q and Go's errors print it
	}
	if j, err := json.Marshal(v); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		j := strings.TrimSpace(b.String())
		forms = append(forms, j[1:len(j)-1])
	}
	raw := []byte(v)
	forms = append(forms,
		base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw))
	var out []string
	for _, f := range forms {
		if len(f) >= MinLen && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// AddParam registers query parameters whose values are credentials: URL
// shows them as the placeholder.
func (s *Set) AddParam(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if !slices.ContainsFunc(s.params, func(p string) bool { return strings.EqualFold(p, n) }) {
			s.params = append(s.params, n)
		}
	}
}

// AddURL registers the credentials a URL carries on its own: the values
// of its credential-like query parameters (see CredentialParam) and its
// password.
func (s *Set) AddURL(u *url.URL) {
	if u == nil {
		return
	}
	if p, ok := u.User.Password(); ok {
		s.Add(p)
	}
	if u.RawQuery == "" {
		return
	}
	for k, vs := range u.Query() {
		if CredentialParam(k) {
			s.AddParam(k)
			s.Add(vs...)
		}
	}
}

// credentialWords are the parts of a query parameter's name that say its
// value is a credential.
var credentialWords = []string{"token", "ticket", "secret", "password", "passwd", "key", "auth", "sig", "session", "jwt", "credential", "code"}

// CredentialParam reports whether a query parameter's name says its value
// is a credential: token, access_token, api_key, ticket, sig, … Names are
// compared without case; over-redacting an innocent parameter costs only
// a placeholder in an error message.
func CredentialParam(name string) bool {
	n := strings.ToLower(name)
	return slices.ContainsFunc(credentialWords, func(w string) bool { return strings.Contains(n, w) }) || n == "pwd"
}

// String replaces every registered secret in v.
func (s *Set) String(v string) string {
	if s == nil {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.secretForms() {
		if strings.Contains(v, sec) {
			v = strings.ReplaceAll(v, sec, Placeholder)
		}
	}
	return v
}

// Cut scrubs v and then cuts it to at most n bytes, on a rune boundary:
// scrubbing first, so that a secret cut in half is never left behind.
func (s *Set) Cut(v string, n int) string {
	n = max(n, 0)
	v = strings.ToValidUTF8(s.String(v), "?")
	if len(v) <= n {
		return v
	}
	for n > 0 && !runeStart(v[n]) {
		n--
	}
	return v[:n]
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// URL returns u as a string without user info, with the values of
// credential parameters (registered or credential-like by name) replaced
// and every registered secret scrubbed.
func (s *Set) URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		for k, vs := range q {
			if s.isParam(k) || CredentialParam(k) {
				for i := range vs {
					vs[i] = Placeholder
				}
			}
		}
		c.RawQuery = q.Encode()
	}
	return s.String(c.String())
}

func (s *Set) isParam(name string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.params, func(p string) bool { return strings.EqualFold(p, name) })
}

// Error returns err with every secret scrubbed. When its text holds no
// secret, err is returned as it is, so errors.Is and errors.As keep
// working. A *url.Error (whose text holds the full URL) is rebuilt with a
// redacted URL around its scrubbed cause. Any other error that mentions a
// secret becomes an error with the scrubbed text that unwraps to keep
// (errors the caller wants reachable, such as scrubbed copies of its own
// types and the sentinels err matched), to context.Canceled or
// context.DeadlineExceeded when err was one, and that keeps err's
// Timeout; never to err itself.
func (s *Set) Error(err error, keep ...error) error {
	if err == nil || s == nil {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		safe := Placeholder
		if u, perr := url.Parse(ue.URL); perr == nil {
			safe = s.URL(u)
		}
		return &url.Error{Op: ue.Op, URL: safe, Err: s.Error(ue.Err, keep...)}
	}
	msg := err.Error()
	clean := s.String(msg)
	if clean == msg {
		return err
	}
	re := &scrubbed{msg: clean, causes: keep}
	switch {
	case errors.Is(err, context.Canceled):
		re.causes = append(re.causes, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		re.causes = append(re.causes, context.DeadlineExceeded)
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) {
		re.timeout = t.Timeout()
	}
	return re
}

// scrubbed stands in for an error whose text held a secret.
type scrubbed struct {
	msg     string
	causes  []error
	timeout bool
}

func (e *scrubbed) Error() string   { return e.msg }
func (e *scrubbed) Timeout() bool   { return e.timeout }
func (e *scrubbed) Unwrap() []error { return e.causes }

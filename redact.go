package wsauth

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
)

const redacted = "REDACTED"

// Secret is a credential string whose LogValue and String hide it, so that
// handing one to a logger by mistake prints nothing useful to an attacker.
type Secret string

// String returns a fixed placeholder, never the secret.
func (s Secret) String() string { return redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return redacted }

// redactor scrubs the credentials of one connection attempt out of the
// strings and errors the client produces. Providers register every secret
// they put on the wire (Handshake.AddSecret) and every query parameter that
// carries one (Handshake.AddSecretParam).
//
// A redactor is safe for concurrent use: the refresher adds the secrets of
// a refresh while the connection's writer may be redacting an error.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
	params  []string
}

// minSecretLen keeps a one- or two-character "secret" from turning every
// error message into confetti.
const minSecretLen = 4

func (r *redactor) addSecret(s ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range s {
		if len(v) >= minSecretLen {
			r.secrets = append(r.secrets, v)
			// Query encoding changes some characters; scrub that form too.
			if e := url.QueryEscape(v); e != v {
				r.secrets = append(r.secrets, e)
			}
		}
	}
	// Longest first, so that a secret containing another is scrubbed whole.
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

func (r *redactor) addParam(p ...string) {
	r.mu.Lock()
	r.params = append(r.params, p...)
	r.mu.Unlock()
}

// String replaces every registered secret in s.
func (r *redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// URL returns u as a string with the values of credential parameters and
// any registered secret replaced, and no user info.
func (r *redactor) URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		for k, vs := range q {
			for i := range vs {
				if r.isParam(k) {
					vs[i] = redacted
				}
			}
		}
		c.RawQuery = q.Encode()
	}
	return r.String(c.String())
}

func (r *redactor) isParam(name string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.params {
		if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// Error returns err with every secret scrubbed. When the text holds no
// secret the error is returned as it is, so errors.Is and errors.As keep
// working. A *url.Error (whose text holds the full URL with its query) is
// rebuilt with a redacted URL around its scrubbed cause. Any other error
// that mentions a secret becomes a redactedError that keeps only the
// classification of the original (timeout, temporary, context), never its
// text.
func (r *redactor) Error(err error) error {
	if err == nil || r == nil {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		u, perr := url.Parse(ue.URL)
		safeURL := redacted
		if perr == nil {
			safeURL = r.URL(u)
		}
		return &url.Error{Op: ue.Op, URL: safeURL, Err: r.Error(ue.Err)}
	}
	msg := err.Error()
	clean := r.String(msg)
	if clean == msg {
		return err
	}
	re := &redactedError{msg: clean}
	switch {
	case errors.Is(err, context.Canceled):
		re.is = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		re.is = context.DeadlineExceeded
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) {
		re.timeout = t.Timeout()
	}
	return re
}

// redactedError stands in for an error whose text held a secret.
type redactedError struct {
	msg     string
	is      error
	timeout bool
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Timeout() bool { return e.timeout }
func (e *redactedError) Unwrap() error { return e.is }

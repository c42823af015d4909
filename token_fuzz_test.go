package wsauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/testkit"
)

// The fuzz targets of what the token cache reads: a token endpoint's
// refusal and a JWT's exp claim. Without -fuzz only the seeds run (those
// added here and those under testdata/fuzz); run one for a while with, for
// example,
//
//	go test . -run '^$' -fuzz '^FuzzJWTExpiry$' -fuzztime 30s

// FuzzTokenEndpointError: an OAuth 2.0 token endpoint's refusal becomes an
// *HTTPError of op "token" with its status, a bounded Retry-After, and at
// most 512 bytes of its body, valid UTF-8, with the cache's last token
// (access and refresh) scrubbed in every encoding; only 401 and 403 count
// as a rejected credential; the cache returns it wrapped, and any other
// error of the source as it is.
func FuzzTokenEndpointError(f *testing.F) {
	for _, seed := range []struct {
		status          int
		body, retry     string
		access, refresh string
	}{
		{401, `{"error":"invalid_client"}`, "", "at-0123456789", "rt-0123456789"},
		{400, `{"error":"invalid_grant","error_description":"refresh token rt-0123456789 revoked"}`, "", "at-0123456789", "rt-0123456789"},
		{503, `busy`, "120", "at", ""},
		{429, strings.Repeat("é", 600) + "at-0123456789", "9300000000", "at-0123456789", ""},
		{500, strings.Repeat("x", 510) + "at-0123456789", "", "at-0123456789", ""},
		{403, `{"token":"YXQtMDEyMzQ1Njc4OQ"}`, "Wed, 21 Oct 2015 07:28:00 GMT", "at-0123456789", ""},
		{200, "\xff\xfe", "-1", "", ""},
	} {
		f.Add(seed.status, []byte(seed.body), seed.retry, seed.access, seed.refresh)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte, retry, access, refresh string) {
		if status < 0 {
			status = -(status + 1)
		}
		status = 100 + status%900
		resp := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {retry}}}
		known := &oauth2.Token{AccessToken: access, RefreshToken: refresh, Expiry: time.Now().Add(-time.Hour)}
		check := func(err error, secrets ...string) {
			var he *HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("%T %v: not an HTTPError", err, err)
			}
			if he.Op != "token" || he.StatusCode != status || he.Rejected() != (status == 401 || status == 403) {
				t.Fatalf("%+v for status %d", he, status)
			}
			if he.RetryAfter < 0 || he.RetryAfter > maxRetryAfter {
				t.Fatalf("RetryAfter %v for %q", he.RetryAfter, retry)
			}
			if len(he.Body) > maxErrorBody || !utf8.ValidString(he.Body) {
				t.Fatalf("Body %q: %d bytes", he.Body, len(he.Body))
			}
			// The message is the HTTPError's own, which prints its fields:
			// the body is the one that could hold a secret.
			if !strings.HasSuffix(err.Error(), he.Error()) {
				t.Fatalf("%q is not the HTTPError's message %q", err, he)
			}
			for _, secret := range secrets {
				if len(secret) < redact.MinLen {
					continue
				}
				if l := testkit.Leaked(he.Body, redact.Placeholder, redact.Forms(secret)...); l != "" {
					t.Fatalf("Body %q holds %q", he.Body, l)
				}
			}
		}
		re := &oauth2.RetrieveError{Response: resp, Body: body}
		check(tokenEndpointError(re, known), access, refresh)

		// Through the cache: the token it replaces is the one it scrubs.
		calls := 0
		if access == "" {
			calls = 1 // no token to replace: the first call is refused
		}
		cache := NewTokenCache(TokenFunc(func(context.Context) (*oauth2.Token, error) {
			calls++
			if calls == 1 {
				return known, nil
			}
			return nil, re
		}), 0)
		if access != "" {
			if _, err := cache.TokenContext(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		_, err := cache.TokenContext(context.Background())
		if access == "" {
			check(err) // the cache knew no token
		} else {
			check(err, access, refresh)
		}

		other := errors.New("dial tcp: connection refused")
		if got := tokenEndpointError(other, known); got != other {
			t.Fatalf("tokenEndpointError changed %v to %v", other, got)
		}
		if got := tokenEndpointError(&oauth2.RetrieveError{Body: body}, known); !errors.As(got, new(*oauth2.RetrieveError)) {
			t.Fatalf("a RetrieveError without a response became %v", got)
		}
	})
}

// maxJWTExp is the largest exp jwtExpiry takes for a time: past it the
// claim is not meant.
const maxJWTExp = 1 << 40

// FuzzJWTExpiry: jwtExpiry never panics, and returns zero or a time whose
// Unix seconds are in (0, 2^40]; a compact JWT with a numeric exp in that
// range gives exactly that second, with or without base64 padding, and
// anything that is not three dot-separated parts gives zero.
func FuzzJWTExpiry(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2ln", "a.b.c", "a.b", "a.b.c.d", "..", "opaque-token",
		"eyJhbGciOiJub25lIn0.eyJleHAiOiIxNzAwMDAwMDAwIn0.", "x.eyJleHAiOjEuNWUxMH0.y", "x.eyJleHAiOi0xfQ.y",
		"x.eyJleHAiOjFlMzA4fQ==.y", "x.e30.y", "x.bnVsbA.y",
	} {
		f.Add(s, "1700000000", `{"alg":"HS256"}`, "c2ln", false)
	}
	f.Add("", "1.0e12", `{}`, "", true)
	f.Add("", `"1700000000"`, `{}`, "sig", false)
	f.Add("", "-0", `{}`, "sig", true)
	f.Fuzz(func(t *testing.T, s, exp, header, sig string, pad bool) {
		valid := func(got time.Time, in string) {
			if !got.IsZero() && (got.Unix() <= 0 || got.Unix() > maxJWTExp) {
				t.Fatalf("jwtExpiry(%q) = %v", in, got)
			}
		}
		valid(jwtExpiry(s), s)
		if strings.Count(s, ".") != 2 && !jwtExpiry(s).IsZero() {
			t.Fatalf("jwtExpiry(%q) = %v: not a compact JWT", s, jwtExpiry(s))
		}

		enc := base64.RawURLEncoding
		if pad {
			enc = base64.URLEncoding
		}
		sig = strings.ReplaceAll(sig, ".", "")
		tok := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(`{"exp":`+exp+`}`)) + "." + sig
		got := jwtExpiry(tok)
		valid(got, tok)
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || n <= 0 || n > maxJWTExp || strconv.FormatInt(n, 10) != exp {
			return
		}
		if got.Unix() != n {
			t.Fatalf("jwtExpiry(%q) = %v, want exp %d", tok, got, n)
		}
	})
}

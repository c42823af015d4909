package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/testkit"
)

// The fuzz targets of the credential providers' handling of what they
// read or write: a login body's secrets, a login answer's cookies, and a
// credential put in the URL's query. Without -fuzz only the seeds run
// (those added here and those under testdata/fuzz); run one for a while
// with, for example,
//
//	go test . -run '^$' -fuzz '^FuzzLoginAnswer$' -fuzztime 30s

// FuzzLoginSecrets: the secrets of a login body are exactly its string
// values, at any depth (none for a body that is not JSON), and
// CookieAuth registers each of them before anything goes on the wire, so
// that a refusal echoing the password prints it as REDACTED.
func FuzzLoginSecrets(f *testing.F) {
	for _, seed := range []struct{ body, k1, v1, k2, v2 string }{
		{`{"username":"demo","password":"hunter22"}`, "username", "alice", "password", `pa"ss<w>rd`},
		{`{"token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln","remember":true,"n":5}`, "token", "t0k3n-t0k3n", "otp", "123456"},
		{`["hunter22"]`, "a", "b", "a", "c"},
		{`{"a":"x","a":"y"}`, "user", "\u2028\u00e9", "pw", "\xff\xfe"},
		{`null`, "", "", "", ""},
		{`{"user":{"password":"nested"}}`, "k", "v", "k2", "v2v2"},
	} {
		f.Add([]byte(seed.body), seed.k1, seed.v1, seed.k2, seed.v2)
	}
	f.Fuzz(func(t *testing.T, body []byte, k1, v1, k2, v2 string) {
		checkLoginSecrets(t, body)
		for _, s := range []string{k1, v1, k2, v2} {
			if !utf8.ValidString(s) {
				return
			}
		}
		if k1 == k2 {
			return
		}
		built, err := json.Marshal(map[string]any{k1: v1, k2: v2})
		if err != nil {
			t.Fatal(err)
		}
		got := loginSecrets(built)
		if !slices.Contains(got, v1) || !slices.Contains(got, v2) || len(got) != 2 {
			t.Fatalf("loginSecrets(%s) = %q", built, got)
		}
	})
}

// checkLoginSecrets compares loginSecrets with an independent reading of
// body, and checks that CookieAuth registers them.
func checkLoginSecrets(t *testing.T, body []byte) {
	t.Helper()
	got := loginSecrets(body)
	// An independent reading: every string token of the body that is not
	// an object's key, at any depth (duplicate keys are decoded last-wins,
	// as encoding/json does, so a body with them is left to Unmarshal).
	var want []string
	if json.Valid(body) && !hasDuplicateKeys(body) {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		var inObject []bool // per open container: an object?
		expectKey := false
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{':
					inObject = append(inObject, true)
					expectKey = true
				case '[':
					inObject = append(inObject, false)
					expectKey = false
				default:
					inObject = inObject[:len(inObject)-1]
					expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
				}
				continue
			case string:
				if !expectKey {
					want = append(want, v)
				}
			}
			if len(inObject) > 0 && inObject[len(inObject)-1] {
				expectKey = !expectKey
			}
		}
	} else {
		var v any
		if json.Unmarshal(body, &v) == nil {
			want = loginSecrets(body)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("loginSecrets(%q) = %q, want %q", body, got, want)
	}

	// No LoginURL and an empty jar: Prepare registers and then refuses,
	// without a request.
	hs := fuzzHandshake(t, "wss://api.example.com/ws", nil)
	a := &CookieAuth{LoginBody: body}
	if _, err := a.Prepare(context.Background(), ReasonInitial, hs); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("Prepare without a cookie: %v", err)
	}
	for _, s := range want {
		if len(s) < redact.MinLen {
			continue
		}
		echo := "login refused for " + s
		if l := testkit.Leaked(hs.red.String(echo), redact.Placeholder, redact.Forms(s)...); l != "" {
			t.Fatalf("%q printed as %q", s, hs.red.String(echo))
		}
	}
}

// fuzzPassword is the password of FuzzLoginAnswer's login body.
const fuzzPassword = `hunter2"<&>-fuzz`

// cookieRecorder is a transport that keeps the Set-Cookie lines the
// client received, as the client's parser sees them.
type cookieRecorder struct {
	http.RoundTripper
	mu  sync.Mutex
	got []string
}

func (c *cookieRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.RoundTripper.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.got = append(c.got, resp.Header.Values("Set-Cookie")...)
		c.mu.Unlock()
	}
	return resp, err
}

func (c *cookieRecorder) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	return got
}

// FuzzLoginAnswer: CookieAuth against a login endpoint that answers with
// the fuzzed status, Set-Cookie lines and body. A refusal is an
// *HTTPError of op "login" that never holds the password. After a 2xx,
// every cookie value the answer set is registered as a secret; the
// attempt rides the jar's cookies with an Origin, and reports an expiry
// that is unknown or still ahead, never one already past; with no usable
// cookie it fails with ErrNoCredential. A second attempt after a
// rejection that gets the same cookies back refuses to offer them again.
func FuzzLoginAnswer(f *testing.F) {
	e := newFuzzEndpoint(f)
	rec := &cookieRecorder{RoundTripper: e.Client().Transport}
	hc := &http.Client{Transport: rec}
	for _, seed := range []struct {
		code   uint16
		c1, c2 string
		body   string
	}{
		{0, "session=s3ss10n-v4lue; Path=/; HttpOnly; Max-Age=3600", "", ""},
		{0, "session=s3ss10n-v4lue; Path=/; Expires=Wed, 21 Oct 2099 07:28:00 GMT", "csrf=abcdef; Path=/", "{}"},
		{0, "session=s3ss10n-v4lue; Max-Age=9300000000000", "", ""},
		{0, "session=s3ss10n-v4lue; Max-Age=1", "other=x; Max-Age=-1", ""},
		{0, "session=s3ss10n-v4lue; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "", ""},
		{0, `session="quoted value"; Domain=example.com`, "bad cookie", ""},
		{0, "session=s3ss10n-v4lue; Path=/elsewhere", "", ""},
		{0, "", "", ""},
		{1<<15 + 401, "", "", `{"error":"bad password ` + fuzzPassword + `"}`},
		{1<<15 + 503, "session=x", "", `busy`},
	} {
		f.Add(seed.code, seed.c1, seed.c2, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, code uint16, c1, c2 string, body []byte) {
		status := fuzzStatus(code)
		header := http.Header{}
		for _, c := range []string{c1, c2} {
			if c = headerValue(c); c != "" {
				header.Add("Set-Cookie", c)
			}
		}
		e.answer(status, header, body)
		rec.take()

		login, _ := json.Marshal(map[string]string{"username": "alice", "password": fuzzPassword})
		jar, _ := cookiejar.New(nil)
		a := &CookieAuth{Jar: jar, LoginURL: e.URL + "/api/login", LoginBody: login}
		wsURL := "ws" + strings.TrimPrefix(e.URL, "http") + "/ws"
		hs := fuzzHandshake(t, wsURL, hc)
		start := time.Now()
		proof, err := a.Prepare(context.Background(), ReasonInitial, hs)

		if err != nil {
			if l := testkit.Leaked(err.Error(), redact.Placeholder, redact.Forms(fuzzPassword)...); l != "" {
				t.Fatalf("%v holds the password", err)
			}
		}
		if status/100 != 2 {
			var he *HTTPError
			if !errors.As(err, &he) || he.Op != "login" || he.StatusCode != status || len(he.Body) > maxErrorBody {
				t.Fatalf("status %d: %v", status, err)
			}
			return
		}
		received := (&http.Response{Header: http.Header{"Set-Cookie": rec.take()}}).Cookies()
		for _, c := range received {
			if len(c.Value) < redact.MinLen {
				continue
			}
			if l := testkit.Leaked(hs.red.String("cookie "+c.Value), redact.Placeholder, c.Value); l != "" {
				t.Fatalf("the cookie value %q is not registered", c.Value)
			}
		}
		target := httpURL(hs.URL)
		offered := jar.Cookies(target)
		if len(offered) == 0 {
			if !errors.Is(err, ErrNoCredential) {
				t.Fatalf("no cookie in the jar: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("cookies %v: %v", offered, err)
		}
		if !proof.Provisional || hs.Jar != jar || hs.Header.Get("Origin") != originOf(hs.URL) {
			t.Fatalf("proof %+v, jar %v, Origin %q", proof, hs.Jar == jar, hs.Header.Get("Origin"))
		}
		if !proof.Expiry.IsZero() && proof.Expiry.Before(start) {
			t.Fatalf("cookies %q expire at %v, before the login", received, proof.Expiry)
		}

		// The server refuses the session; the login answers with the same
		// cookies: they are not offered again.
		hs2 := fuzzHandshake(t, wsURL, hc)
		_, err = a.Prepare(context.Background(), ReasonRejected, hs2)
		if err == nil && cookieHeader(jar.Cookies(target)) == cookieHeader(offered) {
			t.Fatalf("the rejected cookies %q were offered again", cookieHeader(offered))
		}
	})
}

// FuzzSetQuery: a credential put in the URL's query (setQuery) reads back
// exactly through url.Parse, beside the URL's own parameters; printed with
// the attempt's redactor the URL shows it as REDACTED, as it does every
// credential-like parameter the user wrote into the URL, and an error that
// quotes the URL (Go's *url.Error) shows none of them.
func FuzzSetQuery(f *testing.F) {
	for _, seed := range []struct{ query, name, value string }{
		{"room=1", "ticket", "tk_0123456789"},
		{"", "token", "a b+c&d=e/f?g#h%zz"},
		{"access_token=us3r-t0k3n&x=1", "ticket", "tk_0123456789"},
		{"ticket=old-old-old", "ticket", "new-new-new"},
		{"api_key=k3y-k3y-k3y;x=1", "t", "\xff\xfe\u2028"},
		{"a=%zz&b=2", "", "empty-name"},
		{"token=1&token=2", "token", "REDACTED"},
	} {
		f.Add(seed.query, seed.name, seed.value)
	}
	f.Fuzz(func(t *testing.T, query, name, value string) {
		u, err := url.Parse("wss://api.example.com/ws")
		if err != nil {
			t.Fatal(err)
		}
		u.RawQuery = query
		own := u.Query()
		red := &redactor{}
		red.AddURL(u)

		setQuery(u, name, value)
		red.Add(value)
		red.AddParam(name)

		back, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("%q does not parse: %v", u, err)
		}
		q := back.Query()
		if got := q[name]; len(got) != 1 || got[0] != value {
			t.Fatalf("setQuery(%q, %q) on %q: the URL carries %q", name, value, query, got)
		}
		for k, vs := range own {
			if k != name && !slices.Equal(q[k], vs) {
				t.Fatalf("setQuery(%q) on %q changed %q from %q to %q", name, query, k, vs, q[k])
			}
		}
		if back.Host != "api.example.com" || back.Path != "/ws" {
			t.Fatalf("setQuery moved the URL: %s", back)
		}

		secrets := []string{}
		if len(value) >= redact.MinLen {
			secrets = append(secrets, redact.Forms(value)...)
		}
		for k, vs := range own {
			if redact.CredentialParam(k) {
				for _, v := range vs {
					if len(v) >= redact.MinLen {
						secrets = append(secrets, redact.Forms(v)...)
					}
				}
			}
		}
		printed := red.URL(u)
		if l := testkit.Leaked(printed, redact.Placeholder, secrets...); l != "" {
			t.Fatalf("%s shows %q", printed, l)
		}
		if p, err := url.Parse(printed); err == nil {
			for _, v := range p.Query()[name] {
				if !strings.Contains(v, redact.Placeholder) {
					t.Fatalf("%s shows %q=%q", printed, name, v)
				}
			}
		}
		dialErr := red.Error(&url.Error{Op: "Get", URL: u.String(), Err: errors.New("connection refused")})
		if l := testkit.Leaked(dialErr.Error(), redact.Placeholder, secrets...); l != "" {
			t.Fatalf("%v shows %q", dialErr, l)
		}
	})
}

// hasDuplicateKeys reports whether some object of body repeats a key.
func hasDuplicateKeys(body []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		top := func() *frame {
			if len(stack) == 0 {
				return nil
			}
			return stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if f := top(); f != nil && f.object {
					f.key = true
				}
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
			case '[':
				if f := top(); f != nil && f.object {
					f.key = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if f := top(); f != nil && f.object && f.key {
				if f.keys[v] {
					return true
				}
				f.keys[v] = true
				f.key = false
				continue
			}
		}
		if f := top(); f != nil && f.object {
			f.key = true
		}
	}
}

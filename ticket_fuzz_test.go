package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/internal/testkit"
)

// fuzzBearer is the bearer token the REST fuzz targets send.
const fuzzBearer = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmdXp6In0.ZnV6ei1zaWc"

// fuzzEndpoint is a loopback HTTP endpoint that answers every request
// with what the current fuzz input says, and records what it was sent.
type fuzzEndpoint struct {
	*httptest.Server

	mu       sync.Mutex
	status   int
	header   http.Header
	body     []byte
	requests []*http.Request
}

func newFuzzEndpoint(f *testing.F) *fuzzEndpoint {
	e := &fuzzEndpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.requests = append(e.requests, r)
		for k, vs := range e.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(e.status)
		w.Write(e.body)
	}))
	f.Cleanup(e.Close)
	return e
}

// answer sets the next answers and forgets the requests seen.
func (e *fuzzEndpoint) answer(status int, header http.Header, body []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status, e.header, e.body, e.requests = status, header, body, nil
}

func (e *fuzzEndpoint) seen() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

// fuzzStatus maps a fuzzed number to a final HTTP status: 200 for half of
// the numbers, so that the body is what the fuzzer works on; for the other
// half, 1<<15 + s is status s when s is one, and any of 200-599 otherwise.
func fuzzStatus(code uint16) int {
	if code < 1<<15 {
		return http.StatusOK
	}
	if s := int(code - 1<<15); s >= 200 && s <= 599 {
		return s
	}
	return 200 + int(code)%400
}

// headerValue drops what a server cannot put in a header value.
func headerValue(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, v)
}

// fuzzHandshake is the handshake of one attempt, as connect builds it;
// hc nil for a provider that makes no request.
func fuzzHandshake(t *testing.T, raw string, hc *http.Client) *Handshake {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	red := &redactor{}
	red.AddURL(u)
	hs := &Handshake{URL: u, Header: http.Header{}, red: red}
	if hc != nil {
		hs.HTTPClient = restClient(hc)
	}
	return hs
}

// FuzzTicketAnswer: TicketAuth against a ticket endpoint that answers with
// the fuzzed status, Retry-After, Location and body. A ticket is used
// exactly when the answer is a 2xx JSON object with a non-empty string
// "ticket": it lands in the URL's query (round trip through url.Parse),
// beside the URL's own parameters, registered as a secret. A refusal is an
// *HTTPError with a bounded Retry-After and body, and 401/403 reject the
// bearer token in the cache, other statuses do not. A redirect is followed
// only within the endpoint's origin, never with a Referer, at most ten
// times. No error ever holds the bearer token.
func FuzzTicketAnswer(f *testing.F) {
	e := newFuzzEndpoint(f)
	for _, seed := range []struct {
		code            uint16
		body            string
		retry, location string
	}{
		{0, `{"ticket":"tk_0123456789","expires_in":30}`, "", ""},
		{0, `{"ticket":"a b+c&d=e/f?g#h"}`, "", ""},
		{0, `{"ticket":""}`, "", ""},
		{0, `{"ticket":7}`, "", ""},
		{0, `["tk_0123456789"]`, "", ""},
		{0, `tk_0123456789`, "", ""},
		{1<<15 + 401, `{"error":"invalid token ` + fuzzBearer + `"}`, "", ""},
		{1<<15 + 429, `slow down`, "9300000000", ""},
		{1<<15 + 303, `{}`, "120", "https://evil.example.com/steal"},
		{1<<15 + 307, `{}`, "", "/api/ws-ticket?again=1"},
		{1<<15 + 302, `{}`, "", "//127.0.0.1:1/x"},
		{1<<15 + 403, `{"error":"forbidden"}`, "Wed, 21 Oct 2015 07:28:00 GMT", ""},
	} {
		f.Add(seed.code, []byte(seed.body), seed.retry, seed.location)
	}
	f.Fuzz(func(t *testing.T, code uint16, body []byte, retry, location string) {
		status := fuzzStatus(code)
		header := http.Header{"Content-Type": {"application/json"}}
		if retry = headerValue(retry); retry != "" {
			header.Set("Retry-After", retry)
		}
		if location = headerValue(location); location != "" {
			header.Set("Location", location)
		}
		e.answer(status, header, body)

		hs := fuzzHandshake(t, "wss://api.example.com/ws?room=1", e.Client())
		a := &TicketAuth{Endpoint: e.URL + "/api/ws-ticket", Tokens: StaticToken(fuzzBearer)}
		proof, err := a.Prepare(context.Background(), ReasonInitial, hs)

		seen := e.seen()
		if len(seen) == 0 || len(seen) > maxRedirects+1 {
			t.Fatalf("the endpoint saw %d requests", len(seen))
		}
		for _, r := range seen {
			if r.Header.Get("Referer") != "" {
				t.Fatalf("a request carried Referer %q", r.Header.Get("Referer"))
			}
		}
		if err != nil {
			if l := testkit.Leaked(err.Error(), redact.Placeholder, redact.Forms(fuzzBearer)...); l != "" {
				t.Fatalf("%v holds the bearer token", err)
			}
		}

		var he *HTTPError
		switch {
		case status/100 == 2:
			var out struct {
				Ticket string `json:"ticket"`
			}
			ok := json.Unmarshal(body, &out) == nil && out.Ticket != ""
			if ok != (err == nil) {
				t.Fatalf("answer %q: %v", body, err)
			}
			if !ok {
				return
			}
			checkTicketURL(t, hs, out.Ticket)
			if !proof.Provisional || proof.InBand != "" {
				t.Fatalf("proof %+v", proof)
			}
		case errors.Is(err, ErrRedirect):
			// Refused before anything reached another origin.
			if status/100 != 3 || location == "" {
				t.Fatalf("status %d: %v", status, err)
			}
		case errors.As(err, &he):
			if he.Op != "ticket" || he.StatusCode != status || he.RetryAfter < 0 || he.RetryAfter > maxRetryAfter {
				t.Fatalf("%+v for status %d", he, status)
			}
			if len(he.Body) > maxErrorBody || !utf8.ValidString(he.Body) {
				t.Fatalf("Body %q", he.Body)
			}
			if l := testkit.Leaked(he.Body+" "+he.Location, redact.Placeholder, redact.Forms(fuzzBearer)...); l != "" {
				t.Fatalf("%+v holds the bearer token", he)
			}
			_, cerr := a.ts.cache.TokenContext(context.Background())
			if he.Rejected() != errors.Is(cerr, ErrCredentialRejected) {
				t.Fatalf("status %d: the cache says %v", status, cerr)
			}
		case status/100 == 3 && location != "":
			// Go's client refuses a Location it cannot parse.
			var ue *url.Error
			if !errors.As(err, &ue) {
				t.Fatalf("status %d Location %q: %v", status, location, err)
			}
		default:
			t.Fatalf("status %d: %T %v", status, err, err)
		}
	})
}

// checkTicketURL checks that ticket rides hs.URL's query, beside the
// URL's own parameter, and that the URL printed redacted does not show it.
func checkTicketURL(t *testing.T, hs *Handshake, ticket string) {
	t.Helper()
	back, err := url.Parse(hs.URL.String())
	if err != nil {
		t.Fatalf("%s does not parse: %v", hs.URL, err)
	}
	if got := back.Query()[defaultTicketParam]; len(got) != 1 || got[0] != ticket {
		t.Fatalf("the URL carries %q, want the ticket %q", got, ticket)
	}
	if back.Query().Get("room") != "1" {
		t.Fatalf("the URL lost its own parameter: %s", back)
	}
	printed := hs.red.URL(hs.URL)
	if len(ticket) >= redact.MinLen {
		if l := testkit.Leaked(printed, redact.Placeholder, redact.Forms(ticket)...); l != "" {
			t.Fatalf("%s shows the ticket", printed)
		}
	}
	// (Unless the parameter's name went too: a ticket spelled "ticket".)
	if p, _ := url.Parse(printed); strings.Contains(printed, defaultTicketParam+"=") &&
		(p == nil || !strings.Contains(p.Query().Get(defaultTicketParam), redact.Placeholder)) {
		t.Fatalf("%s does not show the ticket as %s", printed, redact.Placeholder)
	}
}

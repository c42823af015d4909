package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// The fuzz targets of the parts of the server that read untrusted bytes. Each asserts
// properties, not only the absence of a panic. Without -fuzz only the seeds run (those
// added here and those under testdata/fuzz); run one for a while with, for example,
//
//	go test ./server -run '^$' -fuzz '^FuzzClientMessage$' -fuzztime 30s

// FuzzClientMessage: the pre-auth and refresh messages. Whatever the bytes, the parser says
// "not ours" or returns a type; binary frames are never ours; and a message built from a
// type and a token parses back to them.
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth","token":"t"}`, `{"type":"refresh","token":"t"}`, `{"type":"auth","token":42}`,
		`{"type":"auth"}`, `{"type":""}`, `{"type":7}`, `[1,2]`, `null`, `{"type":"auth","token":"\u00e9\ud800"}`,
		`{"type":"auth","token":"a","token":"b"}`, `{"TYPE":"AUTH","Token":"x"}`, "\xff\xfe", `{"type":"auth","token":"` + strings.Repeat("a", 100) + `"`,
	} {
		f.Add(s, "auth", "token")
	}
	f.Fuzz(func(t *testing.T, raw, typ, token string) {
		msgType, tok, ok := parseClientMessage(websocket.MessageText, []byte(raw))
		if ok && msgType == "" {
			t.Fatalf("ours without a type: %q", raw)
		}
		if !ok && (msgType != "" || tok != "") {
			t.Fatalf("not ours but returned %q %q", msgType, tok)
		}
		if _, _, ok := parseClientMessage(websocket.MessageBinary, []byte(raw)); ok {
			t.Fatalf("a binary message is never ours: %q", raw)
		}
		if !utf8.ValidString(typ) || !utf8.ValidString(token) || typ == "" {
			return
		}
		data, err := json.Marshal(map[string]string{"type": typ, "token": token})
		if err != nil {
			t.Fatal(err)
		}
		msgType, tok, ok = parseClientMessage(websocket.MessageText, data)
		if !ok || msgType != typ || tok != token {
			t.Fatalf("%s parsed as %q %q %v", data, msgType, tok, ok)
		}
	})
}

// fuzzServer is a reference server for the fuzz targets that go through ServeHTTP, with a
// log and without rate limits (a fuzzer sends from one address, very fast).
func fuzzServer(f *testing.F, cfg Config) (*Server, *syncBuffer) {
	logs := &syncBuffer{}
	cfg.Verifier = newIssuer(f)
	cfg.Handler = Echo()
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.HandshakeRate, cfg.TicketRate, cfg.LoginRate, cfg.LoginAccountRate = -1, -1, -1, -1
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return s, logs
}

// loginCanary marks a secret so that finding it in a log is a real finding, not a
// coincidence with a word of the log's own vocabulary.
const loginCanary = "§canary§"

// FuzzLoginBody: the login endpoint's body, raw and as structured credentials. The answer
// is one of the documented statuses, a session cookie comes only with 204, and neither a
// password nor a token ever reaches the log or the answer.
func FuzzLoginBody(f *testing.F) {
	s, logs := fuzzServer(f, Config{Users: map[string]string{"alice": loginCanary + "right"}})
	for _, seed := range []struct{ body, ct, user, pw, tok string }{
		{`{"username":"alice","password":"x"}`, "application/json", "alice", "right", ""},
		{`{"token":"x"}`, "application/json; charset=utf-8", "", "", "abc"},
		{`{"username":"alice","password":"x","token":"y"}`, "application/json", "alice", "wrong", "t"},
		{`not json`, "application/json", "", "", ""},
		{`{}`, "text/plain", "bob", "", ""},
		{`{"username":1}`, "application/json", "", "x", ""},
		{strings.Repeat("[", 20000), "application/json", "a", "b", "c"},
		{`{"username":"alice","password":"` + strings.Repeat("x", 20000) + `"}`, "application/json", "", "", ""},
	} {
		f.Add(seed.body, seed.ct, seed.user, seed.pw, seed.tok)
	}
	post := func(t *testing.T, body, ct string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/api/login", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		if (w.Header().Get("Set-Cookie") != "") != (w.Code == http.StatusNoContent) {
			t.Fatalf("status %d with Set-Cookie %q", w.Code, w.Header().Get("Set-Cookie"))
		}
		return w
	}
	f.Fuzz(func(t *testing.T, body, ct, user, pw, tok string) {
		post(t, body, ct)
		pw, tok = loginCanary+pw, loginCanary+tok+loginCanary
		for _, req := range []loginRequest{{Username: user, Password: pw}, {Token: tok}} {
			data, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			w := post(t, string(data), "application/json")
			if strings.Contains(w.Body.String(), loginCanary) {
				t.Fatalf("the answer quotes a secret: %q", w.Body.String())
			}
		}
		if strings.Contains(logs.String(), loginCanary) || strings.Contains(logs.String(), "canary\\u00a7") {
			t.Fatal("a password or token reached the log")
		}
	})
}

// FuzzTokenEndpoint: the form body and Basic credentials of the client-credentials grant.
// The answer is a documented status with an RFC 6749 error code, and the client secret
// never reaches the log.
func FuzzTokenEndpoint(f *testing.F) {
	iss := newIssuer(f)
	s, logs := fuzzServer(f, Config{Clients: map[string]string{"bot": loginCanary + "right"}, Issuer: iss})
	for _, seed := range [][3]string{
		{"grant_type=client_credentials&client_id=bot&client_secret=x", "", ""},
		{"grant_type=client_credentials", "bot", "x"},
		{"grant_type=password", "bot", "%zz"},
		{"%", "", ""},
		{"grant_type=client_credentials&client_id=%00", "a:b", "c"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, form, id, secret string) {
		secret = loginCanary + secret
		for _, basic := range []bool{false, true} {
			body := form
			if !basic {
				body += "&" + url.Values{"client_id": {id}, "client_secret": {secret}}.Encode()
			}
			r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if basic {
				r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			var out struct {
				Error       string `json:"error"`
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("answer is not JSON: %q", w.Body.String())
			}
			switch {
			case w.Code == http.StatusOK && out.AccessToken != "":
			case w.Code == http.StatusBadRequest && (out.Error == "invalid_request" || out.Error == "unsupported_grant_type"):
			case w.Code == http.StatusUnauthorized && out.Error == "invalid_client":
			default:
				t.Fatalf("status %d, body %q", w.Code, w.Body.String())
			}
			if strings.Contains(w.Body.String(), loginCanary) {
				t.Fatal("the answer quotes the secret")
			}
		}
		if strings.Contains(logs.String(), loginCanary) || strings.Contains(logs.String(), "canary\\u00a7") {
			t.Fatal("a client secret reached the log")
		}
	})
}

// FuzzHandshakeCredential: cookie, query, header and subprotocol handling of a handshake.
// Whatever the request, the credential found is one the request carries, in the documented
// order; and a token put in each place the documented way is found there unchanged.
func FuzzHandshakeCredential(f *testing.F) {
	s, _ := fuzzServer(f, Config{})
	for _, seed := range [][5]string{
		{"token=abc", "", "", "", "t"},
		{"ticket=x&token=y", "wsauth_session=s", "Bearer h", "", "t"},
		{"access_token=%zz", "wsauth_session=", "bearer  x ", "base64url.bearer.authorization.k8s.io.dG9r", "t"},
		{"a=1;b=2", `wsauth_session="quoted"; other=1`, "Basic eA==", "chat, base64url.bearer.phx.!!", "\x00"},
		{"api_key=1", "theme=dark", "", "bearer", "é"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	find := func(t *testing.T, rawQuery string, h http.Header) credential {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/ws", RawQuery: rawQuery}, Header: h}
		return s.findCredential(r)
	}
	f.Fuzz(func(t *testing.T, rawQuery, cookie, authz, subprotocols, token string) {
		h := http.Header{}
		for k, v := range map[string]string{"Cookie": cookie, "Authorization": authz, "Sec-WebSocket-Protocol": subprotocols} {
			if v != "" {
				h.Set(k, v)
			}
		}
		cred := find(t, rawQuery, h)
		q, _ := url.ParseQuery(rawQuery)
		r := &http.Request{Header: h}
		switch cred.method {
		case MethodHeader:
			if !strings.Contains(authz, cred.value) || cred.value == "" {
				t.Fatalf("header credential %q not from %q", cred.value, authz)
			}
		case MethodSubprotocol:
		case MethodTicket:
			if _, ok := bearerToken(r); ok || cred.value != q.Get("ticket") {
				t.Fatalf("ticket %q, query %q", cred.value, rawQuery)
			}
		case MethodQuery:
			if cred.value != q.Get("token") && cred.value != q.Get("access_token") || q.Has("ticket") {
				t.Fatalf("query credential %q, query %q", cred.value, rawQuery)
			}
		case MethodCookie:
			ck, err := r.Cookie("wsauth_session")
			if err != nil || ck.Value != cred.value || cred.value == "" {
				t.Fatalf("cookie credential %q from %q", cred.value, cookie)
			}
		case MethodFirstMessage:
			if cred.value != "" {
				t.Fatal("first message with a value")
			}
			if strings.TrimSpace(authz) != "" || strings.Contains(strings.ToLower(subprotocols), "bearer") {
				t.Fatalf("header %q or subprotocol %q should have been looked at", authz, subprotocols)
			}
		case "":
			switch cred.unrecognised {
			case "header", "subprotocol", "query":
			default:
				t.Fatalf("no method and no reason: %+v", cred)
			}
		default:
			t.Fatalf("unknown method %q", cred.method)
		}

		// Round trips: the documented ways of carrying token.
		if token == "" {
			return
		}
		if c := find(t, url.Values{"access_token": {token}}.Encode(), http.Header{}); c.method != MethodQuery || c.value != token {
			t.Fatalf("query round trip of %q: %+v", token, c)
		}
		if c := find(t, url.Values{"ticket": {token}, "token": {"x"}}.Encode(), http.Header{}); c.method != MethodTicket || c.value != token {
			t.Fatalf("ticket round trip of %q: %+v", token, c)
		}
		entry := "base64url.bearer.authorization.k8s.io." + base64.RawURLEncoding.EncodeToString([]byte(token))
		sp := http.Header{}
		sp.Set("Sec-WebSocket-Protocol", "chat.v1, "+entry)
		if c := find(t, "", sp); c.method != MethodSubprotocol || c.value != token {
			t.Fatalf("subprotocol round trip of %q: %+v", token, c)
		}
		if tv := strings.TrimSpace(token); tv != "" && !strings.ContainsAny(tv, "\r\n") {
			if c := find(t, "", http.Header{"Authorization": {"Bearer " + token}}); c.method != MethodHeader || c.value != tv {
				t.Fatalf("header round trip of %q: %+v", token, c)
			}
		}
		ck := (&http.Cookie{Name: "wsauth_session", Value: token}).String()
		if parsed, err := (&http.Request{Header: http.Header{"Cookie": {ck}}}).Cookie("wsauth_session"); err == nil && parsed.Value == token {
			if c := find(t, "", http.Header{"Cookie": {ck}}); c.method != MethodCookie || c.value != token {
				t.Fatalf("cookie round trip of %q: %+v", token, c)
			}
		}
	})
}

// FuzzOrigin: Origin parsing and the same-origin rule. A parsed origin is in normal form
// (parsing it again changes nothing, no default port); an allowed Origin is the server's
// own origin or an allowed one, never "null"; and spelling a default port changes nothing.
func FuzzOrigin(f *testing.F) {
	p, err := newOriginPolicy([]string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8080"})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][2]string{
		{"https://app.example.com", "app.example.com"}, {"https://app.example.com:443", "x"},
		{"http://h:80", "h"}, {"null", "h"}, {"https://APP.example.com.", "h"}, {"http://[::1]:8080", "[::1]:8080"},
		{"https://u@h", "h"}, {"https://h/", "h"}, {"https://h:0443", "h:443"}, {"https://h:", "h"},
		{"http://[fe80::1%25en0]:80", "h"}, {"https://\u0430pp.example.com", "h"},
	} {
		f.Add(seed[0], seed[1], false)
		f.Add(seed[0], seed[1], true)
	}
	f.Fuzz(func(t *testing.T, origin, host string, tls bool) {
		scheme := "http"
		if tls {
			scheme = "https"
		}
		n, ok := parseOrigin(origin)
		if ok {
			if again, ok2 := parseOrigin(n); !ok2 || again != n {
				t.Fatalf("%q normalises to %q, which parses as %q %v", origin, n, again, ok2)
			}
			if n != strings.ToLower(n) && !strings.Contains(n, "%") {
				t.Fatalf("%q is not lower case", n)
			}
			if strings.HasPrefix(n, "https://") && strings.HasSuffix(n, ":443") || strings.HasPrefix(n, "http://") && strings.HasSuffix(n, ":80") {
				t.Fatalf("%q keeps a default port", n)
			}
		}
		r := &http.Request{Host: host, Header: http.Header{"Origin": {origin}}}
		verdict := p.check(r, scheme)
		if verdict == originAbsent {
			t.Fatal("an Origin header is present")
		}
		if verdict == originAllowed {
			if !ok || strings.EqualFold(origin, "null") {
				t.Fatalf("allowed unparsable %q", origin)
			}
			if !p.allowed[n] && n != ownOrigin(scheme, r) {
				t.Fatalf("allowed %q for host %q over %s: neither listed nor own", origin, host, scheme)
			}
		}
		// A default port spelled out is the same origin.
		if u, err := url.Parse(n); ok && err == nil && u.Port() == "" {
			if port := map[string]string{"http": ":80", "https": ":443"}[u.Scheme]; port != "" {
				r2 := &http.Request{Host: host, Header: http.Header{"Origin": {n + port}}}
				if p.check(r2, scheme) != verdict {
					t.Fatalf("%q and %q judged differently", n, n+port)
				}
			}
		}
		// Two Origin headers are always refused.
		r.Header["Origin"] = []string{origin, origin}
		if p.check(r, scheme) != originRefused {
			t.Fatal("two Origin headers allowed")
		}
	})
}

// FuzzOriginEntry: the AllowedOrigins configuration. An entry is refused with an error or
// normalised; a normalised entry is allowed as an Origin header, in its own spelling and in
// the normal one.
func FuzzOriginEntry(f *testing.F) {
	for _, s := range []string{"https://app.example.com", "HTTPS://App.Example.com:443", "http://[::1]:8080", "*", "null", "https://*.x", "http://h:80", "https://h/", "ws://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		p, err := newOriginPolicy([]string{entry})
		if err != nil {
			// The error names the entry, quoted, and is otherwise well formed.
			msg := err.Error()
			if !strings.Contains(msg, strconv.Quote(entry)) || strings.Contains(strings.Replace(msg, strconv.Quote(entry), "", 1), "%!") {
				t.Fatalf("malformed error: %v", err)
			}
			return
		}
		if strings.Contains(entry, "*") || strings.EqualFold(strings.TrimSpace(entry), "null") {
			t.Fatalf("accepted %q", entry)
		}
		n := p.list[0]
		for _, o := range []string{entry, n} {
			r := &http.Request{Host: "server.invalid", Header: http.Header{"Origin": {o}}}
			if p.check(r, "https") != originAllowed {
				t.Fatalf("entry %q (normal %q) does not allow Origin %q", entry, n, o)
			}
		}
	})
}

// FuzzForwarded: Forwarded, X-Forwarded-For and X-Forwarded-Proto. From an untrusted peer
// they change nothing; from a trusted one the client is the peer or an address the headers
// name, and the scheme is http or https.
func FuzzForwarded(f *testing.F) {
	p, err := newProxyPolicy([]string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][3]string{
		{"for=192.0.2.1;proto=https", "", ""},
		{`for="[2001:db8::1]:80", for=10.0.0.2`, "1.2.3.4", "https"},
		{"", "203.0.113.1, 10.0.0.3", "http, https"},
		{`for="a,b";x="\"", for=unknown`, "[::1]:5, ::ffff:1.2.3.4", "gopher"},
		{strings.Repeat("for=10.0.0.1,", 200), "", ""},
		{`for=_hidden;proto="https"`, "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], true)
		f.Add(seed[0], seed[1], seed[2], false)
	}
	f.Fuzz(func(t *testing.T, fwd, xff, xfp string, trustedPeer bool) {
		h := http.Header{}
		for k, v := range map[string]string{"Forwarded": fwd, "X-Forwarded-For": xff, "X-Forwarded-Proto": xfp} {
			if v != "" {
				h.Set(k, v)
			}
		}
		peer := "198.51.100.7"
		if trustedPeer {
			peer = "10.9.9.9"
		}
		r := &http.Request{RemoteAddr: peer + ":4000", Header: h}
		ip, scheme, ok := p.client(r)
		if !ok || !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("client %v %v", ip, ok)
		}
		if scheme != "http" && scheme != "https" {
			t.Fatalf("scheme %q", scheme)
		}
		if !trustedPeer {
			if ip != netip.MustParseAddr(peer) || scheme != "http" {
				t.Fatalf("untrusted peer's headers were believed: %v %s", ip, scheme)
			}
			return
		}
		if ip == netip.MustParseAddr(peer) {
			return
		}
		hops, _ := forwardedHops(h)
		for _, hp := range hops {
			if hp.addr == ip {
				return
			}
		}
		t.Fatalf("client %v is neither the peer nor in the headers", ip)
	})
}

// FuzzRetryAfter: every Retry-After the server sends is whole seconds, at least one, at most
// a day, and not shorter than the wait it stands for, whatever the duration (no overflow).
func FuzzRetryAfter(f *testing.F) {
	for _, d := range []int64{0, 1, -1, int64(time.Second) - 1, int64(time.Second) + 1, 9300000000, int64(9223372036 * time.Second), 1<<63 - 1, -1 << 63} {
		f.Add(d, float64(d)/1e9)
	}
	f.Fuzz(func(t *testing.T, d int64, secs float64) {
		v, err := strconv.ParseInt(retryAfterValue(time.Duration(d)), 10, 64)
		if err != nil || v < 1 || v > int64(maxRetryAfter/time.Second) {
			t.Fatalf("Retry-After %d for %v", v, time.Duration(d))
		}
		if time.Duration(d) <= maxRetryAfter && time.Duration(v)*time.Second < time.Duration(d) {
			t.Fatalf("Retry-After %d shorter than %v", v, time.Duration(d))
		}
		w := waitSeconds(secs)
		if w < time.Second || w > maxRetryAfter || w%time.Second != 0 {
			t.Fatalf("wait %v for %v seconds", w, secs)
		}
		if secs <= maxRetryAfter.Seconds() && w.Seconds() < secs {
			t.Fatalf("wait %v shorter than %v seconds", w, secs)
		}
	})
}

// FuzzControlCloseAll: the close code and reason the fault hook takes from the network. A
// code and reason are accepted only when they can go into a close frame (a valid code, a
// reason of at most 123 bytes); everything else is 400.
func FuzzControlCloseAll(f *testing.F) {
	s, _ := fuzzServer(f, Config{TestControls: true})
	for _, seed := range []string{`{"code":1000,"reason":"bye"}`, `{"code":1006}`, `{"code":4999,"reason":"` + strings.Repeat("é", 62) + `"}`, `{}`, `{"code":-1}`, `{"code":1e99}`, `[`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/control/close-all", bytes.NewReader(body))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var req controlRequest
		jerr := json.Unmarshal(body, &req)
		switch w.Code {
		case http.StatusOK:
			code := websocket.StatusCode(req.Code)
			if req.Code == 0 {
				code = websocket.StatusNormalClosure
			}
			if jerr == nil && (!validCloseCode(code) || len(req.Reason) > 123) {
				t.Fatalf("accepted code %d, reason of %d bytes", req.Code, len(req.Reason))
			}
		case http.StatusBadRequest:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// TestReasonsAreFixed: the close reasons the server sends fit a close frame and say nothing
// about the credential (they are constants; this guards against someone formatting one).
func TestReasonsAreFixed(t *testing.T) {
	for _, r := range []string{
		ReasonUnauthorized, ReasonInvalidTicket, ReasonAuthTimeout, ReasonExpectedAuth, ReasonSessionExpired,
		ReasonPrincipalMismatch, ReasonRevoked, ReasonLoggedOut, ReasonShuttingDown, ReasonNoCredential,
		ReasonTooManyConnections, ReasonPingTimeout,
	} {
		if len(r) > 123 || !utf8.ValidString(r) || strings.ContainsAny(r, "%=") {
			t.Fatalf("reason %q", r)
		}
	}
}

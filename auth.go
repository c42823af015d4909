package wsauth

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Handshake is the WebSocket upgrade request a provider may change before a
// connection attempt. It is a fresh copy for every attempt.
type Handshake struct {
	// URL is the WebSocket URL to dial; providers may add query parameters
	// or replace it.
	URL *url.URL
	// Header holds the handshake's request headers.
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol, in order.
	Subprotocols []string
	// Jar, when set, supplies cookies for the handshake request.
	Jar http.CookieJar
	// HTTPClient is the client's HTTP client, for REST calls a provider
	// makes (ticket endpoint, login). It has no cookie jar.
	HTTPClient    *http.Client
	allowInsecure bool
	red           *redactor
}

// CheckTransport applies the client's transport rule to u, a URL the
// provider is about to send a credential to or have dialed: plain ws:// or
// http:// only to a loopback host, unless Options.AllowInsecure. The error
// wraps ErrInsecureTransport.
func (h *Handshake) CheckTransport(u *url.URL) error { return checkTransport(u, h.allowInsecure) }

// RefusalError is the error of a REST call's answer outside 2xx (op names
// the call, such as "ticket"): an *HTTPError with the status, Retry-After,
// and a bounded prefix of the body with this attempt's secrets scrubbed.
// It reads from resp.Body; the caller still closes it.
func (h *Handshake) RefusalError(op string, resp *http.Response) *HTTPError {
	return httpErrorFrom(op, resp, h.red)
}

// AddSecret registers credential strings the provider puts on the wire, so
// that the client scrubs them from every error, event and log line.
func (h *Handshake) AddSecret(s ...string) { h.red.Add(s...) }

// AddSecretParam registers a query parameter whose value is a credential;
// its value is shown as REDACTED wherever the client prints the URL.
func (h *Handshake) AddSecretParam(name ...string) { h.red.AddParam(name...) }

// Proof is what a provider hands back for one connection attempt.
type Proof struct {
	// InBand is a token for the dialect's in-band exchange after the
	// upgrade (the first-message pattern); empty when the credential rode
	// the handshake.
	InBand string
	// Expiry is when the credential stops being valid, zero if unknown.
	// The refresher plans from the earliest of this and the lifetime the
	// server reports.
	Expiry time.Time
	// Exchange, when set, runs after the dialect's Open and before any
	// application message, for providers with an in-band step of their
	// own. An error fails the attempt.
	Exchange func(ctx context.Context, conn Conn) error
	// Provisional marks a credential that rode the handshake in a form
	// servers refuse after the upgrade, with a close frame a browser can
	// read (ticket, query token, cookie): the upgrade alone does not say it
	// was accepted. When the dialect's Open returns VerdictPending, the
	// client then waits for a verdict before it writes anything of the
	// application: the dialect's confirmation, the server's first
	// application message, or Timeouts.Verdict without a close (up to
	// Timeouts.Auth for a server that announces its verdict), and a close
	// meanwhile is a refusal. Without Provisional or InBand the 101 is the
	// verdict (VerdictHandshake). When the window or the upgrade decided,
	// a close within Timeouts.Auth of the upgrade, before any application
	// message, still counts as a refusal (a late refusal). A dialect whose
	// Open returns VerdictExplicit has decided already.
	Provisional bool
}

// Authenticator supplies credentials. Prepare is called before every
// connection attempt, never cached by the client, and told why it is asked;
// it may change the handshake and returns the attempt's Proof. Prepare for
// one client is never called concurrently with itself.
//
// Providers keep the state of one client (the credential they offered
// last, so that a rejected one is never offered again): give each client
// its own provider value, and share a *TokenCache between them if they
// should share tokens.
type Authenticator interface {
	Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, why Reason, hs *Handshake) (Proof, error)

// Prepare implements Authenticator.
func (f AuthenticatorFunc) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	return f(ctx, why, hs)
}

// TokenSourcer is implemented by a provider whose credential comes from a
// token source: the refresher then takes its refresh tokens from the same
// source, so that one cache serves both and one fetch is in flight at a
// time. Every built-in provider but CookieAuth implements it;
// RenewalPolicy.Tokens overrides it.
type TokenSourcer interface {
	TokenSource() oauth2.TokenSource
}

// tokenState is the token bookkeeping shared by the token-based providers.
type tokenState struct {
	once  sync.Once
	cache *TokenCache
	mu    sync.Mutex
	last  *oauth2.Token
}

func (s *tokenState) init(src oauth2.TokenSource) *TokenCache {
	s.once.Do(func() { s.cache = asTokenCache(src) })
	return s.cache
}

// token returns the token for this attempt, first dropping the last one
// offered when the server rejected it or ended its session.
func (s *tokenState) token(ctx context.Context, src oauth2.TokenSource, why Reason) (*oauth2.Token, error) {
	cache := s.init(src)
	if cache == nil {
		return nil, errors.New("wsauth: provider has no token source")
	}
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if last != nil {
		switch why {
		case ReasonRejected:
			cache.Reject(last)
		case ReasonSessionEnded:
			cache.Invalidate(last)
		}
	}
	tok, err := cache.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.last = tok
	s.mu.Unlock()
	return tok, nil
}

// defaultTokenParam is the query parameter QueryAuth uses by default.
const defaultTokenParam = "token"

// QueryAuth puts a token in a query parameter of the WebSocket URL. Query
// strings end up in access logs, proxies and browser history: use it only
// with short-lived tokens, and prefer TicketAuth.
type QueryAuth struct {
	// Tokens supplies the token. Required.
	Tokens oauth2.TokenSource
	// Param is the query parameter. Default "token".
	Param string

	ts tokenState
}

// Prepare implements Authenticator.
func (a *QueryAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.token(ctx, a.Tokens, why)
	if err != nil {
		return Proof{}, err
	}
	param := cmp.Or(a.Param, defaultTokenParam)
	hs.AddSecret(tok.AccessToken)
	hs.AddSecretParam(param)
	setQuery(hs.URL, param, tok.AccessToken)
	return Proof{Expiry: tok.Expiry, Provisional: true}, nil
}

// TokenSource implements TokenSourcer: the provider's token cache.
func (a *QueryAuth) TokenSource() oauth2.TokenSource { return a.ts.init(a.Tokens) }

// FirstMessageAuth connects unauthenticated and proves identity with the
// dialect's auth message right after the upgrade ({"type":"auth","token":…}
// in DefaultDialect), waiting up to Timeouts.Auth for the verdict. The
// token stays out of URLs and headers.
type FirstMessageAuth struct {
	// Tokens supplies the token. Required.
	Tokens oauth2.TokenSource

	ts tokenState
}

// Prepare implements Authenticator.
func (a *FirstMessageAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.token(ctx, a.Tokens, why)
	if err != nil {
		return Proof{}, err
	}
	hs.AddSecret(tok.AccessToken)
	return Proof{InBand: tok.AccessToken, Expiry: tok.Expiry}, nil
}

// TokenSource implements TokenSourcer: the provider's token cache.
func (a *FirstMessageAuth) TokenSource() oauth2.TokenSource { return a.ts.init(a.Tokens) }

// HeaderAuth sends "Authorization: Bearer <token>" on the handshake. A
// browser cannot do this; a Go client can, and it keeps the token out of
// URLs.
type HeaderAuth struct {
	// Tokens supplies the token. Required.
	Tokens oauth2.TokenSource
	// Scheme is the authorization scheme. Default "Bearer".
	Scheme string

	ts tokenState
}

// Prepare implements Authenticator.
func (a *HeaderAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.token(ctx, a.Tokens, why)
	if err != nil {
		return Proof{}, err
	}
	hs.AddSecret(tok.AccessToken)
	hs.Header.Set("Authorization", cmp.Or(a.Scheme, "Bearer")+" "+tok.AccessToken)
	return Proof{Expiry: tok.Expiry}, nil
}

// TokenSource implements TokenSourcer: the provider's token cache.
func (a *HeaderAuth) TokenSource() oauth2.TokenSource { return a.ts.init(a.Tokens) }

// Subprotocol prefixes of known bearer-in-subprotocol conventions.
const (
	// KubernetesBearerPrefix is what the Kubernetes API server accepts.
	KubernetesBearerPrefix = "base64url.bearer.authorization.k8s.io."
	// PhoenixBearerPrefix is what Phoenix sockets accept.
	PhoenixBearerPrefix = "base64url.bearer.phx."
)

// SubprotocolAuth carries the token in Sec-WebSocket-Protocol as
// Prefix+base64url(token), offered after a real subprotocol that the server
// selects. A server that echoes the bearer entry back is refused: it would
// be sending the credential to wherever responses are logged.
type SubprotocolAuth struct {
	// Tokens supplies the token. Required.
	Tokens oauth2.TokenSource
	// Prefix goes before the encoded token. Default KubernetesBearerPrefix.
	Prefix string
	// Subprotocol is the real subprotocol offered before the bearer entry.
	// Default none (Options.Subprotocols and the dialect's still apply).
	Subprotocol string

	ts tokenState
}

// Prepare implements Authenticator.
func (a *SubprotocolAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.token(ctx, a.Tokens, why)
	if err != nil {
		return Proof{}, err
	}
	enc := base64.RawURLEncoding.EncodeToString([]byte(tok.AccessToken))
	entry := cmp.Or(a.Prefix, KubernetesBearerPrefix) + enc
	hs.AddSecret(tok.AccessToken, enc)
	if a.Subprotocol != "" && !slices.Contains(hs.Subprotocols, a.Subprotocol) {
		hs.Subprotocols = append([]string{a.Subprotocol}, hs.Subprotocols...)
	}
	hs.Subprotocols = append(hs.Subprotocols, entry)
	return Proof{Expiry: tok.Expiry}, nil
}

// TokenSource implements TokenSourcer: the provider's token cache.
func (a *SubprotocolAuth) TokenSource() oauth2.TokenSource { return a.ts.init(a.Tokens) }

// CookieAuth rides the handshake with the cookies of a jar, optionally
// filled by a login call first. The server must check Origin on
// cookie-authenticated sockets; set Origin to what the server allows.
type CookieAuth struct {
	// Jar holds the session cookie. Default: a new empty
	// net/http/cookiejar, which only a login fills.
	Jar http.CookieJar
	// LoginURL, when set, is POSTed LoginBody (as application/json) when
	// the jar has no cookie for the WebSocket URL, and again whenever the
	// server rejected or ended the session. Its Set-Cookie lands in Jar.
	LoginURL string
	// LoginBody is the login request's JSON body. Its string values are
	// treated as secrets.
	LoginBody []byte
	// Origin is sent as the handshake's Origin header. Default: the
	// WebSocket URL's own origin (http or https, host and port), which is
	// what a browser page served by the same host sends; servers that
	// require an Origin on cookie-authenticated sockets accept it.
	Origin string

	mu   sync.Mutex
	last string // cookie header offered last
	// expires holds when the cookies the login set run out, by value, as
	// their Max-Age or Expires said: the jar keeps that to itself.
	expires map[string]time.Time
}

// Prepare implements Authenticator.
func (a *CookieAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return Proof{}, err
		}
		a.Jar = jar
	}
	target := httpURL(hs.URL)
	hs.AddSecret(loginSecrets(a.LoginBody)...)
	if a.LoginURL != "" && (why == ReasonRejected || why == ReasonSessionEnded || len(a.Jar.Cookies(target)) == 0) {
		if err := a.login(ctx, hs); err != nil {
			return Proof{}, err
		}
	}
	cookies := a.Jar.Cookies(target)
	if len(cookies) == 0 {
		why := "there is no LoginURL"
		if a.LoginURL != "" {
			why = "the login set none"
		}
		return Proof{}, fmt.Errorf("wsauth: CookieAuth: the jar holds no cookie for %s and %s: %w", target.Host, why, ErrNoCredential)
	}
	header := cookieHeader(cookies)
	for _, c := range cookies {
		hs.AddSecret(c.Value)
	}
	if why == ReasonRejected && a.last != "" && header == a.last {
		return Proof{}, ErrCredentialRejected
	}
	a.last = header
	hs.Jar = a.Jar
	switch {
	case a.Origin != "":
		hs.Header.Set("Origin", a.Origin)
	case hs.Header.Get("Origin") == "":
		hs.Header.Set("Origin", originOf(hs.URL))
	}
	// A jar does not say when its cookies expire; what the login said, the
	// server's auth_ok, expiry notices and its close at expiry cover that.
	var exp time.Time
	for _, c := range cookies {
		exp = earliest(exp, a.expires[c.Value])
	}
	return Proof{Provisional: true, Expiry: exp}, nil
}

func (a *CookieAuth) login(ctx context.Context, hs *Handshake) error {
	u, err := url.Parse(a.LoginURL)
	if err != nil {
		return fmt.Errorf("wsauth: login URL: %w", err)
	}
	if err := hs.CheckTransport(u); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.LoginURL, bytes.NewReader(a.LoginBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := *hs.HTTPClient
	hc.Jar = a.Jar
	resp, err := hc.Do(req)
	if err != nil {
		return scrubError(hs.red, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return hs.RefusalError("login", resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a.expires = map[string]time.Time{}
	now := time.Now()
	for _, c := range resp.Cookies() {
		hs.AddSecret(c.Value)
		switch {
		case c.MaxAge > 0:
			a.expires[c.Value] = now.Add(time.Duration(c.MaxAge) * time.Second)
		case !c.Expires.IsZero() && c.Expires.After(now):
			a.expires[c.Value] = c.Expires
		}
	}
	return nil
}

// loginSecrets returns the string values of a JSON login body, at any
// depth.
func loginSecrets(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func cookieHeader(cs []*http.Cookie) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Name + "=" + c.Value
	}
	return strings.Join(parts, "; ")
}

func setQuery(u *url.URL, name, value string) {
	// The URL's other pairs stay as they were written, even those
	// url.ParseQuery would refuse: only name's own pairs are replaced.
	var pairs []string
	for p := range strings.SplitSeq(u.RawQuery, "&") {
		if p == "" {
			continue
		}
		key, _, _ := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name {
			continue
		}
		pairs = append(pairs, queryPart(p))
	}
	pairs = append(pairs, url.QueryEscape(name)+"="+url.QueryEscape(value))
	u.RawQuery = strings.Join(pairs, "&")
}

// queryPart is a pair of a query as written, with what would end the
// query ('#') or make the URL unparseable (control characters, spaces)
// percent-encoded.
func queryPart(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20, c == 0x7f, c == ' ', c == '#':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

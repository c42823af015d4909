package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultTicketParam is the query parameter TicketAuth uses by default.
const DefaultTicketParam = "ticket"

// maxTicketBody bounds the ticket endpoint's answer.
const maxTicketBody = 64 << 10

// TicketAuth is the recommended pattern: before every connection attempt it
// POSTs to a ticket endpoint authenticated with "Authorization: Bearer" from
// Tokens, reads {"ticket":"…","expires_in":30}, and dials with the ticket in
// a query parameter. The server consumes a ticket on first use, so a ticket
// in a log is worthless; TicketAuth never offers one twice.
//
// A 401 or 403 from the endpoint means the bearer token is bad: it is
// rejected in the token cache (never sent again) and the error is an
// HTTPError the reconnect policy treats as "re-authenticate". 429 and 5xx
// mean "try later", with Retry-After honoured.
type TicketAuth struct {
	// Endpoint is the ticket endpoint's URL. Required.
	Endpoint string
	// Tokens supplies the bearer token for the endpoint. Required.
	Tokens oauth2.TokenSource
	// Param is the query parameter that carries the ticket. Default
	// "ticket".
	Param string
	// HTTPClient makes the endpoint call. Default: the client's.
	HTTPClient *http.Client

	ts tokenState
}

// Ticket is one ticket as the endpoint issued it.
type Ticket struct {
	Value     string
	ExpiresIn time.Duration
}

// Prepare implements Authenticator.
func (a *TicketAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.bearer(ctx, a.Tokens, why, hs)
	if err != nil {
		return Proof{}, err
	}
	t, err := a.fetch(ctx, hs, tok)
	if err != nil {
		return Proof{}, err
	}
	param := orDefault(a.Param, DefaultTicketParam)
	hs.AddSecret(t.Value)
	hs.AddSecretParam(param)
	setQuery(hs.URL, param, t.Value)
	return Proof{Expiry: tok.Expiry, Provisional: true}, nil
}

func (a *TicketAuth) tokenCache() *TokenCache { return a.ts.init(a.Tokens) }

// fetch calls the ticket endpoint once.
func (a *TicketAuth) fetch(ctx context.Context, hs *Handshake, tok *oauth2.Token) (Ticket, error) {
	if a.Endpoint == "" {
		return Ticket{}, errors.New("wsauth: TicketAuth.Endpoint is empty")
	}
	body, err := a.ts.postBearer(ctx, hs, a.HTTPClient, a.Endpoint, tok, nil)
	if err != nil {
		return Ticket{}, err
	}
	var out struct {
		Ticket    string   `json:"ticket"`
		ExpiresIn *float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Ticket == "" {
		// The body may hold the ticket itself; never quote it.
		return Ticket{}, errors.New(`wsauth: ticket endpoint answered without a {"ticket":…} JSON object`)
	}
	return Ticket{Value: out.Ticket, ExpiresIn: seconds(out.ExpiresIn)}, nil
}

// TicketURLAuth gets the whole WebSocket URL from a REST call before every
// connection attempt, the way Slack Socket Mode works
// (https://api.slack.com/apis/socket-mode, method apps.connections.open):
// it POSTs to Endpoint with "Authorization: Bearer" from Tokens, reads
// {"ok":true,"url":"wss://…"}, and dials that URL instead of the one given
// to Dial (which then only has to be a valid placeholder, such as
// "wss://wss-primary.slack.com/link/"). The URL is single use and carries
// its own ticket: TicketURLAuth fetches a new one for every attempt, never
// dials one twice, and registers the URL and its query values as secrets,
// so they are scrubbed from errors, events and logs. The returned URL must
// be ws:// or wss://, and the insecure-transport rule applies to it: plain
// ws:// only to loopback unless Options.AllowInsecure.
//
// Slack's answers: {"ok":false,"error":"invalid_auth"} (and not_authed,
// token_revoked, token_expired, account_inactive, missing_scope,
// no_permission, not_allowed_token_type, access_denied, forbidden_team,
// team_access_not_granted) mean the bearer token is bad: it is rejected in
// the token cache, never sent again, and the error is an *AuthError the
// reconnect policy treats as "re-authenticate". Other errors are retried
// with backoff; HTTP 429 honours Retry-After. A dialed URL the server
// refuses says nothing against the bearer token: the next attempt asks for
// a new URL with the same token. Use it with the SlackSocketMode dialect.
type TicketURLAuth struct {
	// Endpoint is the REST method's URL, for Slack
	// "https://slack.com/api/apps.connections.open". Required.
	Endpoint string
	// Tokens supplies the bearer token for the endpoint (for Slack the
	// app-level token, xapp-…). Required.
	Tokens oauth2.TokenSource
	// HTTPClient makes the endpoint call. Default: the client's.
	HTTPClient *http.Client

	ts tokenState
}

// slackAuthErrors are the error strings of Slack's Web API that say the
// bearer token itself is refused.
var slackAuthErrors = map[string]bool{
	"not_authed": true, "invalid_auth": true, "account_inactive": true,
	"token_revoked": true, "token_expired": true, "no_permission": true,
	"missing_scope": true, "not_allowed_token_type": true, "access_denied": true,
	"forbidden_team": true, "team_access_not_granted": true,
}

// Prepare implements Authenticator.
func (a *TicketURLAuth) Prepare(ctx context.Context, why Reason, hs *Handshake) (Proof, error) {
	tok, err := a.ts.bearer(ctx, a.Tokens, why, hs)
	if err != nil {
		return Proof{}, err
	}
	u, err := a.fetch(ctx, hs, tok)
	if err != nil {
		return Proof{}, err
	}
	hs.URL = u
	// The server's session lifetime is its own business (Slack announces
	// the end with a disconnect notice), not the bearer token's.
	return Proof{Provisional: true}, nil
}

func (a *TicketURLAuth) tokenCache() *TokenCache { return a.ts.init(a.Tokens) }

// fetch calls the endpoint once and returns the URL to dial, its secrets
// registered.
func (a *TicketURLAuth) fetch(ctx context.Context, hs *Handshake, tok *oauth2.Token) (*url.URL, error) {
	if a.Endpoint == "" {
		return nil, errors.New("wsauth: TicketURLAuth.Endpoint is empty")
	}
	body, err := a.ts.postBearer(ctx, hs, a.HTTPClient, a.Endpoint, tok,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if err != nil {
		return nil, err
	}
	var out struct {
		OK    bool   `json:"ok"`
		URL   string `json:"url"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		// The body may hold the URL and its ticket; never quote it.
		return nil, errors.New(`wsauth: URL endpoint answered without a {"ok":…} JSON object`)
	}
	if !out.OK {
		reason := hs.red.String(strings.ToValidUTF8(out.Error, "?"))
		if len(reason) > 64 {
			reason = reason[:64]
		}
		if slackAuthErrors[out.Error] {
			a.ts.cache.Reject(tok)
			return nil, &AuthError{Message: reason}
		}
		return nil, fmt.Errorf("wsauth: URL endpoint refused: %q", reason)
	}
	if out.URL == "" {
		return nil, errors.New(`wsauth: URL endpoint answered "ok" without a url`)
	}
	hs.AddSecret(out.URL)
	u, err := url.Parse(out.URL)
	if err != nil {
		// url.Parse quotes its input in the error.
		return nil, errors.New("wsauth: URL endpoint answered with a url that does not parse")
	}
	for k, vs := range u.Query() {
		hs.AddSecretParam(k)
		hs.AddSecret(vs...)
	}
	if u.RawQuery != "" {
		hs.AddSecret(u.RawQuery)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("wsauth: URL endpoint answered with a %q URL, not ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("wsauth: URL endpoint answered with a url without a host")
	}
	if err := checkTransport(u, hs.AllowInsecure); err != nil {
		return nil, err
	}
	return u, nil
}

// bearer returns the bearer token that buys a ticket or URL. A refused
// ticket or URL says nothing against the token that bought it (the next
// one is new anyway), so only an ended session asks for a fresh token; a
// token the endpoint itself refuses is rejected there (postBearer).
func (s *tokenState) bearer(ctx context.Context, src oauth2.TokenSource, why Reason, hs *Handshake) (*oauth2.Token, error) {
	if why == ReasonRejected {
		why = ReasonReconnect
	}
	tok, err := s.token(ctx, src, why)
	if err != nil {
		return nil, err
	}
	hs.AddSecret(tok.AccessToken)
	return tok, nil
}

// postBearer POSTs to endpoint with tok as a bearer token and returns the
// answer's body. A 401 or 403 rejects tok in the cache: it is never
// offered again. hc nil means the client's HTTP client.
func (s *tokenState) postBearer(ctx context.Context, hs *Handshake, hc *http.Client, endpoint string, tok *oauth2.Token, header http.Header) ([]byte, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("wsauth: ticket endpoint: %w", err)
	}
	if err := checkTransport(u, hs.AllowInsecure); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, http.NoBody)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	if hc == nil {
		hc = hs.HTTPClient
	} else {
		hc = restClient(hc)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, scrubError(hs.red, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		herr := httpErrorFrom("ticket", resp, hs.red)
		if herr.Rejected() {
			s.cache.Reject(tok)
		}
		return nil, herr
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTicketBody))
	if err != nil {
		return nil, scrubError(hs.red, fmt.Errorf("wsauth: reading the ticket endpoint's answer: %w", err))
	}
	return body, nil
}

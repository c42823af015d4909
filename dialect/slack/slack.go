// Package slack connects wsauth to Slack Socket Mode
// (https://api.slack.com/apis/socket-mode): Auth gets the single-use
// WebSocket URL from apps.connections.open before every connection
// attempt, and Dialect speaks the connection-level messages:
//
//	server  {"type":"hello","num_connections":1,"debug_info":{…},"connection_info":{"app_id":"…"}}
//	server  {"type":"disconnect","reason":"warning",…}            about 10 s before a refresh
//	server  {"type":"disconnect","reason":"refresh_requested",…}  the connection is about to end
//
// Open waits for hello. Every disconnect notice ("warning",
// "refresh_requested", "link_disabled", "too_many_websockets", …) is a
// going-away request: the client opens a new connection with a new URL and
// moves to it before closing the old one (make-before-break), as Slack
// expects, so no event is lost in a gap. A disconnect before hello fails
// the attempt, which is retried with backoff. Everything else (the event
// envelopes: events_api, slash_commands, interactive) is the
// application's:
//
//	c, err := wsauth.Dial(ctx, "wss://wss-primary.slack.com/link/", &wsauth.Options{
//		Auth:    &slack.Auth{Tokens: wsauth.StaticToken(appToken)}, // xapp-…
//		Dialect: slack.Dialect{},
//	})
//
// Out of scope: acknowledging envelopes ({"envelope_id":…}, with or without
// a payload, within 3 s) is the application's job, as is deduplicating the
// retried deliveries a reconnect can cause; the debug_reconnects URL
// parameter; and approximate_connection_time (Slack's disconnect notice
// arrives in time). Slack's liveness is WebSocket pings, which the client
// answers and sends on its own. Slack has no refresh message and no close
// codes of its own.
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wire"
)

// Endpoint is Slack's apps.connections.open.
const Endpoint = "https://slack.com/api/apps.connections.open"

// Auth gets the whole WebSocket URL from apps.connections.open before
// every connection attempt: it POSTs to Endpoint with "Authorization:
// Bearer" from Tokens, reads {"ok":true,"url":"wss://…"}, and dials that
// URL instead of the one given to Dial (which then only has to be a valid
// placeholder, such as "wss://wss-primary.slack.com/link/"). The URL is
// single use and carries its own ticket: Auth fetches a new one for every
// attempt, never dials one twice, and registers the URL and its query
// values as secrets, so they are scrubbed from errors, events and logs.
// The returned URL must be ws:// or wss://, and the client's transport rule
// applies to it.
//
// Slack's answers {"ok":false,"error":"invalid_auth"} (and not_authed,
// token_revoked, token_expired, account_inactive, missing_scope,
// no_permission, not_allowed_token_type, access_denied, forbidden_team,
// team_access_not_granted) mean the bearer token is bad: it is rejected in
// the token cache, never sent again, and the error is a *wsauth.AuthError
// the reconnect policy treats as "re-authenticate". Other errors are
// retried with backoff; HTTP 429 honours Retry-After. A dialed URL the
// server refuses says nothing against the bearer token: the next attempt
// asks for a new URL with the same token.
type Auth struct {
	// Endpoint is the REST method's URL. Default Endpoint.
	Endpoint string
	// Tokens supplies the bearer token for the endpoint, Slack's app-level
	// token (xapp-…). Required.
	Tokens oauth2.TokenSource

	once  sync.Once
	cache *wsauth.TokenCache
	mu    sync.Mutex
	last  *oauth2.Token
}

// refusals are the error strings of Slack's Web API that say the bearer
// token itself is refused.
var refusals = map[string]bool{
	"not_authed": true, "invalid_auth": true, "account_inactive": true,
	"token_revoked": true, "token_expired": true, "no_permission": true,
	"missing_scope": true, "not_allowed_token_type": true, "access_denied": true,
	"forbidden_team": true, "team_access_not_granted": true,
}

// maxAnswer bounds the endpoint's answer.
const maxAnswer = 64 << 10

// Prepare implements wsauth.Authenticator.
func (a *Auth) Prepare(ctx context.Context, why wsauth.Reason, hs *wsauth.Handshake) (wsauth.Proof, error) {
	// Errors are scrubbed of this attempt's secrets by the client.
	tok, err := a.bearer(ctx, why)
	if err != nil {
		return wsauth.Proof{}, err
	}
	hs.AddSecret(tok.AccessToken)
	u, err := a.open(ctx, hs, tok)
	if err != nil {
		return wsauth.Proof{}, err
	}
	hs.URL = u
	// The server's session lifetime is its own business (Slack announces
	// the end with a disconnect notice), not the bearer token's.
	return wsauth.Proof{Provisional: true}, nil
}

func (a *Auth) tokens() *wsauth.TokenCache {
	a.once.Do(func() {
		if a.Tokens != nil {
			a.cache = wsauth.NewTokenCache(a.Tokens, 0)
		}
	})
	return a.cache
}

// bearer returns the token that buys a URL. A refused URL says nothing
// against it (the next URL is new anyway); an ended session asks for a
// fresh one; a token the endpoint itself refuses is rejected by open.
func (a *Auth) bearer(ctx context.Context, why wsauth.Reason) (*oauth2.Token, error) {
	cache := a.tokens()
	if cache == nil {
		return nil, errors.New("wsauth: slack.Auth.Tokens is nil")
	}
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	if last != nil && why == wsauth.ReasonSessionEnded {
		cache.Invalidate(last)
	}
	tok, err := cache.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.last = tok
	a.mu.Unlock()
	return tok, nil
}

// open calls apps.connections.open once and returns the URL to dial, its
// secrets registered.
func (a *Auth) open(ctx context.Context, hs *wsauth.Handshake, tok *oauth2.Token) (*url.URL, error) {
	endpoint := a.Endpoint
	if endpoint == "" {
		endpoint = Endpoint
	}
	eu, err := url.Parse(endpoint)
	if err != nil {
		return nil, errors.New("wsauth: slack.Auth.Endpoint does not parse")
	}
	if err := hs.CheckTransport(eu); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hs.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		he := hs.RefusalError("url", resp)
		if he.Rejected() {
			a.tokens().Reject(tok)
		}
		return nil, he
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("wsauth: slack: reading the answer: %w", err)
	}
	var out struct {
		OK    bool   `json:"ok"`
		URL   string `json:"url"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		// The body may hold the URL and its ticket; never quote it.
		return nil, errors.New(`wsauth: slack: apps.connections.open answered without a {"ok":…} JSON object`)
	}
	if !out.OK {
		reason := strings.ToValidUTF8(out.Error, "?")
		if len(reason) > 64 {
			reason = reason[:64]
		}
		if refusals[out.Error] {
			a.tokens().Reject(tok)
			return nil, &wsauth.AuthError{Message: reason}
		}
		return nil, fmt.Errorf("wsauth: slack: apps.connections.open refused: %q", reason)
	}
	if out.URL == "" {
		return nil, errors.New(`wsauth: slack: apps.connections.open answered "ok" without a url`)
	}
	hs.AddSecret(out.URL)
	u, err := url.Parse(out.URL)
	if err != nil {
		// url.Parse quotes its input in the error.
		return nil, errors.New("wsauth: slack: apps.connections.open answered with a url that does not parse")
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
		return nil, fmt.Errorf("wsauth: slack: apps.connections.open answered with a %q URL, not ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("wsauth: slack: apps.connections.open answered with a url without a host")
	}
	if err := hs.CheckTransport(u); err != nil {
		return nil, err
	}
	return u, nil
}

// Dialect speaks Socket Mode's connection-level messages; see the package
// documentation.
type Dialect struct{}

type message struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Open implements wsauth.Dialect: it waits for hello. The credential is the
// URL itself, so an in-band token, if any, is not sent.
func (Dialect) Open(ctx context.Context, conn wsauth.Conn, _ wsauth.Proof) (wsauth.Opened, error) {
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return wsauth.Opened{}, err
	}
	var m message
	if typ != wsauth.MessageText || json.Unmarshal(data, &m) != nil {
		return wsauth.Opened{}, errors.New("wsauth: slack: expected hello as the server's first message")
	}
	switch m.Type {
	case "hello":
		return wsauth.Opened{Verdict: wsauth.VerdictExplicit}, nil
	case "disconnect":
		return wsauth.Opened{}, fmt.Errorf("wsauth: slack: the server sent disconnect (%q) instead of hello", m.Reason)
	}
	return wsauth.Opened{}, fmt.Errorf("wsauth: slack: expected hello as the server's first message, got %q", m.Type)
}

var control = [][]byte{[]byte(`"disconnect"`), []byte(`"hello"`)}

// Inspect implements wsauth.Dialect.
func (Dialect) Inspect(typ wsauth.MessageType, data []byte) wsauth.Inbound {
	if typ != wsauth.MessageText || !wire.MentionsAny(data, control...) {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	var m message
	if json.Unmarshal(data, &m) != nil {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	switch m.Type {
	case "disconnect":
		return wsauth.Inbound{Kind: wsauth.InboundGoingAway, Message: m.Reason}
	case "hello":
		return wsauth.Inbound{Kind: wsauth.InboundIgnore}
	}
	return wsauth.Inbound{Kind: wsauth.InboundData}
}

package wsauth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// defaultTicketParam is the query parameter TicketAuth uses by default.
const defaultTicketParam = "ticket"

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
	param := cmp.Or(a.Param, defaultTicketParam)
	hs.AddSecret(t)
	hs.AddSecretParam(param)
	setQuery(hs.URL, param, t)
	return Proof{Expiry: tok.Expiry, Provisional: true}, nil
}

// TokenSource implements TokenSourcer: the provider's token cache.
func (a *TicketAuth) TokenSource() oauth2.TokenSource { return a.ts.init(a.Tokens) }

// fetch calls the ticket endpoint once.
func (a *TicketAuth) fetch(ctx context.Context, hs *Handshake, tok *oauth2.Token) (string, error) {
	if a.Endpoint == "" {
		return "", errors.New("wsauth: TicketAuth.Endpoint is empty")
	}
	body, err := a.ts.postBearer(ctx, hs, a.HTTPClient, a.Endpoint, tok, nil)
	if err != nil {
		return "", err
	}
	// The ticket's expires_in is the server's business: a ticket is used
	// at once, and only once.
	var out struct {
		Ticket string `json:"ticket"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Ticket == "" {
		// The body may hold the ticket itself; never quote it.
		return "", errors.New(`wsauth: ticket endpoint answered without a {"ticket":…} JSON object`)
	}
	return out.Ticket, nil
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
		return nil, errors.New("wsauth: the ticket endpoint's URL does not parse")
	}
	if err := hs.CheckTransport(u); err != nil {
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
		herr := hs.RefusalError("ticket", resp)
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

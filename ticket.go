package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	// A rejected ticket says nothing about the bearer token that bought it:
	// the next ticket is new anyway. Only an expired session asks for a
	// fresh bearer too.
	tokWhy := why
	if tokWhy == ReasonRejected {
		tokWhy = ReasonReconnect
	}
	tok, err := a.ts.token(ctx, a.Tokens, tokWhy)
	if err != nil {
		return Proof{}, err
	}
	hs.AddSecret(tok.AccessToken)
	t, err := a.fetch(ctx, hs, tok)
	if err != nil {
		return Proof{}, err
	}
	param := orDefault(a.Param, DefaultTicketParam)
	hs.AddSecret(t.Value)
	hs.AddSecretParam(param)
	setQuery(hs.URL, param, t.Value)
	return Proof{Expiry: tok.Expiry}, nil
}

func (a *TicketAuth) tokenCache() *TokenCache { return a.ts.init(a.Tokens) }

// fetch calls the ticket endpoint once.
func (a *TicketAuth) fetch(ctx context.Context, hs *Handshake, tok *oauth2.Token) (Ticket, error) {
	if a.Endpoint == "" {
		return Ticket{}, errors.New("wsauth: TicketAuth.Endpoint is empty")
	}
	u, err := url.Parse(a.Endpoint)
	if err != nil {
		return Ticket{}, fmt.Errorf("wsauth: ticket endpoint: %w", err)
	}
	if err := checkTransport(u, hs.AllowInsecure); err != nil {
		return Ticket{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.Endpoint, http.NoBody)
	if err != nil {
		return Ticket{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	hc := a.HTTPClient
	if hc == nil {
		hc = hs.HTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Ticket{}, hs.red.Error(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		herr := httpErrorFrom("ticket", resp, hs.red)
		if herr.Rejected() {
			a.ts.cache.Reject(tok)
		}
		return Ticket{}, herr
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTicketBody))
	if err != nil {
		return Ticket{}, hs.red.Error(fmt.Errorf("wsauth: reading ticket: %w", err))
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

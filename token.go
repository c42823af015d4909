package wsauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// defaultEarlyExpiry is how long before its Expiry a cached token is
// treated as expired, so that it is never sent with seconds to live. For a
// token that lives less than four times that, the margin is a quarter of
// its lifetime instead.
const defaultEarlyExpiry = 10 * time.Second

// TokenFunc is a token source that takes a context, for sources whose fetch
// should stop when the client gives up on it. It also satisfies
// oauth2.TokenSource (with context.Background).
//
// Wrapping clientcredentials.Config.Token in a TokenFunc gives a source that
// fetches a new token on every call, leaving caching to TokenCache:
//
//	src := wsauth.TokenFunc(cfg.Token)
type TokenFunc func(ctx context.Context) (*oauth2.Token, error)

// Token implements oauth2.TokenSource.
func (f TokenFunc) Token() (*oauth2.Token, error) { return f(context.Background()) }

// StaticToken returns a source that always yields the same bearer token.
// After the server refuses it the client has nothing fresh to offer: the
// token cache answers ErrCredentialRejected instead of sending it again,
// which counts as a refusal, so the client stops with a GaveUpError once
// ReconnectPolicy.MaxAuthFailures is reached.
func StaticToken(token string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})
}

// TokenCache wraps a token source: it hands out the cached token until
// shortly before the token's Expiry (10s by default, see NewTokenCache),
// fetches at most once at a time (concurrent callers wait for the fetch in
// flight and share its result), forgets a token on Invalidate, and never
// hands out a token again once Reject has been called for it. A token
// without an Expiry that is a JWT gets the expiry of its exp claim (read,
// not verified: the server verifies), so that refreshes plan ahead of it.
// The zero value is not usable; call NewTokenCache.
//
// Providers wrap their token source in a TokenCache unless it is one
// already, and the built-in ones lend it to the refresher (TokenSourcer).
// Pass the same *TokenCache to the providers of several clients to share
// tokens between them; a provider of your own that does not implement
// TokenSourcer lends its cache to the refresher through
// RenewalPolicy.Tokens.
type TokenCache struct {
	src   TokenFunc          // the source, when it takes a context
	plain oauth2.TokenSource // the source otherwise
	early time.Duration

	// lock is a mutex that a waiter can give up on when its context ends.
	lock     chan struct{}
	tok      *oauth2.Token
	fetched  time.Time // when tok came from the source
	rejected map[[32]byte]struct{}
	order    [][32]byte
}

// NewTokenCache wraps src; a src that is a *TokenCache already is returned
// as it is. early is how long before a token's Expiry it is no longer
// handed out; zero or negative means 10s. For a token that lives less than
// four times early (counted from when it was fetched), the margin is a
// quarter of its lifetime instead. A TokenFunc source receives the
// caller's context.
func NewTokenCache(src oauth2.TokenSource, early time.Duration) *TokenCache {
	if tc, ok := src.(*TokenCache); ok {
		return tc
	}
	if early <= 0 {
		early = defaultEarlyExpiry
	}
	fn, _ := src.(TokenFunc)
	return &TokenCache{
		src:   fn,
		plain: src,
		early: early,
		lock:  make(chan struct{}, 1),
	}
}

// asTokenCache returns src as a cache, wrapping it when needed; nil stays nil.
func asTokenCache(src oauth2.TokenSource) *TokenCache {
	if src == nil {
		return nil
	}
	return NewTokenCache(src, 0)
}

// Token implements oauth2.TokenSource.
func (c *TokenCache) Token() (*oauth2.Token, error) {
	return c.TokenContext(context.Background())
}

// TokenContext returns a valid token, fetching one if the cached token is
// missing, near expiry or invalidated.
func (c *TokenCache) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	return c.get(ctx, time.Time{})
}

// tokenAfter returns a token that is still usable at t, outside its
// expiry margin, when the source can give one: the refresher asks for a
// token that outlives the session it is about to extend, so a refresh
// never carries the token the session already rests on.
func (c *TokenCache) tokenAfter(ctx context.Context, t time.Time) (*oauth2.Token, error) {
	return c.get(ctx, t)
}

// Invalidate forgets tok (with tok nil, whatever is cached) so that the
// next call fetches from the source: the server ended the session and the
// client wants fresh credentials. A source that can only return the same
// token may still hand it out again; see Reject.
func (c *TokenCache) Invalidate(tok *oauth2.Token) { c.forget(tok, false) }

// Reject forgets tok (with tok nil, whatever is cached) and makes sure it
// is never handed out again: the server refused it. When the source returns
// it anyway, the cache returns ErrCredentialRejected instead.
func (c *TokenCache) Reject(tok *oauth2.Token) { c.forget(tok, true) }

// maxRejected bounds the memory of rejected tokens; a client rejected this
// often has long since given up.
const maxRejected = 64

func (c *TokenCache) forget(tok *oauth2.Token, hard bool) {
	c.lock <- struct{}{}
	defer func() { <-c.lock }()
	if tok == nil {
		tok = c.tok
	}
	if tok == nil || tok.AccessToken == "" {
		return
	}
	if c.tok != nil && c.tok.AccessToken == tok.AccessToken {
		c.tok = nil
	}
	if !hard {
		return
	}
	d := digest(tok.AccessToken)
	if _, ok := c.rejected[d]; ok {
		return
	}
	if c.rejected == nil {
		c.rejected = make(map[[32]byte]struct{})
	}
	c.rejected[d] = struct{}{}
	c.order = append(c.order, d)
	if len(c.order) > maxRejected {
		delete(c.rejected, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *TokenCache) get(ctx context.Context, after time.Time) (*oauth2.Token, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()

	now := time.Now()
	at := now
	if after.After(now) {
		at = after
	}
	if c.usable(c.tok, at) {
		return c.tok, nil
	}
	tok, err := c.fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("wsauth: token source: %w", tokenEndpointError(err, c.tok))
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, errors.New("wsauth: token source returned an empty token")
	}
	if c.isRejected(tok) {
		return nil, fmt.Errorf("wsauth: token source returned the token the server rejected: %w", ErrCredentialRejected)
	}
	if tok.Expiry.IsZero() {
		if exp := jwtExpiry(tok.AccessToken); !exp.IsZero() {
			cp := *tok
			cp.Expiry = exp
			tok = &cp
		}
	}
	c.tok, c.fetched = tok, now
	return tok, nil
}

// fetch asks the source for a token, with ctx when it takes one.
func (c *TokenCache) fetch(ctx context.Context) (*oauth2.Token, error) {
	if c.src != nil {
		return c.src(ctx)
	}
	return c.plain.Token()
}

// isRejected reports whether the server refused tok. Most caches never
// see a refusal, and then it hashes nothing.
func (c *TokenCache) isRejected(tok *oauth2.Token) bool {
	if len(c.rejected) == 0 {
		return false
	}
	_, bad := c.rejected[digest(tok.AccessToken)]
	return bad
}

// usable reports whether tok may still be handed out at t: known, not
// rejected, and not within the margin of its expiry.
func (c *TokenCache) usable(tok *oauth2.Token, t time.Time) bool {
	if tok == nil || tok.AccessToken == "" {
		return false
	}
	if c.isRejected(tok) {
		return false
	}
	if tok.Expiry.IsZero() {
		return true
	}
	early := c.early
	if life := tok.Expiry.Sub(c.fetched); life < 4*early {
		early = life / 4
	}
	return t.Add(early).Before(tok.Expiry)
}

// jwtExpiry returns the exp claim of a JWT in compact form, zero when s is
// not one or has no usable exp.
func jwtExpiry(s string) time.Time {
	_, rest, ok := strings.Cut(s, ".")
	if !ok {
		return time.Time{}
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp == "" {
		return time.Time{}
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1<<40 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// digest keeps rejected tokens as hashes: the cache need not hold secrets
// it will never send.
func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// tokenEndpointError turns an OAuth 2.0 token endpoint's refusal into an
// HTTPError, so that the reconnect policy treats a bad client secret (401)
// as a rejected credential and a busy endpoint (429, 503) as "try later".
func tokenEndpointError(err error, known *oauth2.Token) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return err
	}
	var red redactor
	if known != nil {
		red.Add(known.AccessToken, known.RefreshToken)
	}
	return refusal("token", re.Response, re.Body, &red)
}

package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Identity is what a Verifier learns from a valid token.
type Identity struct {
	// Subject names the principal; it is never empty for a valid token.
	Subject string
	// Expiry is when the token stops being valid; the zero time means the token carries no
	// expiry. A connection authenticated by the token never outlives it.
	Expiry time.Time
	// SessionTTL overrides Config.SessionTTL for connections of this principal; 0 means use
	// Config.SessionTTL, a negative value means no server-imposed lifetime (Expiry still applies).
	SessionTTL time.Duration
}

// Verifier checks a bearer token. Implementations must be safe for concurrent use and must
// return an error wrapping ErrInvalidToken for a token they refuse. The error must not contain
// the token.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// ErrInvalidToken is wrapped by every error a Verifier returns for a refused token: malformed,
// badly signed, expired or otherwise unacceptable.
var ErrInvalidToken = errors.New("wsauth/server: invalid token")

// Errors of the HMAC issuer; each wraps ErrInvalidToken. They say why, never what the token was.
var (
	errMalformed  = fmt.Errorf("%w: malformed", ErrInvalidToken)
	errAlgorithm  = fmt.Errorf("%w: unsupported algorithm", ErrInvalidToken)
	errSignature  = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	errExpired    = fmt.Errorf("%w: expired", ErrInvalidToken)
	errNoSubject  = fmt.Errorf("%w: no subject", ErrInvalidToken)
	errNoExpiry   = fmt.Errorf("%w: no expiry", ErrInvalidToken)
	errBadExpiry  = fmt.Errorf("%w: expiry out of range", ErrInvalidToken)
	errEmptyToken = fmt.Errorf("%w: empty", ErrInvalidToken)
)

// maxTokenLen bounds the input Verify will look at; tokens minted here are a few hundred
// bytes, and a bound keeps hostile input from costing decoding work.
const maxTokenLen = 8 << 10

// maxNumericDate is 9999-12-31T23:59:59Z; later expiries are refused rather than overflowing
// time arithmetic.
const maxNumericDate = 253402300799

// b64 decodes the parts of a token strictly: the unused bits of the last character must be
// zero, so that one token has one spelling, and changing any character of a valid token
// makes it invalid.
var b64 = base64.RawURLEncoding.Strict()

// hs256Header is the fixed, pre-encoded JOSE header of every token the issuer mints.
var hs256Header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// HMACIssuer mints and verifies HMAC-SHA256 signed tokens in JWT compact form
// (header {"alg":"HS256","typ":"JWT"}, claims sub, iat, exp, jti). It is meant for demos and
// tests; it implements Verifier and is safe for concurrent use.
type HMACIssuer struct {
	key []byte
	now func() time.Time
}

// NewHMACIssuer returns an issuer signing with key, which must be at least 16 bytes long
// (32 random bytes, as RandomKey returns, is the recommended size).
func NewHMACIssuer(key []byte) (*HMACIssuer, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("wsauth/server: HMAC key is %d bytes, need at least 16", len(key))
	}
	return &HMACIssuer{key: bytes.Clone(key), now: time.Now}, nil
}

// RandomKey returns 32 bytes from crypto/rand, suitable for NewHMACIssuer.
func RandomKey() []byte {
	return randomBytes(32)
}

// Issue mints a token for subject that expires ttl from now; ttl must be positive.
func (i *HMACIssuer) Issue(subject string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("wsauth/server: token lifetime %v is not positive", ttl)
	}
	return i.IssueWithExpiry(subject, i.now().Add(ttl))
}

// IssueWithExpiry mints a token for subject that expires at exp (whole seconds, rounded down).
// exp may be in the past, which lets tests mint already-expired tokens.
func (i *HMACIssuer) IssueWithExpiry(subject string, exp time.Time) (string, error) {
	if subject == "" {
		return "", errors.New("wsauth/server: token subject is empty")
	}
	if exp.Unix() < 0 || exp.Unix() > maxNumericDate {
		return "", errors.New("wsauth/server: token expiry out of range")
	}
	claims, err := json.Marshal(tokenClaims{
		Sub: subject,
		Iat: i.now().Unix(),
		Exp: exp.Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(randomBytes(16)),
	})
	if err != nil {
		return "", fmt.Errorf("wsauth/server: encoding claims: %w", err)
	}
	signed := hs256Header + "." + base64.RawURLEncoding.EncodeToString(claims)
	return signed + "." + base64.RawURLEncoding.EncodeToString(i.sign(signed)), nil
}

// Verify checks the token's algorithm (HS256 only), its signature (in constant time) and its
// expiry. It never panics, whatever the input; every refusal wraps ErrInvalidToken.
func (i *HMACIssuer) Verify(_ context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, errEmptyToken
	}
	if len(token) > maxTokenLen {
		return Identity{}, errMalformed
	}
	header, rest, ok := strings.Cut(token, ".")
	if !ok {
		return Identity{}, errMalformed
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return Identity{}, errMalformed
	}

	// The header is checked before the signature so that "alg":"none" and friends are refused
	// for what they are; the signature is checked before the claims are trusted.
	rawHeader, err := b64.DecodeString(header)
	if err != nil {
		return Identity{}, errMalformed
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return Identity{}, errMalformed
	}
	if h.Alg != "HS256" {
		return Identity{}, errAlgorithm
	}
	gotSig, err := b64.DecodeString(sig)
	if err != nil {
		return Identity{}, errMalformed
	}
	if !hmac.Equal(gotSig, i.sign(header+"."+payload)) {
		return Identity{}, errSignature
	}

	rawClaims, err := b64.DecodeString(payload)
	if err != nil {
		return Identity{}, errMalformed
	}
	var c struct {
		Sub string   `json:"sub"`
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(rawClaims, &c); err != nil {
		return Identity{}, errMalformed
	}
	if c.Sub == "" {
		return Identity{}, errNoSubject
	}
	if c.Exp == nil {
		return Identity{}, errNoExpiry
	}
	if *c.Exp < 0 || *c.Exp > maxNumericDate {
		return Identity{}, errBadExpiry
	}
	sec, frac := math.Modf(*c.Exp)
	exp := time.Unix(int64(sec), int64(frac*1e9))
	if !i.now().Before(exp) {
		return Identity{}, errExpired
	}
	return Identity{Subject: c.Sub, Expiry: exp}, nil
}

func (i *HMACIssuer) sign(signed string) []byte {
	m := hmac.New(sha256.New, i.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

type tokenClaims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

// randomBytes returns n bytes from crypto/rand, which never fails on supported platforms
// (it panics itself if the OS source is broken, since Go 1.24).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// randomID returns 256 random bits, base64url without padding (43 characters).
func randomID() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

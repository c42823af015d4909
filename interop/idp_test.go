package interop

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2/clientcredentials"
)

// The OAuth 2.0 client every client under test is (client-credentials
// grant), and the subject of every token and login.
const (
	botID     = "interop-bot"
	botSecret = "interop-bot-secret"
)

// idp is a tiny OAuth 2.0 authorization server: the client-credentials
// grant (RFC 6749 §4.4) at POST /oauth/token, issuing HS256 JWT access
// tokens (sub, exp, iat, jti). The plain servers, the Centrifuge node and
// the gqlgen server trust its key, the way services trust their identity
// provider; tests also mint long-lived tokens (a bot's static token) and
// forged ones with it.
type idp struct {
	srv *httptest.Server
	key []byte
	// ttl is the lifetime of the tokens the endpoint issues, whole
	// seconds.
	ttl time.Duration

	issued atomic.Int64
	// expireNext makes that many of the next tokens issued expired
	// already, as an identity provider with a skewed clock would.
	expireNext atomic.Int64
}

func newIDP(t *testing.T, ttl time.Duration) *idp {
	t.Helper()
	p := &idp{key: []byte(randomString()), ttl: ttl}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) tokenURL() string { return p.srv.URL + "/oauth/token" }

// config is what a client of the endpoint configures.
func (p *idp) config() *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: botID, ClientSecret: botSecret, TokenURL: p.tokenURL()}
}

func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	case id != botID || secret != botSecret:
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	exp := wholeSecondAfter(time.Now().Add(p.ttl))
	if takeOne(&p.expireNext) {
		exp = time.Now().Add(-time.Minute)
	}
	p.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": p.sign(p.key, botID, exp),
		"token_type":   "Bearer",
		// The token lives at least this long: its exp is rounded up to
		// the whole second a JWT can say.
		"expires_in": int(p.ttl / time.Second),
	})
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// mint returns a token for sub that lives ttl.
func (p *idp) mint(sub string, ttl time.Duration) string {
	return p.sign(p.key, sub, wholeSecondAfter(time.Now().Add(ttl)))
}

// forged returns a well-formed token for sub signed with another key.
func (p *idp) forged(sub string) string {
	return p.sign([]byte(randomString()), sub, time.Now().Add(time.Hour))
}

func (p *idp) sign(key []byte, sub string, exp time.Time) string {
	claims := jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(time.Now()),
		ExpiresAt: jwt.NewNumericDate(exp),
		// Two tokens minted in the same second must differ.
		ID: randomString(),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// verify checks a token's signature and expiry; errors.Is(err,
// jwt.ErrTokenExpired) tells an expired token from a bad one.
func (p *idp) verify(token string) (sub string, exp time.Time, err error) {
	var claims jwt.RegisteredClaims
	_, err = jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return p.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired())
	if err != nil {
		return "", time.Time{}, err
	}
	return claims.Subject, claims.ExpiresAt.Time, nil
}

// takeOne decrements n if it is positive and reports whether it did.
func takeOne(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// wholeSecondAfter rounds t up to a whole second: a JWT's exp has no
// fractions, and a token must not end before the lifetime announced.
func wholeSecondAfter(t time.Time) time.Time {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		return s.Add(time.Second)
	}
	return t
}

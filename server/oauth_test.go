package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestOAuthClientCredentials(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Clients = map[string]string{"bot-1": "s3cret&=%"}
		c.TokenTTL = 10 * time.Minute
	})
	ctx := context.WithValue(ctxT(t), oauth2.HTTPClient, e.hs.Client())
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{
			ClientID:     "bot-1",
			ClientSecret: "s3cret&=%",
			TokenURL:     e.hs.URL + "/oauth/token",
			Scopes:       []string{"ws"},
			AuthStyle:    style,
		}
		tok, err := cfg.Token(ctx)
		require.NoError(t, err)
		require.Equal(t, "Bearer", tok.TokenType)
		require.WithinDuration(t, time.Now().Add(10*time.Minute), tok.Expiry, time.Minute)

		id, err := e.issuer.Verify(ctxT(t), tok.AccessToken)
		require.NoError(t, err)
		require.Equal(t, "bot-1", id.Subject)

		c := e.mustDialAuthed(t, e.wsURL(""), headerOpts(tok.AccessToken))
		echo(t, c, "a bot")
		require.Equal(t, "bot-1", e.nextConn(t).Principal().Subject)
	}

	bad := clientcredentials.Config{ClientID: "bot-1", ClientSecret: "wrong", TokenURL: e.hs.URL + "/oauth/token"}
	_, err := bad.Token(ctx)
	require.Error(t, err)
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "invalid_client", re.ErrorCode)
	require.EqualValues(t, 2, e.srv.Stats().TokensIssued)
}

func TestOAuthErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Clients = map[string]string{"bot-1": "pw"} })
	form := func(v url.Values) (int, string, http.Header) {
		resp, body := e.post(t, "/oauth/token", "application/x-www-form-urlencoded", v.Encode(), nil)
		var out struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &out)
		return resp.StatusCode, out.Error, resp.Header
	}
	status, code, _ := form(url.Values{"grant_type": {"password"}, "client_id": {"bot-1"}, "client_secret": {"pw"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "unsupported_grant_type", code)
	status, code, _ = form(url.Values{"client_id": {"bot-1"}, "client_secret": {"pw"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_request", code)
	status, code, _ = form(url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"pw"}})
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "invalid_client", code)

	resp, _ := e.post(t, "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials",
		http.Header{"Authorization": {"Basic " + basic("bot-1", "nope")}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	// Without Clients the endpoint does not exist.
	plain := newEnv(t)
	resp, _ = plain.post(t, "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func basic(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestTLS(t *testing.T) {
	e := startEnv(t, true)
	tok := e.token(t, "alice")
	wss := "wss" + strings.TrimPrefix(e.hs.URL, "https") + "/ws"

	c := e.mustDialAuthed(t, wss+"?ticket="+e.ticket(t, tok), nil)
	echo(t, c, "over TLS")

	resp, ck := e.login(t, `{"token":"`+tok+`"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NotNil(t, ck)
	require.True(t, ck.Secure, "the cookie is Secure over TLS")
	echo(t, e.mustDialAuthed(t, wss, e.cookieOpts(ck)), "cookie over TLS")

	// A client without the server's certificate fails the TLS handshake.
	_, _, err := websocket.Dial(ctxT(t), wss+"?token="+tok, &websocket.DialOptions{HTTPClient: &http.Client{}})
	require.Error(t, err)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

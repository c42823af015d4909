package docs_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// The code of SECURITY.md's Go blocks.

func redirectSafeTokens(cfg *clientcredentials.Config) oauth2.TokenSource {
	// snippet: security-redirect
	hc := &http.Client{CheckRedirect: wsauth.RedirectPolicy} // same-origin redirects only, never a Referer
	tokens := wsauth.TokenFunc(func(ctx context.Context) (*oauth2.Token, error) {
		return cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	})
	// end snippet
	return tokens
}

func TestSecurityRedirectPolicy(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	cfg := &clientcredentials.Config{ClientID: wsauthtest.ClientID, ClientSecret: wsauthtest.ClientSecret, TokenURL: srv.TokenURL()}
	tok, err := redirectSafeTokens(cfg).Token()
	require.NoError(t, err)
	require.NotEmpty(t, tok.AccessToken)

	// The same token URL behind a redirect to another origin: the client
	// secret never gets there.
	var reached atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	t.Cleanup(other.Close)
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/oauth/token", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(moved.Close)
	cfg.TokenURL = moved.URL + "/oauth/token"
	_, err = redirectSafeTokens(cfg).Token()
	require.Error(t, err)
	require.ErrorIs(t, err, wsauth.ErrRedirect)
	require.Zero(t, reached.Load())
}

func behindProxies(verifier server.Verifier, handler server.Handler) (*server.Server, *http.Server, error) {
	// snippet: security-server
	cfg := server.Config{
		Verifier:             verifier,
		Handler:              handler,
		AllowedOrigins:       []string{"https://app.example.com"}, // exact: scheme, host and port
		TrustedProxies:       []string{"10.0.0.0/8"},              // your load balancers: only their X-Forwarded-For counts
		MaxConnsPerPrincipal: 100,                                 // default: no cap
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	lim, err := server.NewConnLimiter(server.ConnLimits{TrustedProxies: cfg.TrustedProxies}) // 100 per IP, 1000 in all
	if err != nil {
		return nil, nil, err
	}
	hs := server.NewHTTPServer(srv, lim) // ReadHeaderTimeout 10s, IdleTimeout 60s, MaxHeaderBytes 64 KiB
	// end snippet
	return srv, hs, nil
}

func TestSecurityServer(t *testing.T) {
	iss, err := server.NewHMACIssuer(server.RandomKey())
	require.NoError(t, err)
	srv, hs, err := behindProxies(iss, server.Echo())
	require.NoError(t, err)
	require.Equal(t, server.DefaultReadHeaderTimeout, hs.ReadHeaderTimeout)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(ln) })

	token, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)
	c := clienttest.Connected(t, "ws://"+ln.Addr().String()+"/ws", &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: wsauth.StaticToken(token)}})
	require.Equal(t, "hello", clienttest.Ask(t, c, "hello"))
	require.NoError(t, c.Close())

	require.NoError(t, srv.Close())
	ctx, cancel := context.WithTimeout(context.Background(), clienttest.WaitLong)
	defer cancel()
	require.NoError(t, hs.Shutdown(ctx))
	wg.Wait()
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
}

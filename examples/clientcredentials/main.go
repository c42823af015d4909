// Command clientcredentials is a service that gets its tokens with the
// OAuth 2.0 client-credentials grant (golang.org/x/oauth2/clientcredentials)
// and sends them in the Authorization header of the WebSocket handshake.
// wsauth.TokenFunc(cfg.Token) fetches a new token on every call and leaves
// caching to the client, which fetches once, again shortly before the token
// expires, and again when the server rejects it, and never two fetches at
// once. It sends one message and prints the answer.
//
//	go run ./examples/clientcredentials     # against the reference server, in-process
//	WSAUTH_CLIENT_SECRET=… go run ./examples/clientcredentials -url wss://api.example.com/ws \
//		-token-url https://auth.example.com/oauth/token -client-id reporting-bot [-scope stream]
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"strings"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process")
	tokenURL := flag.String("token-url", "", "OAuth 2.0 token endpoint")
	clientID := flag.String("client-id", "", "OAuth 2.0 client id")
	clientSecret := flag.String("client-secret", os.Getenv("WSAUTH_CLIENT_SECRET"), "OAuth 2.0 client secret (default $WSAUTH_CLIENT_SECRET)")
	scope := flag.String("scope", "", "space-separated scopes to ask for")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("clientcredentials", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL, *tokenURL = local.WSURL(), local.HTTPURL()+"/oauth/token"
			*clientID, *clientSecret = exampleserver.ClientID, exampleserver.ClientSecret
		}
		cfg := &clientcredentials.Config{
			ClientID:     *clientID,
			ClientSecret: *clientSecret,
			TokenURL:     *tokenURL,
			Scopes:       strings.Fields(*scope),
		}
		return run(ctx, *wsURL, cfg, *message)
	})
}

func run(ctx context.Context, wsURL string, cfg *clientcredentials.Config, message string) error {
	if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return errors.New("-url needs -token-url, -client-id and -client-secret (or $WSAUTH_CLIENT_SECRET)")
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth:    &wsauth.HeaderAuth{Tokens: wsauth.TokenFunc(cfg.Token)},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	return exampleserver.Echo(ctx, c, message)
}

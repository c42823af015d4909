// Command header connects with "Authorization: Bearer <token>" on the
// WebSocket handshake. Browsers cannot set that header; a Go program can,
// and it keeps the token out of URLs. A server that refuses the token
// answers 401 before the upgrade, and the client reports the status. It
// sends one message and prints the answer.
//
//	go run ./examples/header     # against the reference server, in-process
//	go run ./examples/header -url wss://api.example.com/ws -token "$TOKEN"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process")
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token (default $WSAUTH_TOKEN)")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("header", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL = local.WSURL()
			*token = local.Token(exampleserver.User, time.Hour)
		}
		return run(ctx, *wsURL, *token, *message)
	})
}

func run(ctx context.Context, wsURL, token, message string) error {
	if token == "" {
		return errors.New("-url needs -token (or $WSAUTH_TOKEN)")
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth:    &wsauth.HeaderAuth{Tokens: wsauth.StaticToken(token)},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		// A refused token is an *HTTPError with the status, inside a
		// *GaveUpError once the client stops trying.
		var he *wsauth.HTTPError
		if errors.As(err, &he) {
			return fmt.Errorf("the server answered %d: %w", he.StatusCode, err)
		}
		return err
	}
	defer c.Close()

	return exampleserver.Echo(ctx, c, message)
}

// Command query connects with the token in the query string
// (?token=…): the simplest pattern, and the leakiest, because URLs end up
// in access logs, proxies and browser history. Use it only with
// short-lived tokens; prefer the ticket pattern. It sends one message and
// prints the answer.
//
//	go run ./examples/query     # against the reference server, in-process
//	go run ./examples/query -url wss://api.example.com/ws -token "$TOKEN" [-param access_token]
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process")
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token, short-lived (default $WSAUTH_TOKEN)")
	param := flag.String("param", "token", "query parameter that carries the token")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("query", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL = local.WSURL()
			// A short lifetime, as this pattern demands.
			*token = local.Token(exampleserver.User, 5*time.Minute)
		}
		return run(ctx, *wsURL, *token, *param, *message)
	})
}

func run(ctx context.Context, wsURL, token, param, message string) error {
	if token == "" {
		return errors.New("-url needs -token (or $WSAUTH_TOKEN)")
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		// Errors, events and logs show the parameter as REDACTED.
		Auth:    &wsauth.QueryAuth{Tokens: wsauth.StaticToken(token), Param: param},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	return exampleserver.Echo(ctx, c, message)
}

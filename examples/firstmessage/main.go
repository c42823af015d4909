// Command firstmessage connects with the token in the first message: the
// upgrade carries no credential, then the client sends
// {"type":"auth","token":…} and waits for the server's verdict (the
// reference server's auth_ok) before any message of its own goes out. The token stays out of URLs and headers; the
// server closes the socket (1008) if the auth message does not come within
// its deadline. It sends one message and prints the answer.
//
//	go run ./examples/firstmessage     # against the reference server, in-process
//	go run ./examples/firstmessage -url wss://api.example.com/ws -token "$TOKEN"
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
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token (default $WSAUTH_TOKEN)")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("firstmessage", func(ctx context.Context) error {
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
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(token)},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	// Had this been sent before Dial returned, it would have waited in the
	// queue until the server's auth_ok: never ahead of the auth message.
	return exampleserver.Echo(ctx, c, message)
}

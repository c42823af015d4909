// Command subprotocol connects with the bearer token inside
// Sec-WebSocket-Protocol, the way the Kubernetes API server accepts it:
// the client offers the real subprotocol and then
// "base64url.bearer.authorization.k8s.io.<base64url(token)>"; the server
// selects the real one and never echoes the token. Useful where a proxy
// drops the Authorization header. It sends one message and prints the
// answer.
//
//	go run ./examples/subprotocol     # against the reference server, in-process
//	go run ./examples/subprotocol -url wss://api.example.com/ws -token "$TOKEN" -subprotocol chat.v1
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
	subprotocol := flag.String("subprotocol", exampleserver.Subprotocol, "the application subprotocol offered before the bearer entry")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("subprotocol", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL = local.WSURL()
			*token = local.Token(exampleserver.User, time.Hour)
		}
		return run(ctx, *wsURL, *token, *subprotocol, *message)
	})
}

func run(ctx context.Context, wsURL, token, subprotocol, message string) error {
	if token == "" {
		return errors.New("-url needs -token (or $WSAUTH_TOKEN)")
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth: &wsauth.SubprotocolAuth{
			Tokens:      wsauth.StaticToken(token),
			Subprotocol: subprotocol,
			Prefix:      wsauth.KubernetesBearerPrefix, // the default
		},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("the server selected subprotocol %q\n", c.Subprotocol())

	return exampleserver.Echo(ctx, c, message)
}

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
	"os/signal"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process")
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token (default $WSAUTH_TOKEN)")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if *wsURL == "" {
		local, err := exampleserver.Start()
		if err != nil {
			log.Fatal(err)
		}
		defer local.Close()
		*wsURL = local.WSURL()
		*token = local.Token(exampleserver.User, time.Hour)
		fmt.Println("reference server on", local.HTTPURL())
	}
	if err := run(ctx, *wsURL, *token, *message); err != nil {
		log.Printf("header: %v", err)
		os.Exit(1)
	}
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

	if err := c.SendText(ctx, message); err != nil {
		return err
	}
	_, reply, err := c.Receive(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("sent %q, received %q\n", message, reply)
	return nil
}

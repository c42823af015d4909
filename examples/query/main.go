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
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token, short-lived (default $WSAUTH_TOKEN)")
	param := flag.String("param", wsauth.DefaultTokenParam, "query parameter that carries the token")
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
		// A short lifetime, as this pattern demands.
		*token = local.Token(exampleserver.User, 5*time.Minute)
		fmt.Println("reference server on", local.HTTPURL())
	}
	if err := run(ctx, *wsURL, *token, *param, *message); err != nil {
		log.Printf("query: %v", err)
		os.Exit(1)
	}
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

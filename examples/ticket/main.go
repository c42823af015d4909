// Command ticket connects with the ticket pattern, the one to prefer: the
// client POSTs the ticket endpoint with its bearer token, gets a
// single-use ticket that lives about 30 seconds, and dials with
// ?ticket=…. A leaked ticket is worthless, and the long-lived token never
// appears in a URL. It sends one message and prints the answer.
//
//	go run ./examples/ticket     # against the reference server, in-process
//	go run ./examples/ticket -url wss://api.example.com/ws \
//		-ticket-url https://api.example.com/api/ws-ticket -token "$TOKEN"
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
	ticketURL := flag.String("ticket-url", "", "ticket endpoint of the service (POST with the bearer token)")
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token for the ticket endpoint (default $WSAUTH_TOKEN)")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("ticket", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL, *ticketURL = local.WSURL(), local.HTTPURL()+"/api/ws-ticket"
			*token = local.Token(exampleserver.User, time.Hour)
		}
		return run(ctx, *wsURL, *ticketURL, *token, *message)
	})
}

func run(ctx context.Context, wsURL, ticketURL, token, message string) error {
	if ticketURL == "" || token == "" {
		return errors.New("-url needs -ticket-url and -token (or $WSAUTH_TOKEN)")
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth: &wsauth.TicketAuth{
			Endpoint: ticketURL,
			Tokens:   wsauth.StaticToken(token), // any oauth2.TokenSource
		},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	return exampleserver.Echo(ctx, c, message)
}

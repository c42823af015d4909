// Command bot keeps a subscription alive across reconnects. A
// subscription lives on one connection, so the bot subscribes in
// Options.OnConnect, which runs on every new connection after
// authentication and before any queued message: when the server restarts,
// the client reconnects with backoff, fetches a new ticket, and the bot is
// subscribed again without replaying anything else. The client's events
// show the way back.
//
// Without -url it starts the reference server in-process, takes it down
// for a second once it has seen some updates, brings it back on the same
// port, and exits 0 once the updates flow again. With -url it runs until
// interrupted.
//
//	go run ./examples/bot
//	go run ./examples/bot -url wss://api.example.com/ws \
//		-ticket-url https://api.example.com/api/ws-ticket -token "$TOKEN" -topic prices
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

// outage is how long the in-process server stays down.
const outage = time.Second

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process and restarts it once")
	ticketURL := flag.String("ticket-url", "", "ticket endpoint of the service (POST with the bearer token)")
	token := flag.String("token", os.Getenv("WSAUTH_TOKEN"), "bearer token for the ticket endpoint (default $WSAUTH_TOKEN)")
	topic := flag.String("topic", "prices", "topic to subscribe to; the bot sends \"subscribe <topic>\"")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	b := &bot{topic: *topic}
	if *wsURL == "" {
		local, err := exampleserver.Start()
		if err != nil {
			log.Fatal(err)
		}
		defer local.Close()
		*wsURL, *ticketURL = local.WSURL(), local.HTTPURL()+"/api/ws-ticket"
		*token = local.Token("price-bot", time.Hour)
		b.local = local
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		log.Println("reference server on", local.HTTPURL())
	}
	if *ticketURL == "" || *token == "" {
		log.Print("bot: -url needs -ticket-url and -token (or $WSAUTH_TOKEN)")
		os.Exit(2)
	}
	if err := b.run(ctx, *wsURL, *ticketURL, *token); err != nil {
		log.Printf("bot: %v", err)
		os.Exit(1)
	}
}

type bot struct {
	topic string
	// local is the in-process server, restarted once; nil with -url.
	local *exampleserver.Server
}

func (b *bot) run(ctx context.Context, wsURL, ticketURL, token string) error {
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth: &wsauth.TicketAuth{Endpoint: ticketURL, Tokens: wsauth.StaticToken(token)},
		OnConnect: func(ctx context.Context, s *wsauth.Session) error {
			log.Printf("subscribing to %s (attempt %d, credentials: %s)", b.topic, s.Attempt, s.Reason)
			return s.Send(ctx, wsauth.MessageText, []byte("subscribe "+b.topic))
		},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	var restarted chan error // made when the restart begins
	subscriptions, updates := 0, 0
	for {
		_, msg, err := c.Receive(ctx)
		if err != nil {
			if b.local == nil && errors.Is(err, context.Canceled) {
				return nil // interrupted: a clean stop
			}
			return err
		}
		log.Printf("received %q", msg)
		if strings.HasPrefix(string(msg), "subscribed to ") {
			subscriptions, updates = subscriptions+1, 0
			continue
		}
		updates++
		switch {
		case b.local == nil || updates < 2:
		case restarted == nil:
			restarted = make(chan error, 1)
			go func() { restarted <- b.restart() }()
		case subscriptions >= 2:
			if err := <-restarted; err != nil {
				return err
			}
			log.Printf("the bot survived the restart: subscribed again, updates flowing")
			return nil
		}
	}
}

// restart takes the in-process server down for a while and brings it back
// on the same port.
func (b *bot) restart() error {
	log.Printf("server: going down for %s", outage)
	b.local.Stop()
	time.Sleep(outage) // the outage itself
	log.Printf("server: back up")
	return b.local.Start()
}

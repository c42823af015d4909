package wsauth_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// exampleServer is the reference server on loopback, standing in for your
// service in these examples. It prints the verdict of every handshake, and
// its application echoes, except that "subscribe <topic>" is answered
// "subscribed to <topic>".
type exampleServer struct {
	ref    *server.Server
	hs     *httptest.Server
	issuer *server.HMACIssuer
	// WS is the WebSocket URL, HTTP the base URL of the endpoints.
	WS, HTTP string
}

func startExampleServer() *exampleServer {
	issuer, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		panic(err)
	}
	ref, err := server.New(server.Config{
		Verifier:       issuer,
		Issuer:         issuer,
		Handler:        exampleApp(),
		Users:          map[string]string{"alice": "alice-password"},
		Clients:        map[string]string{"reporting-bot": "bot-secret"},
		AllowedOrigins: []string{"https://app.example.com"},
		Subprotocols:   []string{"chat.v1"},
		OnAuth: func(ev server.AuthEvent) {
			switch {
			case ev.Stage != server.StageHandshake:
			case ev.OK:
				fmt.Printf("server: %s authenticated by %s\n", ev.Subject, ev.Method)
			default:
				fmt.Printf("server: refused a %s handshake: %s\n", ev.Method, ev.Reason)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(ref)
	return &exampleServer{ref: ref, hs: hs, issuer: issuer, HTTP: hs.URL, WS: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

// Close closes the WebSockets, which http.Server does not track, then the
// listener.
func (s *exampleServer) Close() {
	s.ref.Close()
	s.hs.Close()
}

// token mints a token the server accepts.
func (s *exampleServer) token(subject string) string {
	tok, err := s.issuer.Issue(subject, time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

func exampleApp() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if topic, ok := strings.CutPrefix(string(data), "subscribe "); ok {
				data = []byte("subscribed to " + topic)
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	})
}

// sayHello sends "hello" and prints what comes back.
func sayHello(ctx context.Context, c *wsauth.Client) {
	if err := c.SendText(ctx, "hello"); err != nil {
		fmt.Println("send:", err)
		return
	}
	_, msg, err := c.Receive(ctx)
	if err != nil {
		fmt.Println("receive:", err)
		return
	}
	fmt.Println("echo:", string(msg))
}

func ExampleTicketAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Before every connection attempt TicketAuth POSTs the ticket endpoint
	// with the bearer token, then dials with ?ticket=…, which the server
	// accepts once.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.TicketAuth{
			Endpoint: srv.HTTP + "/api/ws-ticket",
			Tokens:   wsauth.StaticToken(srv.token("alice")), // any oauth2.TokenSource
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: alice authenticated by ticket
	// echo: hello
}

func ExampleQueryAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The token goes in ?token=…, where access logs and proxies see it: use
	// it only with short-lived tokens.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.QueryAuth{Tokens: wsauth.StaticToken(srv.token("alice"))},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: alice authenticated by query
	// echo: hello
}

func ExampleFirstMessageAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The upgrade carries no credential; the first message is
	// {"type":"auth","token":…}, and nothing of the application's goes out
	// before the server's auth_ok.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(srv.token("alice"))},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: alice authenticated by first-message
	// echo: hello
}

func ExampleCookieAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// CookieAuth logs in when its jar has no session cookie, and again when
	// the server refuses or ends the session. The server checks Origin on
	// cookie-authenticated sockets, so the client sends one it allows.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.CookieAuth{
			LoginURL:  srv.HTTP + "/api/login",
			LoginBody: []byte(`{"username":"alice","password":"alice-password"}`),
			Origin:    "https://app.example.com",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: alice authenticated by cookie
	// echo: hello
}

func ExampleHeaderAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// "Authorization: Bearer …" on the upgrade: what a Go client can do and
	// a browser cannot.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.HeaderAuth{Tokens: wsauth.StaticToken(srv.token("alice"))},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: alice authenticated by header
	// echo: hello
}

func ExampleSubprotocolAuth() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The token rides in Sec-WebSocket-Protocol behind the Kubernetes
	// prefix, after the real subprotocol, which is the one the server
	// selects.
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.SubprotocolAuth{
			Tokens:      wsauth.StaticToken(srv.token("alice")),
			Subprotocol: "chat.v1",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	fmt.Println("subprotocol:", c.Subprotocol())
	// Output:
	// server: alice authenticated by subprotocol
	// echo: hello
	// subprotocol: chat.v1
}

// A service authenticates with the OAuth 2.0 client-credentials grant.
// clientcredentials.Config.Token fetches a new token on every call; wrapped
// in a TokenFunc, the client's TokenCache decides when to call it: once,
// then again shortly before the token expires or after the server rejected
// it.
func ExampleTokenFunc() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := &clientcredentials.Config{
		ClientID:     "reporting-bot",
		ClientSecret: "bot-secret",
		TokenURL:     srv.HTTP + "/oauth/token",
	}
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.HeaderAuth{Tokens: wsauth.TokenFunc(cfg.Token)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sayHello(ctx, c)
	// Output:
	// server: reporting-bot authenticated by header
	// echo: hello
}

// A bot keeps a subscription across reconnects: subscriptions live on the
// connection, so OnConnect subscribes again on every new one, before any
// queued message goes out. Here the server restarts (close 1012) and the
// bot carries on.
func ExampleOptions_onConnect() {
	srv := startExampleServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var mu sync.Mutex
	var timeline []string
	c, err := wsauth.Dial(ctx, srv.WS, &wsauth.Options{
		Auth: &wsauth.TicketAuth{Endpoint: srv.HTTP + "/api/ws-ticket", Tokens: wsauth.StaticToken(srv.token("price-bot"))},
		OnConnect: func(ctx context.Context, s *wsauth.Session) error {
			return s.Send(ctx, wsauth.MessageText, []byte("subscribe prices"))
		},
		OnEvent: func(e wsauth.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Kind {
			case wsauth.EventConnected:
				timeline = append(timeline, "connected")
			case wsauth.EventReconnecting:
				timeline = append(timeline, fmt.Sprintf("reconnecting after close %d %q: %s", e.Code, e.CloseReason, e.Action))
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	next := func() string {
		_, msg, err := c.Receive(ctx) // messages keep flowing across reconnects
		if err != nil {
			return err.Error()
		}
		return string(msg)
	}
	fmt.Println("bot:", next())
	srv.ref.CloseAll(websocket.StatusServiceRestart, "restarting") // what a restart looks like to the bot
	fmt.Println("bot:", next())
	c.Close() // delivers every pending event first
	for _, line := range timeline {
		fmt.Println("event:", line)
	}
	// Output:
	// server: price-bot authenticated by ticket
	// bot: subscribed to prices
	// server: price-bot authenticated by ticket
	// bot: subscribed to prices
	// event: connected
	// event: reconnecting after close 1012 "restarting": retry
	// event: connected
}

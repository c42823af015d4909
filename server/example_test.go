package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth/server"
)

// A reference server behind the recommended http.Server: timeouts, connection caps, and a
// shutdown that closes the WebSockets before the HTTP server.
func ExampleNewHTTPServer() {
	issuer, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		panic(err)
	}
	cfg := server.Config{
		Verifier:             issuer,
		Handler:              server.Echo(),
		AllowedOrigins:       []string{"https://app.example.com"},
		TrustedProxies:       []string{"10.0.0.0/8"}, // the load balancers, if any
		MaxConnsPerPrincipal: 100,
	}
	srv, err := server.New(cfg)
	if err != nil {
		panic(err)
	}
	lim, err := server.NewConnLimiter(server.ConnLimits{MaxPerIP: 100, MaxTotal: 1000, TrustedProxies: cfg.TrustedProxies})
	if err != nil {
		panic(err)
	}
	hs := server.NewHTTPServer(srv, lim)

	ln, err := net.Listen("tcp", "127.0.0.1:0") // in production: TLS, hs.ServeTLS
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, _ := issuer.Issue("alice", time.Hour)
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		panic(err)
	}
	_, msg, _ := c.Read(ctx)
	fmt.Println(strings.Contains(string(msg), `"auth_ok"`))
	c.Close(websocket.StatusNormalClosure, "")

	srv.Close()           // every WebSocket gets 1001; Shutdown would not know them
	hs.Shutdown(ctx)      // then the HTTP server
	fmt.Println(<-served) // http.ErrServerClosed
	// Output:
	// true
	// http: Server closed
}

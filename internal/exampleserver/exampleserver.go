// Package exampleserver runs the wsauth reference server in-process on
// 127.0.0.1 for the examples, so that `go run ./examples/X` works with no
// setup. It stands in for the service a real program would talk to.
package exampleserver

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// Demo credentials the local server accepts.
const (
	// User and Password log in at the login endpoint.
	User     = "alice"
	Password = "alice-password"
	// ClientID and ClientSecret are an OAuth 2.0 client of the token
	// endpoint (client-credentials grant).
	ClientID     = "reporting-bot"
	ClientSecret = "bot-secret"
	// Origin is the browser origin the server allows.
	Origin = "https://app.example.com"
	// Subprotocol is the application subprotocol the server selects.
	Subprotocol = "chat.v1"
)

// TickEvery is how often a subscribed topic gets an update.
const TickEvery = 300 * time.Millisecond

// Server is the reference server on a loopback port, which it keeps across
// Stop and Start.
type Server struct {
	issuer *server.HMACIssuer
	cfg    server.Config
	addr   string

	mu   sync.Mutex
	srv  *server.Server
	hs   *http.Server
	done chan struct{} // closed when Serve returns
}

// Start runs the reference server with every pattern enabled and App as
// its application; configure may change the configuration first.
func Start(configure ...func(*server.Config)) (*Server, error) {
	iss, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		return nil, err
	}
	s := &Server{issuer: iss}
	s.cfg = server.Config{
		Verifier:       iss,
		Issuer:         iss,
		Handler:        App(),
		Users:          map[string]string{User: Password},
		Clients:        map[string]string{ClientID: ClientSecret},
		AllowedOrigins: []string{Origin},
		Subprotocols:   []string{Subprotocol},
		// Kept across a restart, as a deployment's shared stores would be.
		TicketStore:  server.NewMemoryTicketStore(),
		SessionStore: server.NewMemorySessionStore(),
	}
	for _, fn := range configure {
		fn(&s.cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	if err := s.serve(ln); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) serve(ln net.Listener) error {
	srv, err := server.New(s.cfg)
	if err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	s.mu.Lock()
	s.srv, s.hs, s.done = srv, hs, done
	s.mu.Unlock()
	return nil
}

// WSURL is the WebSocket URL.
func (s *Server) WSURL() string { return "ws://" + s.addr + "/ws" }

// HTTPURL is the base URL of the endpoints (/api/ws-ticket, /api/login,
// /oauth/token).
func (s *Server) HTTPURL() string { return "http://" + s.addr }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Reference is the running reference server, for its fault hooks; nil
// while stopped.
func (s *Server) Reference() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// TokenSource mints a new token for subject on every call, valid for an
// hour, as an identity provider would.
func (s *Server) TokenSource(subject string) oauth2.TokenSource {
	return tokenFunc(func() (*oauth2.Token, error) {
		const ttl = time.Hour
		tok, err := s.issuer.Issue(subject, ttl)
		if err != nil {
			return nil, err
		}
		return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: time.Now().Add(ttl)}, nil
	})
}

type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

// Token mints a token for subject, valid for ttl.
func (s *Server) Token(subject string, ttl time.Duration) string {
	tok, err := s.issuer.Issue(subject, ttl)
	if err != nil {
		panic(err) // only a non-positive ttl or an empty subject
	}
	return tok
}

// Stop takes the server down: WebSockets get 1001 "Server shutting down",
// the port refuses connections until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, hs, done := s.srv, s.hs, s.done
	s.srv, s.hs = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	// http.Server does not track hijacked connections; the reference
	// server closes its WebSockets itself.
	srv.Close()
	hs.Close()
	<-done
}

// Start brings a stopped server back on the same port.
func (s *Server) Start() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			return s.serve(ln)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restarting on %s: %w", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond) // the old socket may need a moment to let go of the port
	}
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// App is the examples' application: it echoes every message, except that
// "whoami" is answered with who the server thinks is there, and
// "subscribe <topic>" is answered "subscribed to <topic>" and followed by
// "<topic>: update N" every TickEvery until the connection ends.
func App() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		var wg sync.WaitGroup
		defer wg.Wait()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if string(data) == "whoami" {
				p := c.Principal()
				data = []byte(fmt.Sprintf("you are %s, authenticated by %s", p.Subject, p.Method))
			}
			topic, ok := strings.CutPrefix(string(data), "subscribe ")
			if !ok {
				if c.Write(ctx, typ, data) != nil {
					return
				}
				continue
			}
			if c.Write(ctx, websocket.MessageText, []byte("subscribed to "+topic)) != nil {
				return
			}
			wg.Go(func() { publish(ctx, c, topic) })
		}
	})
}

func publish(ctx context.Context, c *server.Conn, topic string) {
	tick := time.NewTicker(TickEvery)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("%s: update %d", topic, n))); err != nil {
			return
		}
	}
}

// Main runs an example: fn gets a context that ends on Ctrl-C or after 30
// seconds, and a failure is printed as "name: error" with exit status 1.
// fn's deferred calls (closing the local server) run before the exit.
func Main(name string, fn func(ctx context.Context) error) {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := fn(ctx)
	cancel()
	stop()
	if err != nil {
		log.Printf("%s: %v", name, err)
		os.Exit(1)
	}
}

// Local starts the reference server for an example run without -url and
// says where it listens. The caller closes it.
func Local() (*Server, error) {
	s, err := Start()
	if err != nil {
		return nil, err
	}
	fmt.Println("reference server on", s.HTTPURL())
	return s, nil
}

// Echo sends message on c and prints it with the server's answer.
func Echo(ctx context.Context, c *wsauth.Client, message string) error {
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

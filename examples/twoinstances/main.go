// Command twoinstances runs two reference servers behind one Redis, as two
// `wsauth serve --redis URL` processes would, with a round-robin balancer in
// front, and a client that moves between them. Its ticket is minted by one
// instance and redeemed on the other; when the instance it is on restarts
// it (close 1012), the client reconnects through the balancer and lands on
// the other; and a revoke made on the instance it is not on closes its
// connection (1008 "Revoked") within milliseconds.
//
// It starts its own redis-server (internal/redistest): where there is none
// it says so and exits 0 (with WSAUTH_REQUIRE_REDIS=1 it fails instead).
//
//	go run ./examples/twoinstances
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/redistest"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/server/redisstore"
)

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	ok, err := redistest.Available()
	if err != nil {
		log.Fatalf("twoinstances: %v", err)
	}
	if !ok {
		fmt.Println("twoinstances: redis-server not found (apt-get install redis-server); skipping")
		return
	}
	if err := run(); err != nil {
		log.Printf("twoinstances: %v", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin, err := redistest.Binary()
	if err != nil {
		return err
	}
	rs, err := redistest.StartProcess(bin)
	if err != nil {
		return err
	}
	defer rs.Close()
	log.Println("redis-server on", rs.URL())

	// One signing key for every instance, as the same --secret on each.
	issuer, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		return err
	}
	lb := &balancer{}
	for _, name := range []string{"A", "B"} {
		in, err := startInstance(name, rs.URL(), issuer)
		if err != nil {
			return err
		}
		defer in.close()
		lb.instances = append(lb.instances, in)
	}
	front, err := listen(lb)
	if err != nil {
		return err
	}
	defer front.Close()
	base := "http://" + front.Addr

	events := make(chan wsauth.Event, 256)
	c, err := wsauth.Dial(ctx, "ws://"+front.Addr+"/ws", &wsauth.Options{
		Auth: &wsauth.TicketAuth{Endpoint: base + "/api/ws-ticket", Tokens: tokens(issuer, "alice")},
		OnEvent: func(e wsauth.Event) {
			log.Println("client:", e)
			select {
			case events <- e:
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	defer c.Close()

	first, err := greeting(ctx, c)
	if err != nil {
		return err
	}
	log.Printf("client: %q", first)
	on, other := lb.instances[0], lb.instances[1]
	if !strings.HasSuffix(first, on.name) {
		on, other = other, on
	}

	log.Printf("instance %s restarts the connection: the client comes back through the balancer", on.name)
	on.srv.CloseAll(websocket.StatusServiceRestart, "moving you")
	second, err := greeting(ctx, c)
	if err != nil {
		return err
	}
	log.Printf("client: %q", second)
	if !strings.HasSuffix(second, other.name) {
		return fmt.Errorf("the client did not move to instance %s", other.name)
	}

	log.Printf("revoking alice on instance %s, while her connection is on %s", on.name, other.name)
	start := time.Now()
	on.srv.Revoke("alice")
	for {
		select {
		case e := <-events:
			if e.Kind == wsauth.EventReconnecting && e.Code == websocket.StatusPolicyViolation {
				log.Printf("instance %s closed alice's connection (1008 %q) %v after the revoke on %s",
					other.name, e.CloseReason, time.Since(start).Round(time.Microsecond), on.name)
				return nil
			}
		case <-ctx.Done():
			return errors.New("the revocation did not reach the other instance")
		}
	}
}

// instance is one reference server on Redis: what one `wsauth serve --redis` runs.
type instance struct {
	name  string
	srv   *server.Server
	proxy *httputil.ReverseProxy
	close func()
}

func startInstance(name, redisURL string, issuer *server.HMACIssuer) (*instance, error) {
	opt, err := redisstore.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	cfg := server.Config{
		Verifier: issuer,
		Handler: server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			hello := fmt.Sprintf("hello %s, this is instance %s", c.Principal().Subject, name)
			if c.Write(ctx, websocket.MessageText, []byte(hello)) == nil {
				server.Echo().ServeWS(ctx, c)
			}
		}),
	}
	redisstore.New(rdb, nil).Configure(&cfg) // tickets, sessions, revocations, limits
	srv, err := server.New(cfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	hs, err := listen(srv)
	if err != nil {
		srv.Close()
		rdb.Close()
		return nil, err
	}
	log.Printf("instance %s on http://%s", name, hs.Addr)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: hs.Addr})
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if !errors.Is(err, context.Canceled) { // a client that went away is no news
			log.Printf("balancer: instance %s: %v", name, err)
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	return &instance{name: name, srv: srv, proxy: proxy, close: func() {
		srv.Close() // the WebSockets, which http.Server does not track
		hs.Close()
		rdb.Close()
	}}, nil
}

// balancer sends requests to the instances in turn, endpoint requests and WebSocket
// upgrades each in their own turn, starting one apart: so a ticket is always redeemed on
// another instance than the one that minted it, and each reconnection lands on the other
// instance.
type balancer struct {
	instances    []*instance
	calls, socks atomic.Int64
}

func (lb *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n int64
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		n = lb.socks.Add(1)
	} else {
		n = lb.calls.Add(1) - 1
	}
	in := lb.instances[n%int64(len(lb.instances))]
	// The path only: the query of a handshake holds the ticket.
	log.Printf("balancer: %s %s → instance %s", r.Method, r.URL.Path, in.name)
	in.proxy.ServeHTTP(w, r)
}

// listen serves h on a free loopback port.
func listen(h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Addr: ln.Addr().String(), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return hs, nil
}

// tokens mints a fresh hour-long token for subject on every call, as an identity provider
// would.
func tokens(issuer *server.HMACIssuer, subject string) oauth2.TokenSource {
	return wsauth.TokenFunc(func(context.Context) (*oauth2.Token, error) {
		tok, err := issuer.Issue(subject, time.Hour)
		if err != nil {
			return nil, err
		}
		return &oauth2.Token{AccessToken: tok, Expiry: time.Now().Add(time.Hour)}, nil
	})
}

// greeting returns the next message of the application: the greeting of the instance
// the client has (re)connected to.
func greeting(ctx context.Context, c *wsauth.Client) (string, error) {
	_, msg, err := c.Receive(ctx)
	return string(msg), err
}

package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/server/redisstore"
)

// instance is one reference server: what one `wsauth serve --redis URL` process runs.
type instance struct {
	srv   *server.Server
	url   string
	close func()
}

// startInstance starts a server whose tickets, sessions, revocations and rate limits are
// in the Redis at redisURL.
func startInstance(redisURL string, verifier server.Verifier) *instance {
	// snippet: redis-instance
	opt, err := redisstore.ParseURL(redisURL) // its errors never quote the URL
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	cfg := server.Config{Verifier: verifier, Handler: server.Echo()} // the same key everywhere
	redisstore.New(rdb, nil).Configure(&cfg)                         // tickets, sessions, cluster, limits
	srv, err := server.New(cfg)
	// end snippet
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	return &instance{srv: srv, url: hs.URL, close: func() {
		_ = srv.Close() // the WebSockets first: http.Server does not track them
		hs.Close()
		_ = rdb.Close()
	}}
}

// Two instances of the reference server, as two `wsauth serve --redis URL` processes would
// be, behind one Redis: a ticket minted by A is redeemed on B and refused when replayed on
// A, and a revocation made on B closes the socket that A holds.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// One key for the whole deployment: every instance accepts every token.
	issuer, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		log.Fatal(err)
	}
	redisURL := os.Getenv("WSAUTH_REDIS_URL") // such as redis://localhost:6379/0
	a := startInstance(redisURL, issuer)
	defer a.close()
	b := startInstance(redisURL, issuer)
	defer b.close()

	token, err := issuer.Issue("alice", time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	ticket := getTicket(ctx, a.url, token)
	onB := dialTicket(ctx, b.url, ticket)
	defer onB.ws.CloseNow()
	fmt.Println("B, with A's ticket:", onB.verdict)
	replay := dialTicket(ctx, a.url, ticket)
	defer replay.ws.CloseNow()
	fmt.Println("A, with the same ticket:", replay.verdict)

	onA := dialTicket(ctx, a.url, getTicket(ctx, b.url, token))
	defer onA.ws.CloseNow()
	fmt.Println("A, with B's ticket:", onA.verdict)
	b.srv.Revoke("alice") // on every instance
	_, _, err = onA.ws.Read(ctx)
	fmt.Println("A, after the revocation on B:", closeText(err))
	b.srv.Unrevoke("alice")

	// Output:
	// B, with A's ticket: auth_ok
	// A, with the same ticket: 1008 Invalid or expired ticket
	// A, with B's ticket: auth_ok
	// A, after the revocation on B: 1008 Revoked
}

// getTicket asks an instance's ticket endpoint for a ticket.
func getTicket(ctx context.Context, base, token string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/ws-ticket", nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		log.Fatal(resp.Status, err)
	}
	return tr.Ticket
}

type dialed struct {
	ws      *websocket.Conn
	verdict string // "auth_ok", or the close code and reason
}

// dialTicket connects with a ticket and reads the server's verdict.
func dialTicket(ctx context.Context, base, ticket string) dialed {
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?ticket="+ticket, nil)
	if err != nil {
		log.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		return dialed{ws: ws, verdict: closeText(err)}
	}
	var m struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(data, &m)
	return dialed{ws: ws, verdict: m.Type}
}

func closeText(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("%d %s", ce.Code, ce.Reason)
	}
	return err.Error()
}

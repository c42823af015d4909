// Package demo is the guided tour of wsauth that `go run ./examples/demo`
// and `wsauth demo` run: the reference server in-process on loopback, and
// the client connecting with every credential pattern, refreshing its
// session, re-authenticating after a 1008, riding out a server outage, and
// being refused where it should be.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
	"github.com/wsauth/wsauth/server"
)

// Options tunes the demo's output.
type Options struct {
	// Color adds ANSI colours; set it only when the output is a terminal.
	Color bool
}

// Run plays every step, writing the timeline to w. It returns an error
// naming the steps that did not behave.
func Run(ctx context.Context, w io.Writer, o Options) error {
	d := &tour{w: w, color: o.Color, start: time.Now()}
	if err := d.startServer(); err != nil {
		d.bad("the reference server did not start: %v", err)
		d.flush()
		return fmt.Errorf("demo: starting the reference server: %w", err)
	}
	defer d.stopServer()
	d.say("server", "reference server on %s: every pattern, session lifetime %s", d.addr, sessionTTL)
	d.flush()

	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"ticket: POST /api/ws-ticket with a bearer token, dial with ?ticket=…", d.ticket},
		{"query token: the token itself in ?token=… (short-lived tokens only)", d.query},
		{"first message: upgrade, then {\"type\":\"auth\",\"token\":…} within 5s", d.firstMessage},
		{"cookie: log in, then the session cookie rides the handshake", d.cookie},
		{"Authorization header on the handshake (not possible in browsers)", d.header},
		{"bearer token in Sec-WebSocket-Protocol, Kubernetes style", d.subprotocol},
		{"OAuth 2.0 client credentials feeding the token cache", d.clientCredentials},
		{"proactive refresh: the session outlives its lifetime on one connection", d.refresh},
		{"server closes 1008: fresh credentials, immediate reconnect", d.reauth},
		{"server down for a while: backoff with full jitter, then recovery", d.outage},
		{"refused: a replayed ticket", d.replayedTicket},
		{"refused: a foreign Origin on a cookie-authenticated socket", d.wrongOrigin},
		{"refused: a revoked principal's session ends, re-authentication is refused, the client gives up", d.revoked},
	}
	var failed []string
	for i, s := range steps {
		d.heading(i+1, s.title)
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		err := s.run(sctx)
		cancel()
		if err != nil {
			d.bad("step %d failed: %v", i+1, err)
			failed = append(failed, fmt.Sprint(i+1))
		} else {
			d.good("as expected")
		}
		d.flush()
	}
	d.line("")
	if len(failed) > 0 {
		d.bad("%d of %d steps misbehaved: %s", len(failed), len(steps), strings.Join(failed, ", "))
		d.flush()
		return fmt.Errorf("demo: steps %s misbehaved", strings.Join(failed, ", "))
	}
	d.good("all %d steps behaved in %s", len(steps), time.Since(d.start).Round(time.Millisecond))
	d.flush()
	return nil
}

const (
	sessionTTL  = 2 * time.Second
	stepTimeout = 10 * time.Second
)

type tour struct {
	w     io.Writer
	color bool
	start time.Time
	outMu sync.Mutex
	// pending is the current step's timeline, printed in order at its end.
	pending []entry

	srv  *exampleserver.Server
	addr string
}

func (d *tour) startServer() error {
	srv, err := exampleserver.Start(func(c *server.Config) { c.SessionTTL = sessionTTL })
	if err != nil {
		return err
	}
	d.srv, d.addr = srv, srv.Addr()
	return nil
}

func (d *tour) stopServer() { d.srv.Stop() }

func (d *tour) server() *server.Server { return d.srv.Reference() }

func (d *tour) url(path string) string               { return d.srv.HTTPURL() + path }
func (d *tour) wsURL() string                        { return d.srv.WSURL() }
func (d *tour) tokens(sub string) oauth2.TokenSource { return d.srv.TokenSource(sub) }

// options are the client options every step starts from: events on the
// timeline, quick backoff so the demo is short.
func (d *tour) options(auth wsauth.Authenticator) *wsauth.Options {
	return &wsauth.Options{
		Auth:      auth,
		OnEvent:   func(e wsauth.Event) { d.event(e) },
		Reconnect: wsauth.ReconnectPolicy{Backoff: &wsauth.FullJitter{Initial: 100 * time.Millisecond, Multiplier: 2, Max: time.Second}},
	}
}

// connectAndAsk dials, asks whoami, checks the answer names the method.
func (d *tour) connectAndAsk(ctx context.Context, auth wsauth.Authenticator, method string) error {
	c, err := wsauth.Dial(ctx, d.wsURL(), d.options(auth))
	if err != nil {
		return err
	}
	defer c.Close()
	answer, err := d.ask(ctx, c, "whoami")
	if err != nil {
		return err
	}
	if !strings.HasSuffix(answer, "by "+method) {
		return fmt.Errorf("server says %q, want method %s", answer, method)
	}
	if sp := c.Subprotocol(); sp != "" {
		d.say("client", "subprotocol %q selected; the bearer entry was never echoed", sp)
	}
	return nil
}

func (d *tour) ask(ctx context.Context, c *wsauth.Client, q string) (string, error) {
	if err := c.SendText(ctx, q); err != nil {
		return "", err
	}
	_, data, err := c.Receive(ctx)
	if err != nil {
		return "", err
	}
	d.say("app", "%s → %q", q, data)
	return string(data), nil
}

func (d *tour) ticket(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.TicketAuth{Endpoint: d.url("/api/ws-ticket"), Tokens: d.tokens("alice")}, "ticket")
}

func (d *tour) query(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.QueryAuth{Tokens: d.tokens("alice")}, "query")
}

func (d *tour) firstMessage(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.FirstMessageAuth{Tokens: d.tokens("alice")}, "first-message")
}

func (d *tour) cookie(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.CookieAuth{
		LoginURL:  d.url("/api/login"),
		LoginBody: []byte(`{"username":"` + exampleserver.User + `","password":"` + exampleserver.Password + `"}`),
		Origin:    exampleserver.Origin,
	}, "cookie")
}

func (d *tour) header(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.HeaderAuth{Tokens: d.tokens("alice")}, "header")
}

func (d *tour) subprotocol(ctx context.Context) error {
	return d.connectAndAsk(ctx, &wsauth.SubprotocolAuth{Tokens: d.tokens("alice"), Subprotocol: exampleserver.Subprotocol}, "subprotocol")
}

func (d *tour) clientCredentials(ctx context.Context) error {
	src := clientCredentials(d.url("/oauth/token"), exampleserver.ClientID, exampleserver.ClientSecret)
	return d.connectAndAsk(ctx, &wsauth.FirstMessageAuth{Tokens: src}, "first-message")
}

// watch is an OnEvent that puts events on the timeline and counts them by
// kind, so that a step can wait for one and check what happened.
type watch struct {
	d    *tour
	mu   sync.Mutex
	seen map[wsauth.EventKind]int
	evs  []wsauth.Event
	wake chan struct{}
}

func (d *tour) watch() *watch {
	return &watch{d: d, seen: map[wsauth.EventKind]int{}, wake: make(chan struct{}, 1)}
}

func (w *watch) on(e wsauth.Event) {
	w.d.event(e)
	w.mu.Lock()
	w.seen[e.Kind]++
	w.evs = append(w.evs, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watch) count(k wsauth.EventKind) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[k]
}

func (w *watch) events() []wsauth.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wsauth.Event(nil), w.evs...)
}

// until waits for the n-th event of kind k.
func (w *watch) until(ctx context.Context, k wsauth.EventKind, n int) error {
	for w.count(k) < n {
		select {
		case <-w.wake:
		case <-ctx.Done():
			return fmt.Errorf("no %s event before the step's deadline", k)
		}
	}
	return nil
}

func (d *tour) refresh(ctx context.Context) error {
	w := d.watch()
	o := d.options(&wsauth.FirstMessageAuth{Tokens: d.tokens("alice")})
	o.OnEvent = w.on
	c, err := wsauth.Dial(ctx, d.wsURL(), o)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := w.until(ctx, wsauth.EventRefreshed, 3); err != nil {
		return err
	}
	if _, err := d.ask(ctx, c, "whoami"); err != nil {
		return err
	}
	if n, r := w.count(wsauth.EventConnected), w.count(wsauth.EventReconnecting); n != 1 || r != 0 {
		return fmt.Errorf("want one connection through 3 refreshes, saw %d connects and %d reconnects", n, r)
	}
	d.say("client", "one connection, %d refreshes, no reconnect", w.count(wsauth.EventRefreshed))
	return nil
}

func (d *tour) reauth(ctx context.Context) error {
	w := d.watch()
	o := d.options(&wsauth.FirstMessageAuth{Tokens: d.tokens("alice")})
	o.OnEvent = w.on
	c, err := wsauth.Dial(ctx, d.wsURL(), o)
	if err != nil {
		return err
	}
	defer c.Close()
	n := d.server().CloseAll(websocket.StatusPolicyViolation, "Unauthorized")
	d.say("server", "closed %d connection with 1008 \"Unauthorized\"", n)
	if err := w.until(ctx, wsauth.EventConnected, 2); err != nil {
		return err
	}
	for _, e := range w.events() {
		if e.Kind == wsauth.EventReconnecting && (e.Action != wsauth.ActionReauth || e.Delay != 0) {
			return fmt.Errorf("want an immediate re-authentication, got %s", e)
		}
	}
	_, err = d.ask(ctx, c, "whoami")
	return err
}

func (d *tour) outage(ctx context.Context) error {
	w := d.watch()
	o := d.options(&wsauth.TicketAuth{Endpoint: d.url("/api/ws-ticket"), Tokens: d.tokens("alice")})
	o.OnEvent = w.on
	c, err := wsauth.Dial(ctx, d.wsURL(), o)
	if err != nil {
		return err
	}
	defer c.Close()
	d.stopServer()
	d.say("server", "down")
	// Once the client has seen the connection go, a send waits in the
	// queue for the next one; a send racing the close could still be
	// handed to the dying connection.
	if err := w.until(ctx, wsauth.EventReconnecting, 1); err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() { sent <- c.SendText(ctx, "queued while the server was down") }()
	down := 1500 * time.Millisecond
	select {
	case <-time.After(down): // the outage itself
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := d.srv.Start(); err != nil {
		return fmt.Errorf("restarting the server: %w", err)
	}
	d.say("server", "back after %s", down)
	if err := <-sent; err != nil {
		return err
	}
	_, data, err := c.Receive(ctx)
	if err != nil {
		return err
	}
	d.say("app", "echo of the queued send: %q", data)
	if string(data) != "queued while the server was down" {
		return fmt.Errorf("want the echo of the queued send, got %q", data)
	}
	return nil
}

func (d *tour) replayedTicket(ctx context.Context) error {
	bearer, _ := d.tokens("alice").Token()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.url("/api/ws-ticket"), nil)
	req.Header.Set("Authorization", "Bearer "+bearer.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	ticket, err := readTicket(resp)
	if err != nil {
		return err
	}
	u := d.wsURL() + "?ticket=" + ticket
	for i, want := range []string{"accepted", "refused"} {
		ws, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			return err
		}
		// The server refuses after the upgrade, so a browser can see why.
		ws.SetReadLimit(1 << 10)
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, _, rerr := ws.Read(rctx)
		cancel()
		ws.CloseNow()
		code, reason := websocket.CloseStatus(rerr), closeReason(rerr)
		got := "accepted"
		if code == websocket.StatusPolicyViolation {
			got = "refused"
			d.say("server", "use %d of the same ticket: close %d %q", i+1, code, reason)
		} else {
			d.say("server", "use %d of the ticket: accepted", i+1)
		}
		if got != want {
			return fmt.Errorf("use %d of one ticket was %s", i+1, got)
		}
	}
	return nil
}

func (d *tour) wrongOrigin(ctx context.Context) error {
	o := d.options(&wsauth.CookieAuth{
		LoginURL:  d.url("/api/login"),
		LoginBody: []byte(`{"username":"` + exampleserver.User + `","password":"` + exampleserver.Password + `"}`),
		Origin:    "https://evil.example",
	})
	o.Reconnect.MaxAuthFailures = 1
	_, err := wsauth.Dial(ctx, d.wsURL(), o)
	var he *wsauth.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
		return fmt.Errorf("want a 403 before the upgrade, got %v", err)
	}
	d.say("client", "refused before the upgrade: %d, no WebSocket was opened", he.StatusCode)
	return nil
}

func (d *tour) revoked(ctx context.Context) error {
	w := d.watch()
	o := d.options(&wsauth.HeaderAuth{Tokens: d.tokens("mallory")})
	o.OnEvent = w.on
	o.Reconnect.MaxAuthFailures = 3
	c, err := wsauth.Dial(ctx, d.wsURL(), o)
	if err != nil {
		return err
	}
	defer c.Close()
	d.server().Revoke("mallory")
	d.say("server", "revoked mallory")
	select {
	case <-c.Done():
	case <-ctx.Done():
		return errors.New("the client kept trying")
	}
	var gu *wsauth.GaveUpError
	if !errors.As(c.Err(), &gu) || gu.Why != "authentication" {
		return fmt.Errorf("want a GaveUpError for authentication, got %v", c.Err())
	}
	// The refusals are the reconnects after a 401, and the last one.
	refusals := 1
	for _, e := range w.events() {
		if e.Kind == wsauth.EventReconnecting && e.HTTPStatus == http.StatusUnauthorized {
			refusals++
		}
	}
	if refusals != o.Reconnect.MaxAuthFailures {
		return fmt.Errorf("want %d refusals before giving up, saw %d", o.Reconnect.MaxAuthFailures, refusals)
	}
	d.say("client", "gave up after %d refusals in a row (last: HTTP %d)", refusals, gu.HTTPStatus)
	return nil
}

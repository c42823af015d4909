package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/faultproxy"
	"github.com/wsauth/wsauth/server"
)

// env is one cell's world: a reference server on loopback, a fault proxy in
// front of its WebSocket path and another in front of its ticket endpoint,
// the server side's records of what it read and which credentials it was
// offered, and the token source the clients fetch from.
type env struct {
	srv    *server.Server
	hs     *http.Server
	ws     *faultproxy.Proxy // the WebSocket path
	rest   *faultproxy.Proxy // the ticket endpoint
	creds  *credWatch
	ledger *ledger
	tokens *tokenSource
	served sync.WaitGroup
}

// envConfig is what differs between the cells and commands.
type envConfig struct {
	sessionTTL time.Duration // the server's session lifetime; 0: an hour
	badEvery   int           // every badEvery-th token minted is refused by the server (the first one too); 0: none
	handler    server.Handler
	tweak      func(*server.Config)
}

func newEnv(ec envConfig) (*env, error) {
	iss, err := server.NewHMACIssuer(server.RandomKey())
	if err != nil {
		return nil, err
	}
	e := &env{ledger: newLedger()}
	e.creds = &credWatch{inner: iss, tickets: server.NewMemoryTicketStore(),
		refused: map[string]bool{}, bad: map[string]bool{}, seenTicket: map[string]bool{}}
	e.tokens = &tokenSource{iss: iss, creds: e.creds, badEvery: ec.badEvery}
	h := ec.handler
	if h == nil {
		h = e.ledger.handler()
	}
	ttl := ec.sessionTTL
	if ttl == 0 {
		ttl = time.Hour
	}
	cfg := server.Config{
		Verifier:        e.creds,
		Handler:         h,
		TicketStore:     e.creds,
		SessionTTL:      ttl,
		HandshakeRate:   -1,
		TicketRate:      -1,
		LoginRate:       -1,
		RefreshRate:     -1,
		MaxPreAuthPerIP: -1,
		AuthTimeout:     3 * time.Second,
		// A black-holed connection is noticed on the server's side too, so
		// that the handlers of dead connections return and their records
		// are complete when the cell is counted.
		PingInterval: time.Second,
		PongTimeout:  2 * time.Second,
	}
	if ec.tweak != nil {
		ec.tweak(&cfg)
	}
	if e.srv, err = server.New(cfg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.hs = &http.Server{Handler: e.srv, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	e.served.Go(func() { _ = e.hs.Serve(ln) })
	if e.ws, err = faultproxy.New(ln.Addr().String()); err != nil {
		e.close()
		return nil, err
	}
	if e.rest, err = faultproxy.New(ln.Addr().String()); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// wsURL is the WebSocket URL through the proxy.
func (e *env) wsURL() string { return e.ws.URL("ws", "/ws") }

// ticketURL is the ticket endpoint through its proxy.
func (e *env) ticketURL() string { return e.rest.URL("http", "/api/ws-ticket") }

// close stops the proxies and the server and waits for the server's
// handlers, so the ledger is complete afterwards.
func (e *env) close() {
	for _, p := range []*faultproxy.Proxy{e.ws, e.rest} {
		if p != nil {
			p.Close()
		}
	}
	if e.srv != nil {
		e.srv.Close()
	}
	if e.hs != nil {
		e.hs.Close()
	}
	e.served.Wait()
}

// clearFaults turns every fault of both proxies off.
func (e *env) clearFaults() {
	for _, p := range []*faultproxy.Proxy{e.ws, e.rest} {
		clearProxy(p)
	}
}

// restartAll closes every WebSocket with 1012 (service restart), which the
// client retries: the way the phase drivers make a reconnect happen.
func (e *env) restartAll() int {
	return e.srv.CloseAll(websocket.StatusServiceRestart, "chaos: reconnect")
}

// credWatch is the server's Verifier and TicketStore, watched: it refuses
// the tokens marked bad, and records every credential offered after the
// server refused it, and every ticket offered twice. A client that offers
// a refused credential again is what LESSONS.md calls a reconnect loop that
// re-sends a rejected token.
type credWatch struct {
	inner   server.Verifier
	tickets *server.MemoryTicketStore

	mu         sync.Mutex
	refused    map[string]bool // tokens the server refused
	bad        map[string]bool // tokens to refuse
	seenTicket map[string]bool
	reoffered  int // refused tokens offered again, tickets offered twice
	refusals   int
}

// Verify implements server.Verifier.
func (w *credWatch) Verify(ctx context.Context, token string) (server.Identity, error) {
	w.mu.Lock()
	if w.refused[token] {
		w.reoffered++
	}
	bad := w.bad[token]
	w.mu.Unlock()
	if bad {
		w.refuse(token)
		return server.Identity{}, fmt.Errorf("%w: marked bad by the chaos suite", server.ErrInvalidToken)
	}
	id, err := w.inner.Verify(ctx, token)
	if err != nil {
		w.refuse(token)
	}
	return id, err
}

func (w *credWatch) refuse(token string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refused[token] = true
	w.refusals++
}

// Put implements server.TicketStore.
func (w *credWatch) Put(ctx context.Context, ticket string, d server.TicketData, ttl time.Duration) error {
	return w.tickets.Put(ctx, ticket, d, ttl)
}

// Consume implements server.TicketStore.
func (w *credWatch) Consume(ctx context.Context, ticket string) (server.TicketData, error) {
	w.mu.Lock()
	if w.seenTicket[ticket] {
		w.reoffered++
	}
	w.seenTicket[ticket] = true
	w.mu.Unlock()
	return w.tickets.Consume(ctx, ticket)
}

// counts returns the refusals and the re-offers so far.
func (w *credWatch) counts() (refusals, reoffered, tickets int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refusals, w.reoffered, len(w.seenTicket)
}

// tokenSource mints tokens the server accepts, counting them; every
// badEvery-th one (the first included) is one the server refuses, so that
// every cell exercises "never offer a refused credential again".
type tokenSource struct {
	iss      *server.HMACIssuer
	creds    *credWatch
	badEvery int
	ttl      time.Duration // 0: an hour

	mu sync.Mutex
	n  int
}

// Token implements oauth2.TokenSource.
func (s *tokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	s.n++
	n := s.n
	ttl := s.ttl
	s.mu.Unlock()
	if ttl == 0 {
		ttl = time.Hour
	}
	tok, err := s.iss.Issue("chaos", ttl)
	if err != nil {
		return nil, err
	}
	if s.badEvery > 0 && n%s.badEvery == 1%s.badEvery {
		s.creds.mu.Lock()
		s.creds.bad[tok] = true
		s.creds.mu.Unlock()
	}
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: time.Now().Add(ttl)}, nil
}

// fetched is how many tokens were minted.
func (s *tokenSource) fetched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// ledger is the record of every message: what its Send returned, whether
// an EventUnconfirmed listed it, and how often and in which order the
// server's handler read it. Messages are "sender:seq".
type ledger struct {
	mu      sync.Mutex
	senders map[int]*senderLog
	conns   int
	// Reads out of order on one connection, and reads of a lower seq than
	// one read before on another connection.
	disorder, crossed int
	foreign           int // messages the handler could not parse
	unconfirmedEvents int // the sum of EventUnconfirmed.Unconfirmed
	framesListed      int // the frames those events carried
}

type senderLog struct {
	result    []sendResult
	delivered []int32
	listed    []int32
	last      int // the highest seq read, -1 before any
}

// sendResult is what Send returned for one message.
type sendResult int8

const (
	notSent sendResult = iota
	sentOK
	sentErr
	sentErrNeverWritten // an error that says the message was never written
)

func newLedger() *ledger { return &ledger{senders: map[int]*senderLog{}} }

func (l *ledger) sender(id int) *senderLog {
	s := l.senders[id]
	if s == nil {
		s = &senderLog{last: -1}
		l.senders[id] = s
	}
	return s
}

func grow[T any](s []T, i int) []T {
	for len(s) <= i {
		var zero T
		s = append(s, zero)
	}
	return s
}

func message(sender, seq int) []byte { return []byte(strconv.Itoa(sender) + ":" + strconv.Itoa(seq)) }

func parseMessage(data []byte) (sender, seq int, ok bool) {
	a, b, found := strings.Cut(string(data), ":")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(a)
	q, err2 := strconv.Atoi(b)
	return s, q, err1 == nil && err2 == nil && s >= 0 && q >= 0
}

// sent records what Send returned for (sender, seq).
func (l *ledger) sent(sender, seq int, err error) {
	r := sentOK
	switch {
	case err == nil:
	case errors.Is(err, wsauth.ErrQueueFull), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Send's documentation: a message whose context ended while queued,
		// or that found the queue full, was never written.
		r = sentErrNeverWritten
		if errors.Is(err, wsauth.ErrUnconfirmed) || errors.Is(err, wsauth.ErrDeliveryUnknown) {
			r = sentErr
		}
	default:
		r = sentErr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sender(sender)
	s.result = grow(s.result, seq)
	s.result[seq] = r
}

// unconfirmed records an EventUnconfirmed.
func (l *ledger) unconfirmed(e wsauth.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unconfirmedEvents += e.Unconfirmed
	l.framesListed += len(e.Frames)
	for _, f := range e.Frames {
		sender, seq, ok := parseMessage(f.Data)
		if !ok {
			continue // a barrier
		}
		s := l.sender(sender)
		s.listed = grow(s.listed, seq)
		s.listed[seq]++
	}
}

// handler is the server's application: it records every message it reads.
func (l *ledger) handler() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		l.mu.Lock()
		l.conns++
		l.mu.Unlock()
		last := map[int]int{} // per sender, the last seq read on this connection
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			sender, seq, ok := parseMessage(data)
			l.mu.Lock()
			if !ok {
				if !strings.HasPrefix(string(data), "barrier") {
					l.foreign++
				}
				l.mu.Unlock()
				continue
			}
			s := l.sender(sender)
			s.delivered = grow(s.delivered, seq)
			s.delivered[seq]++
			if prev, seen := last[sender]; seen && seq <= prev {
				l.disorder++
			} else if seq < s.last {
				l.crossed++
			}
			last[sender] = seq
			s.last = max(s.last, seq)
			l.mu.Unlock()
		}
	})
}

// tally is the classification of every message of a ledger.
type tally struct {
	Sent        int `json:"sent"`
	Delivered   int `json:"delivered"`
	Errored     int `json:"errored"`
	Unconfirmed int `json:"unconfirmed"`
	Lost        int `json:"lost_silently"`
	Duplicated  int `json:"duplicated"`
	// DeliveredAfterError counts messages whose Send said they were never
	// written, and that the server read all the same.
	DeliveredAfterError int `json:"delivered_after_never_written"`
	Disorder            int `json:"out_of_order"`
	Crossed             int `json:"crossed_connections"`
	Foreign             int `json:"foreign"`
	UnconfirmedEvents   int `json:"unconfirmed_event_count"`
	FramesListed        int `json:"unconfirmed_frames_listed"`
	ServerConns         int `json:"server_connections"`
	// Examples names a few lost or duplicated messages, for the report.
	Examples []string `json:"examples,omitempty"`
}

func (l *ledger) tally() tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{Disorder: l.disorder, Crossed: l.crossed, Foreign: l.foreign,
		UnconfirmedEvents: l.unconfirmedEvents, FramesListed: l.framesListed, ServerConns: l.conns}
	example := func(format string, args ...any) {
		if len(t.Examples) < 5 {
			t.Examples = append(t.Examples, fmt.Sprintf(format, args...))
		}
	}
	at := func(s []int32, i int) int32 {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	for id, s := range l.senders {
		n := max(len(s.result), len(s.delivered))
		for seq := range n {
			r := notSent
			if seq < len(s.result) {
				r = s.result[seq]
			}
			d, listed := at(s.delivered, seq), at(s.listed, seq)
			if r == notSent {
				if d > 0 {
					t.Foreign++ // read by the server, never sent: cannot happen
					example("%d:%d read but never sent", id, seq)
				}
				continue
			}
			t.Sent++
			if d > 0 {
				t.Delivered++
			}
			if d > 1 {
				t.Duplicated++
				example("%d:%d read %d times", id, seq, d)
			}
			switch {
			case r == sentErrNeverWritten:
				t.Errored++
				if d > 0 {
					t.DeliveredAfterError++
					example("%d:%d read although Send said it was never written", id, seq)
				}
			case r == sentErr:
				t.Errored++
			case listed > 0:
				t.Unconfirmed++
			case d == 0:
				t.Lost++
				example("%d:%d: Send returned nil, not reported unconfirmed, never read", id, seq)
			}
		}
	}
	return t
}

// failures lists what in t breaks a guarantee.
func (t tally) failures() []string {
	var f []string
	if t.Lost > 0 {
		f = append(f, fmt.Sprintf("%d lost silently", t.Lost))
	}
	if t.Duplicated > 0 {
		f = append(f, fmt.Sprintf("%d duplicated", t.Duplicated))
	}
	if t.Disorder > 0 {
		f = append(f, fmt.Sprintf("%d out of order on a connection", t.Disorder))
	}
	if t.DeliveredAfterError > 0 {
		f = append(f, fmt.Sprintf("%d delivered after Send said never written", t.DeliveredAfterError))
	}
	if t.Foreign > 0 {
		f = append(f, fmt.Sprintf("%d unexpected messages", t.Foreign))
	}
	return f
}

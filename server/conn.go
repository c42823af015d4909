package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// Principal is who is on an authenticated connection.
type Principal struct {
	// Subject names the principal.
	Subject string
	// Method is the pattern the connection authenticated with.
	Method Method
	// ExpiresAt is the current session expiry; refreshes move it. Zero means none.
	ExpiresAt time.Time
}

// Handler serves authenticated connections.
type Handler interface {
	// ServeWS serves one authenticated connection. ctx ends when the connection ends (closed
	// by either side, expired, revoked or shut down); ServeWS should then return. When ServeWS
	// returns the server closes the connection with 1000, if it is not closed already.
	//
	// ServeWS runs on a goroutine of its own, not on net/http's (which returns once the
	// connection is authenticated). A panic in ServeWS closes the connection with 1011 and
	// is logged with its stack to Config.Logger (without one, to the standard logger); the
	// process goes on, as with a panic in an http.Handler.
	ServeWS(ctx context.Context, c *Conn)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn)

// ServeWS calls f(ctx, c).
func (f HandlerFunc) ServeWS(ctx context.Context, c *Conn) { f(ctx, c) }

// Echo returns a Handler that sends every message back with its type until the connection
// ends.
func Echo() Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	})
}

// serverWriteTimeout bounds the server's own messages (auth_ok, refresh_ok, notices); a peer
// that does not take them within it is dead, and coder/websocket closes the connection.
const serverWriteTimeout = 5 * time.Second

// Conn is an authenticated connection, given to the application's Handler. Its methods are
// safe for concurrent use; concurrent Reads each get a different message.
//
// The socket is read inside Read, on the handler's goroutine, which answers refresh
// messages itself and returns every other message: a connection costs one goroutine, the
// handler's. A handler that has not called Read within readerGrace of authentication (one
// that only writes) gets a reader goroutine instead, which reads the socket freely until it
// hands a message to Read and then at the handler's pace, so that its pings are answered and
// its close handshakes done. A timer keeps the session clock: it sends the expiry notice,
// closes the connection at expiry, and pings a silent peer (Config.PingInterval), on a
// goroutine of its own only while it works.
type Conn struct {
	s          *Server
	ws         *websocket.Conn
	netConn    net.Conn // the hijacked connection under ws, to drop a peer that stopped answering
	remoteAddr string

	// ctx ends when the connection has been closed, for whatever reason.
	ctx    context.Context
	cancel context.CancelFunc

	// in carries application messages from the reader goroutine to Read; the reader closes
	// it when the connection is done, after setting readErr.
	in      chan message
	readErr error

	refreshLimit *rate.Limiter

	mu            sync.Mutex
	principal     Principal
	authenticated bool
	// live is set once the client has been told it is authenticated (auth_ok, whatever the
	// pattern); the server sends its own messages only to live connections, so auth_ok is
	// always the first.
	live      bool
	sessionID string // cookie session that authenticated the connection; a secret
	// deadline is when the session clock closes the connection with deadlineReason: the auth
	// timeout before authentication, the session expiry after. Zero means none.
	deadline       time.Time
	deadlineReason string
	noticeSentFor  time.Time // the deadline the expiry notice was sent for
	closing        bool
	closeCode      websocket.StatusCode
	closeReason    string
	// mode is how the socket is read: decided by the first Read (direct) or, failing that,
	// by the session clock readerGrace after authentication (a reader goroutine).
	mode readMode
	// reading counts the Reads reading the socket now, in direct mode.
	reading int
	// returned is set once the handler has returned, for finish: a handler that panics
	// gets its connection closed with 1011 instead of 1000. Only the handler's goroutine
	// touches it.
	returned bool
	// readerAt is when the session clock gives a handler that has not called Read a reader
	// goroutine; zero until the connection is live.
	readerAt time.Time
	// asked counts Read calls, handed the messages given to them; the reader goroutine reads
	// the next frame only once asked has passed handed.
	asked, handed int64
	// The keepalive. heardAt is when the peer last showed it is alive (a message, a pong),
	// or when the reader last resumed reading: time spent parked, waiting for the handler
	// to ask for the next message, is never held against the peer, because a pong cannot
	// be read then. parked says nobody reads the socket now (no Read in progress, or the
	// reader waiting for the handler to ask); pinging that a ping sent at pingSentAt has not
	// been answered yet.
	heardAt    time.Time
	parked     bool
	pinging    bool
	pingSentAt time.Time
	pings      sync.WaitGroup // ping goroutines; Add only on the session clock goroutine

	// slot is the release of the per-principal slot (Config.MaxConnsPerPrincipal) this
	// connection holds, nil when none; unregister calls it. Only the goroutine serving the
	// handshake touches it.
	slot func()

	// clock is the session clock's timer; clockMu serialises its scheduling.
	clockMu    sync.Mutex
	clock      *time.Timer
	askedWake  chan struct{} // Read was called; capacity 1
	closeReq   chan struct{} // closed by shutdown
	superDone  chan struct{} // closed once the socket has been closed
	readerDone chan struct{} // closed once no reader goroutine runs or ever will
}

// readMode is how a connection's socket is read.
type readMode int

const (
	readUndecided readMode = iota // nobody has read yet
	readDirect                    // Read reads the socket itself
	readGoroutine                 // a reader goroutine reads, Read takes what it hands over
	readNone                      // the connection ended before anybody read
)

// readerGrace is how long after authentication a handler may go without calling Read before
// the connection gets a reader goroutine of its own. Until then the socket is not read, as
// while a handler is busy between two Reads: a ping waits at most this long for its pong.
const readerGrace = time.Second

type message struct {
	typ  websocket.MessageType
	data []byte
}

// newConn wraps a freshly upgraded socket; its goroutines are started by serveWS.
func newConn(s *Server, ws *websocket.Conn, r *http.Request) *Conn {
	// The request's context must not be used after the hijack, but its values may matter
	// to the application.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	refresh := rate.NewLimiter(rate.Limit(s.cfg.RefreshRate), s.cfg.RefreshBurst)
	if s.cfg.RefreshRate < 0 {
		refresh = rate.NewLimiter(rate.Inf, 0)
	}
	return &Conn{
		s:            s,
		ws:           ws,
		remoteAddr:   r.RemoteAddr,
		ctx:          ctx,
		cancel:       cancel,
		in:           make(chan message),
		refreshLimit: refresh,
		parked:       true, // nobody reads until the handler does
		askedWake:    make(chan struct{}, 1),
		closeReq:     make(chan struct{}),
		superDone:    make(chan struct{}),
		readerDone:   make(chan struct{}),
	}
}

// Principal returns who is on the connection. It reflects refreshes.
func (c *Conn) Principal() Principal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.principal
}

// Subprotocol returns the negotiated application subprotocol, "" for none. It is never the
// bearer entry of the subprotocol pattern.
func (c *Conn) Subprotocol() string {
	return c.ws.Subprotocol()
}

// RemoteAddr returns the peer's address as the HTTP server saw it.
func (c *Conn) RemoteAddr() string {
	return c.remoteAddr
}

// Read returns the next application message. Refresh messages never reach it. It returns an
// error when ctx ends or the connection is closed; after that the connection is unusable: a
// ctx (other than the handler's) that ends while Read waits closes the connection with 1000.
//
// The socket is read at the application's pace, inside Read: between two Reads the server
// reads no frame, control frames included (as with coder/websocket, a handler must keep
// reading for pings to be answered).
// A handler that answers each message before reading the next thus has its answers on the
// wire before the server's pong to any ping that followed the message, which is the barrier
// a client uses to know it has received everything before it closes a connection.
func (c *Conn) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	c.mu.Lock()
	decided := c.mode == readUndecided
	if decided {
		c.mode = readDirect
	}
	if c.mode != readGoroutine {
		c.mu.Unlock()
		if decided {
			close(c.readerDone)
		}
		return c.readDirect(ctx)
	}
	c.asked++
	c.mu.Unlock()
	return c.readQueued(ctx)
}

// readQueued waits for the next message of the reader goroutine. It is a function of its
// own so that Read, which stays on the stack of an idle handler, keeps a small frame.
func (c *Conn) readQueued(ctx context.Context) (websocket.MessageType, []byte, error) {
	select {
	case c.askedWake <- struct{}{}:
	default:
	}
	select {
	case m, ok := <-c.in:
		return c.received(m, ok)
	case <-ctx.Done():
		// A connection that ended and a context that ended with it are both ready; the
		// connection's own error, with its close code, is the one the handler wants.
		select {
		case m, ok := <-c.in:
			return c.received(m, ok)
		default:
		}
		return 0, nil, ctx.Err()
	}
}

// readDirect reads the socket on the caller's goroutine until an application message
// comes, answering refresh messages on the way. The read itself carries no context (one
// would arm a timer per frame, and coder/websocket drops the socket outright when it ends):
// a ctx that ends while Read waits closes the connection with 1000 instead, which ends the
// read with the close handshake, and Read returns ctx's error.
func (c *Conn) readDirect(ctx context.Context) (websocket.MessageType, []byte, error) {
	defer c.stopReading(c.startReading(ctx))
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return 0, nil, c.readError(ctx, err)
		}
		if c.heard(typ, data) {
			return typ, data, nil
		}
	}
}

// startReading counts a Read that reads the socket; while none does, the connection is
// parked (the peer's silence is not held against it). It returns the stop function of an
// AfterFunc that closes the connection when the Read's ctx ends, nil for a context that
// cannot end or is the connection's own (which ends only once the socket is closed).
func (c *Conn) startReading(ctx context.Context) (stop func() bool) {
	if ctx.Done() != nil && ctx != c.ctx {
		stop = context.AfterFunc(ctx, func() { c.shutdown(websocket.StatusNormalClosure, "") })
	}
	c.mu.Lock()
	if c.reading++; c.reading == 1 {
		// Reading again: the peer's silence is measured from now.
		c.parked, c.heardAt = false, time.Now()
	}
	c.mu.Unlock()
	return stop
}

// readError ends the connection after the failed read of a Read with ctx, and returns the
// Read's error: ctx's when ctx ended the read, the read's otherwise.
func (c *Conn) readError(ctx context.Context, err error) error {
	c.readFailed(err)
	if ctx.Err() != nil && websocket.CloseStatus(err) == -1 {
		return ctx.Err()
	}
	return err
}

// stopReading undoes startReading, and stops the AfterFunc of the Read's context, if any.
func (c *Conn) stopReading(stop func() bool) {
	if stop != nil {
		stop()
	}
	c.mu.Lock()
	if c.reading--; c.reading == 0 {
		c.parked = true
	}
	c.mu.Unlock()
}

// heard deals with a message readDirect read: it answers a refresh message and drops a
// message that comes while the connection closes (the read goes on so that the close
// handshake completes). It reports whether the message is the handler's. Kept out of
// readDirect, whose frame an idle handler's stack holds.
//
//go:noinline
func (c *Conn) heard(typ websocket.MessageType, data []byte) bool {
	c.mu.Lock()
	c.heardAt = time.Now()
	closing := c.closing
	c.mu.Unlock()
	if msgType, token, ok := parseClientMessage(typ, data); ok && msgType == typeRefresh {
		c.refresh(token)
		return false
	}
	return !closing
}

// readFailed ends the connection after a failed read. Whatever ended the read (peer close,
// limit, broken socket), the connection is over; code 1002 matters only if nobody else chose
// a code and the socket still works, which means a protocol error.
func (c *Conn) readFailed(err error) {
	code := websocket.StatusProtocolError
	switch {
	case websocket.CloseStatus(err) != -1:
		code = websocket.CloseStatus(err)
	case errors.Is(err, websocket.ErrMessageTooBig):
		code = websocket.StatusMessageTooBig
	}
	c.shutdown(code, "")
}

// startReader gives a handler that has not called Read a reader goroutine, if it still has
// none and the connection still runs.
func (c *Conn) startReader() {
	c.mu.Lock()
	start := c.mode == readUndecided && !c.closing
	if start {
		c.mode = readGoroutine
		c.parked, c.heardAt = false, time.Now()
	}
	c.mu.Unlock()
	if start {
		go c.readLoop()
	}
}

// settleReader makes sure that no reader goroutine starts once the connection is over.
func (c *Conn) settleReader() {
	c.mu.Lock()
	none := c.mode == readUndecided
	if none {
		c.mode = readNone
	}
	c.mu.Unlock()
	if none {
		close(c.readerDone)
	}
}

func (c *Conn) received(m message, ok bool) (websocket.MessageType, []byte, error) {
	if !ok {
		return 0, nil, c.readErr
	}
	return m.typ, m.data, nil
}

// awaitAsk blocks the reader after a handover until the application asks for another
// message, or the connection is closing (then the close handshake must be read).
func (c *Conn) awaitAsk() {
	waited := false
	for {
		c.mu.Lock()
		// Until the first handover the socket is read freely: a handler that only writes
		// still gets its pings answered and its close handshakes done.
		ready := c.handed == 0 || c.asked > c.handed
		c.parked = !ready
		if ready && waited {
			// Reading again: the peer's silence is measured from now.
			c.heardAt = time.Now()
		}
		c.mu.Unlock()
		if ready {
			return
		}
		waited = true
		select {
		case <-c.askedWake:
		case <-c.closeReq:
			return
		}
	}
}

// Write sends an application message. As with coder/websocket, a ctx that ends during the
// write closes the connection.
func (c *Conn) Write(ctx context.Context, typ websocket.MessageType, data []byte) error {
	return c.ws.Write(ctx, typ, data)
}

// Close closes the connection with code and reason, performs the close handshake and waits
// for it. Calling it again, or after the server closed the connection, returns an error
// wrapping net.ErrClosed and changes nothing.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	first := c.shutdown(code, reason)
	<-c.superDone
	if !first {
		return fmt.Errorf("wsauth/server: close: %w", net.ErrClosed)
	}
	return nil
}

// shutdown asks the session clock goroutine to close the socket with code and reason; the
// connection's context ends once that is done. The first request wins; it reports whether
// this was it. It never blocks.
func (c *Conn) shutdown(code websocket.StatusCode, reason string) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	c.mu.Unlock()
	close(c.closeReq)
	c.clockMu.Lock()
	if c.clock != nil {
		c.clock.Stop()
	}
	c.clockMu.Unlock()
	// The one close of the socket, on a goroutine of its own: it waits for the close
	// handshake.
	go func() {
		defer close(c.superDone)
		c.closeSocket()
	}()
	return true
}

// closeStatus returns the code and reason the connection is closing with, if it is.
func (c *Conn) closeStatus() (websocket.StatusCode, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason, c.closing
}

// releaseSlot gives back the connection's per-principal slot, if it holds one.
func (c *Conn) releaseSlot() {
	if c.slot != nil {
		c.slot()
		c.slot = nil
	}
}

func (c *Conn) isAuthenticated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authenticated
}

// setDeadline moves the session clock.
func (c *Conn) setDeadline(t time.Time, reason string) {
	c.mu.Lock()
	c.deadline, c.deadlineReason = t, reason
	c.mu.Unlock()
	c.wakeClock()
}

// startClock starts the session clock: the close at the deadline, the expiry notice and the
// keepalive. It is a timer, rescheduled whenever the schedule changes.
func (c *Conn) startClock() {
	c.clockMu.Lock()
	c.clock = time.AfterFunc(time.Hour, c.onClock)
	c.clockMu.Unlock()
	c.wakeClock()
}

// onClock runs what is due, then schedules the next time.
func (c *Conn) onClock() {
	c.tick(time.Now())
	c.wakeClock()
}

// closeSocket performs the close handshake with the code and reason of the first shutdown,
// then ends the connection's context. The order matters: coder/websocket closes the socket
// outright when the context of a write ends, even a write that has just finished on another
// goroutine, so ending the context (which the handler writes with) before the close frame
// is out could replace the close frame with a bare TCP close.
func (c *Conn) closeSocket() {
	code, reason, _ := c.closeStatus()
	if reason != ReasonPingTimeout {
		_ = c.ws.Close(code, reason)
		c.cancel()
		return
	}
	// A peer that did not answer pings will hardly answer the close: it gets the close
	// frame, but only PongTimeout (at most coder/websocket's own five seconds) to reply
	// before the socket is dropped under coder/websocket, which ends its wait.
	grace := min(c.s.cfg.PongTimeout, 5*time.Second)
	closed, dropped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(dropped)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			if c.netConn != nil {
				_ = c.netConn.Close()
			}
		case <-closed:
		}
	}()
	_ = c.ws.Close(code, reason)
	close(closed)
	<-dropped
	c.cancel()
}

// nextWake is how long until the session clock has something to do; negative for never.
func (c *Conn) nextWake(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, t := range []time.Time{c.deadline, c.noticeTimeLocked(), c.keepaliveLocked(now).at, c.readerTimeLocked()} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if next.IsZero() {
		return -1
	}
	return max(0, next.Sub(now))
}

// keepalive is the next thing the keepalive has to do: at is when (zero for nothing), and
// giveUp says the peer will then have failed to answer a ping; otherwise a ping is due.
type keepalive struct {
	at     time.Time
	giveUp bool
}

// keepaliveLocked is the keepalive's next step. Only a live connection whose socket is being
// read is judged: while it is parked the step is only to look again an interval later. c.mu
// must be held.
func (c *Conn) keepaliveLocked(now time.Time) keepalive {
	interval := c.s.cfg.PingInterval
	switch {
	case !c.live || c.closing || interval <= 0:
		return keepalive{}
	case c.parked:
		return keepalive{at: now.Add(interval)}
	case !c.pinging:
		return keepalive{at: c.heardAt.Add(interval)}
	}
	// The pong is due PongTimeout after the ping, or after the silence a ping would have
	// ended had none been outstanding, whichever is later.
	from := c.heardAt.Add(interval)
	if c.pingSentAt.After(from) {
		from = c.pingSentAt
	}
	return keepalive{at: from.Add(c.s.cfg.PongTimeout), giveUp: true}
}

// noticeTimeLocked is when the expiry notice for the current deadline is due; zero if there
// is none to send. c.mu must be held.
func (c *Conn) noticeTimeLocked() time.Time {
	if !c.live || c.s.cfg.ExpiryNotice <= 0 || c.deadline.IsZero() || c.noticeSentFor.Equal(c.deadline) {
		return time.Time{}
	}
	return c.deadline.Add(-c.s.cfg.ExpiryNotice)
}

// readerTimeLocked is when the connection gets a reader goroutine, zero if it never will.
// c.mu must be held.
func (c *Conn) readerTimeLocked() time.Time {
	if c.mode != readUndecided || c.closing {
		return time.Time{}
	}
	return c.readerAt
}

// tick runs what is due at now: the close at the deadline, or the expiry notice; and gives
// a handler that has not read a reader goroutine.
func (c *Conn) tick(now time.Time) {
	due := func(t time.Time) bool { return !t.IsZero() && !now.Before(t) }
	c.mu.Lock()
	reader := due(c.readerTimeLocked())
	deadline, reason := c.deadline, c.deadlineReason
	notice := c.noticeTimeLocked()
	ka := c.keepaliveLocked(now)
	expired := due(deadline)
	noticeDue := !expired && due(notice)
	if noticeDue {
		c.noticeSentFor = deadline
	}
	giveUp := !expired && due(ka.at) && ka.giveUp
	ping := !expired && due(ka.at) && !ka.giveUp
	if ping {
		c.pinging, c.pingSentAt = true, now
		c.pings.Add(1)
	}
	subject := c.principal.Subject
	c.mu.Unlock()

	if reader {
		c.startReader()
	}
	switch {
	case expired:
		c.shutdown(websocket.StatusPolicyViolation, reason)
		return
	case giveUp:
		if c.shutdown(websocket.StatusGoingAway, ReasonPingTimeout) {
			c.s.stats.pingTimeouts.Add(1)
			c.s.log.Info("ping timeout", "remote", c.remoteAddr, "subject", subject)
		}
		return
	}
	if ping {
		go c.ping()
	}
	if noticeDue {
		c.send(serverMessage{Type: typeExpiring, ExpiresIn: expiresIn(deadline, now)})
	}
}

// ping sends one ping and waits for its pong, which arrives only while the socket is read.
// An answer ends the silence; a failure leaves the ping outstanding, so that the keepalive
// gives up on the peer in time rather than pinging a broken socket again and again.
func (c *Conn) ping() {
	defer c.pings.Done()
	if c.ws.Ping(c.ctx) != nil {
		return
	}
	c.mu.Lock()
	c.pinging = false
	c.heardAt = time.Now()
	c.mu.Unlock()
	c.wakeClock()
}

// wakeClock makes the session clock look at its schedule again.
func (c *Conn) wakeClock() {
	c.clockMu.Lock()
	defer c.clockMu.Unlock()
	if c.clock == nil {
		return
	}
	select {
	case <-c.closeReq:
		c.clock.Stop()
		return
	default:
	}
	if wait := c.nextWake(time.Now()); wait >= 0 {
		c.clock.Reset(wait)
	} else {
		c.clock.Stop()
	}
}

// send writes one of the server's own messages. A failed write closes the socket (that is
// coder/websocket's rule), which the next read then notices.
func (c *Conn) send(m serverMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), serverWriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// readLoop is the reader goroutine of an authenticated connection.
func (c *Conn) readLoop() {
	defer close(c.readerDone)
	for {
		c.awaitAsk()
		typ, data, err := c.ws.Read(context.Background())
		if err == nil {
			c.mu.Lock()
			c.heardAt = time.Now()
			c.mu.Unlock()
		}
		if err != nil {
			c.readErr = err
			close(c.in)
			c.readFailed(err)
			return
		}
		if msgType, token, ok := parseClientMessage(typ, data); ok && msgType == typeRefresh {
			c.refresh(token)
			continue
		}
		select {
		case c.in <- message{typ: typ, data: data}:
			c.mu.Lock()
			c.handed++
			c.mu.Unlock()
		case <-c.closeReq:
			// Closing: keep reading so the close handshake completes, drop the message.
		}
	}
}

// refresh handles a refresh message: rate limit, verify, same principal, extend.
func (c *Conn) refresh(token string) {
	select {
	case <-c.closeReq:
		return // closing: too late to refresh
	default:
	}
	s := c.s
	p := c.Principal()
	ev := AuthEvent{Stage: StageRefresh, RemoteAddr: c.remoteAddr, Method: p.Method, Subject: p.Subject}
	if !c.refreshLimit.Allow() {
		s.stats.refreshesRateLimited.Add(1)
		limited := ev
		limited.Reason, limited.Detail = "rate limited", "refresh rate limited"
		s.report(limited)
		_ = c.send(serverMessage{Type: typeRefreshFailed, Reason: "rate limited"})
		return
	}
	id, err := s.verify(c.ctx, token)
	switch {
	case err != nil && !errors.Is(err, errRevoked):
		c.refuseRefresh(ev, ReasonUnauthorized, err.Error())
		return
	case id.Subject != p.Subject:
		c.refuseRefresh(ev, ReasonPrincipalMismatch, "refresh token of another subject")
		return
	case err != nil:
		c.refuseRefresh(ev, ReasonRevoked, err.Error())
		return
	}

	now := time.Now()
	exp := s.expiryFor(now, id.Expiry, id.SessionTTL)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.principal.ExpiresAt = exp
	c.mu.Unlock()
	c.setDeadline(exp, ReasonSessionExpired)
	s.stats.refreshes.Add(1)
	s.accept(ev, "refreshed")
	_ = c.send(serverMessage{Type: typeRefreshOK, ExpiresIn: expiresIn(exp, now)})
}

// refuseRefresh closes the connection for a refused refresh; the principal stays as it was.
func (c *Conn) refuseRefresh(ev AuthEvent, reason, detail string) {
	c.s.stats.refreshesRefused.Add(1)
	c.s.refuseWS(ev, websocket.StatusPolicyViolation, reason, detail)
	c.shutdown(websocket.StatusPolicyViolation, reason)
}

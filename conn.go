package wsauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// physConn is one physical, authenticated WebSocket of a Client. It runs
// one long-lived reader (coder/websocket only processes pongs while a read
// is in progress, and a read whose context ends closes the connection, so
// there are no per-read deadlines) and a pinger. While it is the live
// connection, queued sends are written to it by the Send whose turn it is.
type physConn struct {
	c   *Client
	ws  *websocket.Conn
	red *redactor

	ctx    context.Context // ends when the connection dies or is torn down
	cancel context.CancelFunc

	connectedAt time.Time
	// verdict is what decided the connection was authenticated, and weak
	// says the server may still have been deciding (see lateRefusal);
	// both are written before the connection goes live.
	verdict Verdict
	weak    bool
	// awaiting is set while the client waits for the server's verdict; the
	// reader settles it with the first confirmation or application message
	// and reports on settled.
	awaiting atomic.Bool
	settled  chan settlement
	// received counts application messages read from the server.
	received atomic.Int64
	// obtained and expiry describe the current session; only the
	// supervising goroutine touches them.
	obtained time.Time
	expiry   time.Time

	// gate holds back delivery of received messages while a rotation
	// drains the previous connection, so that the application sees one
	// ordered stream.
	gate     chan struct{}
	gateOnce sync.Once

	dead     chan struct{}
	failOnce sync.Once
	err      error // why it died; written before dead is closed
	// localClose marks a close the client started, so the echoed close
	// frame is not taken for the server's verdict.
	localClose atomic.Bool

	// notes carries the dialect's protocol messages to the supervisor, all
	// of them, in order.
	notes notes
	// pending are messages the dialect's Open read past the end of the
	// exchange (Opened.Pending); the reader handles them first.
	pending [][]byte

	// writeTimer fails the connection when a queued write outlasts
	// Options.WriteTimeout.
	writeTimer *time.Timer

	delivering atomic.Bool
	reads      atomic.Int64
	wg         sync.WaitGroup
}

// settlement is how the reader settled a verdict.
type settlement struct {
	verdict   Verdict
	expiresIn time.Duration
}

func newPhysConn(c *Client, ws *websocket.Conn, red *redactor, now, expiry time.Time, gateOpen, await bool, pending [][]byte) *physConn {
	// Not derived from the client's context: on Close the supervisor still
	// needs a live reader for the close handshake, and cancels this one
	// itself.
	ctx, cancel := context.WithCancel(context.Background())
	pc := &physConn{
		c: c, ws: ws, red: red, ctx: ctx, cancel: cancel,
		connectedAt: now, obtained: now, expiry: expiry,
		gate:    make(chan struct{}),
		dead:    make(chan struct{}),
		notes:   notes{wake: make(chan struct{}, 1)},
		settled: make(chan settlement, 1),
		pending: pending,
	}
	pc.awaiting.Store(await)
	pc.writeTimer = time.AfterFunc(time.Hour, func() { pc.fail(errWriteTimeout) })
	pc.writeTimer.Stop()
	if gateOpen {
		pc.openGate()
	}
	pc.wg.Add(1)
	go pc.readLoop()
	if c.o.PingInterval > 0 {
		pc.wg.Add(1)
		go pc.pingLoop()
	}
	return pc
}

func (pc *physConn) openGate() { pc.gateOnce.Do(func() { close(pc.gate) }) }

// fail records why the connection died, the first time, and tears down its
// goroutines' context.
func (pc *physConn) fail(err error) {
	pc.failOnce.Do(func() {
		pc.err = err
		close(pc.dead)
		pc.cancel()
		// Reads and queued writes carry no context; closing the socket is
		// what ends them.
		_ = pc.ws.CloseNow()
	})
}

func (pc *physConn) isDead() bool {
	select {
	case <-pc.dead:
		return true
	default:
		return false
	}
}

// startWriter makes this the connection queued sends are written to.
func (pc *physConn) startWriter() { pc.c.queue.setLive(pc) }

// stopWriter stops sends to this connection and waits for the one being
// written.
func (pc *physConn) stopWriter() { pc.c.queue.pause(pc) }

// shutdown ends the connection and waits for its goroutines: with a close
// handshake when code is not zero and the connection is still alive,
// abruptly otherwise.
func (pc *physConn) shutdown(code StatusCode, reason string) {
	pc.stopWriter()
	if code != 0 && !pc.isDead() {
		pc.localClose.Store(true)
		_ = pc.ws.Close(code, reason)
	}
	pc.fail(errLocalClose)
	pc.wg.Wait()
	pc.writeTimer.Stop()
}

var (
	errLocalClose   = errors.New("wsauth: connection closed by the client")
	errWriteTimeout = errors.New("wsauth: write timed out")
)

// writeQueued writes the send whose turn it is; the queue is busy until it
// returns. Writes carry no context (coder/websocket would arm a timer per
// frame): the connection's write timer bounds them, and fail closes the
// socket under a stuck write.
func (pc *physConn) writeQueued(typ MessageType, data []byte) error {
	defer pc.c.queue.done()
	pc.writeTimer.Reset(pc.c.o.WriteTimeout)
	err := pc.ws.Write(context.Background(), typ, data)
	pc.writeTimer.Stop()
	if err != nil {
		pc.fail(err)
		return fmt.Errorf("%w: %w", ErrDeliveryUnknown, scrubError(pc.red, err))
	}
	return nil
}

func (pc *physConn) readLoop() {
	defer pc.wg.Done()
	for _, p := range pc.pending {
		if !pc.handle(MessageText, p) {
			return
		}
	}
	pc.pending = nil
	split, _ := pc.c.dialect.(FrameSplitter)
	for {
		// No context: one would arm a timer per frame; fail closes the
		// socket to end the read.
		typ, data, err := pc.ws.Read(context.Background())
		if err != nil {
			if brokeProtocol(err) {
				err = fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			pc.fail(err)
			return
		}
		pc.reads.Add(1)
		if split == nil {
			if !pc.handle(typ, data) {
				return
			}
			continue
		}
		for _, p := range split.SplitFrame(typ, data) {
			if !pc.handle(typ, p) {
				return
			}
		}
	}
}

// violations are how coder/websocket words the protocol violations it
// detects on reading, which it answers with a close 1002 of its own; a
// message over the read limit is its ErrMessageTooBig (close 1009).
var violations = []string{
	"received header with unexpected rsv bits", "received unknown opcode",
	"received control frame payload with invalid length", "received fragmented control frame",
	"received invalid close payload", "received continuation frame without",
	"received new data message without finishing",
}

// brokeProtocol reports a read error that is the server's protocol
// violation, detected by the client.
func brokeProtocol(err error) bool {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return true
	}
	msg := err.Error()
	return slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(msg, v) })
}

// handle acts on one server message as the dialect reads it; false means
// the connection is done.
func (pc *physConn) handle(typ MessageType, data []byte) bool {
	in := pc.c.dialect.Inspect(typ, data)
	if in.Kind == InboundAuthOK {
		if pc.settle(VerdictExplicit, in.ExpiresIn) || in.ExpiresIn <= 0 {
			return true
		}
		// A confirmation after the verdict tells the session's lifetime.
		in = Inbound{Kind: InboundExpiring, ExpiresIn: in.ExpiresIn}
	}
	switch in.Kind {
	case InboundData:
		pc.settle(VerdictFirstMessage, 0)
		pc.received.Add(1)
		return pc.deliver(inbound{typ: typ, data: data})
	case InboundReply:
		if len(in.Reply) == 0 {
			return true
		}
		if err := pc.write(pc.ctx, MessageText, in.Reply); err != nil {
			return false
		}
	case InboundIgnore:
	default:
		pc.notes.push(in)
	}
	return true
}

// notes is an unbounded queue of protocol messages from the reader to the
// supervisor: nothing the server says is dropped because the supervisor is
// busy (a rotation's dial, a refresh's token fetch). The server can only
// make it grow as fast as the client reads, and the supervisor empties it
// whenever it is free.
type notes struct {
	mu    sync.Mutex
	items []Inbound
	wake  chan struct{}
}

func (n *notes) push(in Inbound) {
	n.mu.Lock()
	n.items = append(n.items, in)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take returns every queued message, oldest first, and empties the queue.
func (n *notes) take() []Inbound {
	n.mu.Lock()
	defer n.mu.Unlock()
	items := n.items
	n.items = nil
	return items
}

// write sends one message outside the send queue (a keepalive answer, a
// refresh, a Session.Send), bounded by Timeouts.Write and by ctx. A failed
// write ends the connection: the frame may have been cut.
func (pc *physConn) write(ctx context.Context, typ MessageType, p []byte) error {
	wctx, cancel := context.WithTimeout(ctx, pc.c.o.WriteTimeout)
	defer cancel()
	if err := pc.ws.Write(wctx, typ, p); err != nil {
		pc.fail(err)
		return fmt.Errorf("%w: %w", ErrDeliveryUnknown, scrubError(pc.red, err))
	}
	return nil
}

// settle ends the wait for the verdict, the first time; false when there
// was no wait.
func (pc *physConn) settle(v Verdict, expiresIn time.Duration) bool {
	if !pc.awaiting.CompareAndSwap(true, false) {
		return false
	}
	pc.settled <- settlement{verdict: v, expiresIn: expiresIn}
	return true
}

// deliver hands a message to Receive, waiting for room: a slow application
// slows the reading of the socket rather than growing memory without
// bound. The pinger does not count that wait against the connection.
func (pc *physConn) deliver(m inbound) bool {
	pc.delivering.Store(true)
	defer pc.delivering.Store(false)
	select {
	case <-pc.gate:
	case <-pc.ctx.Done():
		return false
	}
	select {
	case pc.c.inbox <- m:
		return true
	case <-pc.ctx.Done():
		return false
	}
}

func (pc *physConn) pingLoop() {
	defer pc.wg.Done()
	t := time.NewTicker(pc.c.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-pc.ctx.Done():
			return
		case <-t.C:
		}
		if pc.delivering.Load() {
			continue
		}
		before := pc.reads.Load()
		ctx, cancel := context.WithTimeout(pc.ctx, pc.c.o.PongTimeout)
		err := pc.ws.Ping(ctx)
		cancel()
		if err == nil || pc.ctx.Err() != nil {
			continue
		}
		// A reader stuck on a slow application cannot see the pong; data
		// that arrived meanwhile proves the peer alive all the same.
		if pc.delivering.Load() || pc.reads.Load() != before {
			continue
		}
		pc.fail(fmt.Errorf("%w (%s)", ErrPingTimeout, pc.c.o.PongTimeout))
		return
	}
}

// ending describes how the connection ended, for the reconnect policy.
func (pc *physConn) ending(since time.Time) Ending {
	now := time.Now()
	err := pc.err
	if pc.localClose.Load() {
		// The close frame echoed back is the client's own, not a verdict.
		err = errLocalClose
	}
	e := pc.c.describe(PhaseConnected, pc.red, err)
	e.Uptime = now.Sub(since)
	if pc.lateRefusal(e, now) {
		e.Phase = PhaseAuth
	}
	if !pc.expiry.IsZero() {
		slack := min(time.Second, pc.expiry.Sub(pc.obtained)/4)
		e.atExpiry = !now.Before(pc.expiry.Add(-slack))
	}
	return e
}

// lateRefusal tells a server that refuses late from one that ends a
// working session: a close within Options.AuthTimeout of the upgrade, on a
// connection let through without the server's word (the verdict window,
// PlainDialect's upgrade, no credential at all) and on which the server
// never sent an application message, is the refusal the client did not
// wait for.
func (pc *physConn) lateRefusal(e Ending, now time.Time) bool {
	return e.Code != 0 && pc.weak && pc.received.Load() == 0 &&
		now.Sub(pc.connectedAt) < pc.c.o.AuthTimeout
}

// Session is a freshly authenticated connection, handed to
// Options.OnConnect before queued sends are written.
type Session struct {
	pc *physConn
	// Attempt is the attempt number that produced this connection.
	Attempt int
	// Reason is why its credentials were fetched; ReasonInitial only for
	// the client's first connection.
	Reason Reason
	// Rotated is true for a connection that took over from a live one
	// (make-before-break).
	Rotated bool
}

// Send writes one message on this connection at once, ahead of the
// client's queue.
func (s *Session) Send(ctx context.Context, typ MessageType, data []byte) error {
	return s.pc.write(ctx, typ, data)
}

// Subprotocol is the subprotocol the server selected.
func (s *Session) Subprotocol() string { return s.pc.ws.Subprotocol() }

package wsauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// physConn is one physical, authenticated WebSocket of a Client. Its
// reader's role goes to the application's receivers or to a background
// reader (read.go); a timer, not a goroutine, pings it and watches its
// writes. While it is the live connection, queued sends are written to it
// by the Send whose turn it is.
type physConn struct {
	c      *Client
	ws     *websocket.Conn
	red    *redactor // &redSet once started
	redSet redactor  // the secrets of the attempt that made the connection

	ctx    *lazyContext // ends when the connection dies or is torn down
	ctxBox lazyContext

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

	// rtok holds a token while nobody holds the reader's role; direct
	// counts the application's receivers waiting for it, lastDirect is
	// when one last gave it back (Unix nanoseconds), and kick wakes the
	// background reader when a receiver that cannot read itself waits.
	rtok       chan struct{}
	direct     atomic.Int32
	lastDirect atomic.Int64
	kick       chan struct{}
	split      FrameSplitter
	// parts are messages of a frame a receiver split that it did not
	// return yet; only the holder of the role touches them.
	parts []message

	// writing is when the write in progress started (Unix nanoseconds),
	// zero when none; the liveness timer fails a write that outlasts
	// Timeouts.Write.
	writing atomic.Int64
	// tick is the liveness timer: every period it checks the write in
	// progress and, after PingInterval without traffic, pings.
	tick      *time.Timer
	period    time.Duration
	tickMu    sync.Mutex
	tickDone  bool
	lastReads int64 // reads seen at the last ping or traffic; the timer's own
	quietFor  time.Duration

	// conf is the bookkeeping of written and confirmed sends (confirm.go).
	conf confirmations

	delivering atomic.Bool
	reads      atomic.Int64
	wg         sync.WaitGroup
}

// settlement is how the reader settled a verdict.
type settlement struct {
	verdict   Verdict
	expiresIn time.Duration
}

// start makes pc, whose redactor the attempt filled, a running
// connection over ws: its reader goroutine and its liveness timer.
func (pc *physConn) start(c *Client, ws *websocket.Conn, now, expiry time.Time, gateOpen, await bool, pending [][]byte) {
	pc.c, pc.ws, pc.red = c, ws, &pc.redSet
	pc.connectedAt, pc.obtained, pc.expiry = now, now, expiry
	pc.gate = closedChan
	pc.dead = make(chan struct{})
	pc.notes.wake = make(chan struct{}, 1)
	pc.pending = pending
	// Not derived from the client's context: on Close the supervisor still
	// needs a live reader for the close handshake, and cancels this one
	// itself.
	pc.ctxBox.parent = context.Background()
	pc.ctx = &pc.ctxBox
	if !gateOpen {
		pc.gate = make(chan struct{})
	}
	if await {
		pc.settled = make(chan settlement, 1)
		pc.awaiting.Store(true)
	}
	pc.rtok = make(chan struct{}, 1)
	pc.kick = make(chan struct{}, 1)
	pc.split, _ = c.dialect.(FrameSplitter)
	if gateOpen {
		pc.openGate()
	}
	pc.wg.Add(1)
	go pc.readLoop()
	pc.period = c.o.WriteTimeout / 2
	if c.o.PingInterval > 0 {
		pc.period = min(pc.period, c.o.PingInterval)
	}
	pc.tickMu.Lock()
	pc.tick = time.AfterFunc(pc.period, pc.onTick)
	pc.tickMu.Unlock()
}

// openGate lets pc's messages flow to the application, and makes it the
// connection the application's receivers read.
func (pc *physConn) openGate() {
	pc.gateOnce.Do(func() {
		if pc.gate != closedChan {
			close(pc.gate)
		}
		pc.c.setReading(pc)
	})
}

// fail records why the connection died, the first time, and tears down its
// goroutines' context.
func (pc *physConn) fail(err error) {
	pc.failOnce.Do(func() {
		pc.err = err
		close(pc.dead)
		pc.ctx.stop()
		// Reads and queued writes carry no context; closing the socket is
		// what ends them. During the client's own close handshake, Close
		// closes the socket when it returns.
		if !pc.localClose.Load() {
			_ = pc.ws.CloseNow()
		}
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
		if pc.ws.Close(code, reason) == nil {
			// The server answered the close frame, which it read after
			// everything sent before.
			pc.confirmAll()
		}
	}
	pc.fail(errLocalClose)
	pc.tickMu.Lock()
	pc.tickDone = true
	pc.tick.Stop()
	pc.tickMu.Unlock()
	pc.wg.Wait()
}

var (
	errLocalClose   = errors.New("wsauth: connection closed by the client")
	errWriteTimeout = errors.New("wsauth: write timed out")
)

// writeQueued writes the send whose turn it is; the queue is busy until it
// returns. Writes carry no context (coder/websocket would arm a timer per
// frame): the liveness timer bounds them, and fail closes the socket under
// a stuck write.
func (pc *physConn) writeQueued(typ MessageType, data []byte, confirmed bool) (int64, error) {
	defer pc.c.queue.done()
	if !confirmed && pc.mustConfirm() {
		// The copies kept for EventUnconfirmed are at their limit: the
		// server confirms what it has before more is written.
		pc.conf.mu.Lock()
		seq := pc.conf.written
		pc.conf.mu.Unlock()
		if err := pc.confirm(pc.ctx, seq); err != nil {
			return 0, err
		}
	}
	pc.writing.Store(time.Now().UnixNano())
	err := pc.ws.Write(context.Background(), typ, data)
	pc.writing.Store(0)
	if err != nil {
		pc.fail(err)
		return 0, fmt.Errorf("%w: %w", ErrDeliveryUnknown, scrubError(pc.red, err))
	}
	return pc.wrote(typ, data, !confirmed && pc.c.o.KeepUnconfirmed > 0), nil
}

// onTick is the liveness timer. It runs on a goroutine of its own only
// while it works, so an idle connection costs the client no goroutine for
// it.
func (pc *physConn) onTick() {
	pc.tickMu.Lock()
	if pc.tickDone || pc.isDead() {
		pc.tickMu.Unlock()
		return
	}
	pc.wg.Add(1)
	tick := pc.tick
	pc.tickMu.Unlock()
	defer pc.wg.Done()
	defer func() {
		pc.tickMu.Lock()
		if !pc.tickDone {
			tick.Reset(pc.period)
		}
		pc.tickMu.Unlock()
	}()

	if w := pc.writing.Load(); w != 0 && time.Since(time.Unix(0, w)) > pc.c.o.WriteTimeout {
		pc.fail(errWriteTimeout)
		return
	}
	// Sends written since the last confirmation are confirmed now; the
	// round's pong also proves the peer alive.
	pc.conf.mu.Lock()
	if pc.conf.written > pc.conf.confirmed && pc.conf.round == nil {
		pc.startRoundLocked()
	}
	pc.conf.mu.Unlock()
	if pc.c.o.PingInterval <= 0 {
		return
	}
	// Traffic proves the peer alive; only a quiet connection is pinged.
	if reads := pc.reads.Load(); reads != pc.lastReads || pc.delivering.Load() {
		pc.lastReads, pc.quietFor = reads, 0
		return
	}
	pc.quietFor += pc.period
	if pc.quietFor < pc.c.o.PingInterval {
		return
	}
	pc.quietFor = 0
	pc.nudge() // someone must be reading to see the pong
	ctx, cancel := context.WithTimeout(pc.ctx, pc.c.o.PongTimeout)
	err := pc.ws.Ping(ctx)
	cancel()
	if err == nil || pc.ctx.Err() != nil {
		pc.lastReads = pc.reads.Load()
		return
	}
	// A reader stuck on a slow application cannot see the pong; data that
	// arrived meanwhile proves the peer alive all the same.
	if pc.delivering.Load() || pc.reads.Load() != pc.lastReads {
		pc.lastReads = pc.reads.Load()
		return
	}
	pc.fail(fmt.Errorf("%w (%s)", ErrPingTimeout, pc.c.o.PongTimeout))
}

// nudge ends the background reader's handover wait, so that it reads.
func (pc *physConn) nudge() {
	pc.lastDirect.Store(0)
	select {
	case pc.kick <- struct{}{}:
	default:
	}
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
// working session: a close within Timeouts.Auth of the upgrade, on a
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

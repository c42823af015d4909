// Package faultproxy provides a loopback TCP proxy for tests that need to
// simulate network faults between a client and a server: added latency,
// limited bandwidth, abrupt connection loss (a reset now, after a byte
// budget, or in the middle of the next chunk), half-open (black-holed)
// connections, stalled delivery, closes that reach the peer late and a
// server that refuses connections.
//
// The proxy is byte-oriented and knows nothing about the protocol it carries,
// so it works for WebSocket, HTTP or any other TCP protocol. Tests dial
// [Proxy.Addr] instead of the real server and flip faults on and off while
// the connections are in use.
//
// When either side of a healthy connection closes, the proxy closes both
// sides (after delivering data already read), so TCP half-close is not
// preserved. That is fine for protocols such as WebSocket that finish their
// own closing handshake before closing the socket.
package faultproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names which way data flows through the proxy. The faults that
// can differ by direction take a Direction; Both applies to the two.
type Direction int

// The directions.
const (
	// Upstream is data from the client to the server.
	Upstream Direction = 1 << iota
	// Downstream is data from the server to the client.
	Downstream
	// Both is Upstream and Downstream.
	Both = Upstream | Downstream
)

// index is d's slot in the per-direction arrays; d is one direction.
func (d Direction) index() int {
	if d == Downstream {
		return 1
	}
	return 0
}

// each calls fn with the slot of every direction in d.
func (d Direction) each(fn func(i int)) {
	if d&Upstream != 0 {
		fn(0)
	}
	if d&Downstream != 0 {
		fn(1)
	}
}

// queueLen bounds how many read chunks may wait for delivery in each
// direction. When the queue is full the proxy stops reading, so a stalled or
// slow peer pushes back on the sender through TCP flow control instead of
// making the proxy buffer without limit.
const queueLen = 64

// Proxy is a TCP proxy listening on 127.0.0.1 that forwards every accepted
// connection to a target address and can inject faults. All methods are safe
// for concurrent use. A Proxy must be closed with [Proxy.Close].
type Proxy struct {
	ln     net.Listener
	ctx    context.Context // cancelled by Close to abort dials in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy started

	mu        sync.Mutex
	target    string
	latency   time.Duration
	blackhole bool
	refuse    bool
	stalled   bool
	unstalled chan struct{} // closed while not stalled; replaced by Stall(true)
	held      atomic.Int64  // bytes a stall is holding now
	// Per direction (Direction.index):
	rate      [2]int64         // bytes per second, 0 for no limit
	cutAt     [2]int           // bytes of the next chunk to forward before a reset; -1 when not armed
	limit     [2]int64         // bytes a connection may carry before a reset, 0 for no limit
	limitGen  [2]int64         // bumped by SetDataLimit, so budgets count from the call
	slowClose [2]time.Duration // how long a close in that direction is held
	links     map[*link]struct{}
	accepted  int
	closed    bool

	closeOnce sync.Once
	closeErr  error
}

// New starts a proxy listening on 127.0.0.1:0 that forwards to target
// ("host:port"). The target is only dialled when a client connects, so it
// does not need to be up yet.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: bad target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	unstalled := make(chan struct{})
	close(unstalled)
	p := &Proxy{
		ln:        ln,
		ctx:       ctx,
		cancel:    cancel,
		target:    target,
		unstalled: unstalled,
		links:     make(map[*link]struct{}),
		cutAt:     [2]int{-1, -1},
	}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the "127.0.0.1:port" address that clients should dial instead
// of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns scheme://Addr()/path, so a test can turn a server URL into one
// that goes through the proxy, e.g. p.URL("ws", "/v1/stream?x=1"). The path
// is used verbatim (it may carry a query); a leading "/" is optional.
func (p *Proxy) URL(scheme, path string) string {
	return scheme + "://" + p.Addr() + "/" + strings.TrimPrefix(path, "/")
}

// SetTarget changes where connections accepted from now on are forwarded,
// typically to a server restarted on a new port. Existing connections keep
// their old target.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// SetLatency adds a one-way delay d to data in both directions on all
// connections, current and new; 0 (or a negative d) removes it. Like a real
// path, the delay is fixed when the proxy reads a chunk: changing it does not
// speed up or slow down data already in flight, and chunks are always
// delivered in the order they were read, so lowering it never reorders bytes.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(d, 0)
}

// Cut abruptly closes both sides of every current connection, with a TCP
// reset (SO_LINGER 0, so the peers read ECONNRESET rather than EOF), as if
// the network path died and the peers noticed. It is the proxy's "reset
// now" fault; CutMidFrame and SetDataLimit end a connection the same way,
// but at a chosen byte. It returns how many connections it closed. New
// connections are still accepted afterwards.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := p.links
	p.links = make(map[*link]struct{})
	p.mu.Unlock()
	for l := range links {
		l.close(true)
	}
	return len(links)
}

// SetBandwidth limits the data delivered in dir to bytesPerSec on each
// connection, current and new; 0 (or a negative value) removes the limit.
// Data is paced in slices of a twentieth of a second's worth, so a chunk
// larger than that trickles out instead of leaving in one burst, and a
// change of the rate applies from the next slice. A connection that was
// idle gets no credit for its idle time: a real link cannot send faster
// later for having been quiet. The limit holds each connection separately,
// as a per-flow shaper would; the proxy's total is not limited.
func (p *Proxy) SetBandwidth(dir Direction, bytesPerSec int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir.each(func(i int) { p.rate[i] = max(bytesPerSec, 0) })
}

// CutMidFrame arms a one-shot cut in dir: the next chunk the proxy
// delivers in that direction, on any connection, is forwarded only up to
// its first k bytes (never the whole chunk: at least one byte is withheld),
// and then both sides of that connection are reset, as Cut does. A peer
// thus receives half of whatever message was in flight, which is how a
// WebSocket frame gets cut in half on a real path. A negative k disarms a
// cut that has not fired yet; arming again replaces k. Armed tells
// whether it has fired.
func (p *Proxy) CutMidFrame(dir Direction, k int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir.each(func(i int) { p.cutAt[i] = max(k, -1) })
}

// Armed reports whether a CutMidFrame in dir is still waiting for a chunk
// (for Both, whether either is).
func (p *Proxy) Armed(dir Direction) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	armed := false
	dir.each(func(i int) { armed = armed || p.cutAt[i] >= 0 })
	return armed
}

// SetDataLimit resets every connection, current and new, once it has
// carried n bytes in dir; the chunk that crosses the limit is forwarded up
// to exactly n bytes, so the cut usually falls inside a message. The
// budget counts from the later of the connection's start and this call:
// a connection that carried more before the call still gets n bytes. 0
// (or a negative n) removes the limit.
func (p *Proxy) SetDataLimit(dir Direction, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir.each(func(i int) {
		p.limit[i] = max(n, 0)
		p.limitGen[i]++
	})
}

// SetSlowClose delays how a close travels in dir by d, on every connection,
// current and new; 0 (or a negative d) restores prompt closes. When the
// sending side in dir closes (the client for Upstream, the server for
// Downstream), the proxy delivers what that side sent, then keeps the
// receiving side open for d before closing it, as a path that loses or
// delays the FIN would; meanwhile data from the receiving side is still
// forwarded where it can be, and dropped where the closed side no longer
// takes it. A hold already running keeps the d it started with; Cut and
// Close end it at once.
func (p *Proxy) SetSlowClose(dir Direction, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir.each(func(i int) { p.slowClose[i] = max(d, 0) })
}

// Blackhole simulates half-open TCP connections. While on, existing and new
// connections stay open but every byte in both directions is silently
// dropped, and a peer closing its side is not propagated. Turning it off only
// affects connections made afterwards: the data dropped is gone and the
// affected connections stay dead-but-open until [Proxy.Cut] or [Proxy.Close],
// exactly like a connection whose path vanished without a FIN or RST.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = on
	if on {
		for l := range p.links {
			l.blackholed.Store(true)
		}
	}
}

// Stall holds data in both directions on all connections while on, without
// dropping it, as a congested or frozen path would. Turning it off delivers
// the held bytes in order. Because the proxy buffers only a bounded amount,
// senders eventually block through TCP flow control while stalled.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && !p.stalled:
		p.unstalled = make(chan struct{})
	case !on && p.stalled:
		close(p.unstalled)
	}
	p.stalled = on
}

// Held reports how many bytes a stall is holding right now, in both
// directions: a test can wait for data to be held instead of waiting for a
// while.
func (p *Proxy) Held() int64 { return p.held.Load() }

// Refuse makes the proxy behave like a server that is down while on: new
// connections are accepted and immediately reset, so clients see their
// connection fail. Existing connections are not affected.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Conns returns the number of live proxied connections, including ones still
// dialling the target and black-holed ones.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Accepted returns the total number of connections accepted so far,
// including refused ones, so tests can tell that a client (re)connected.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops listening, closes all connections and waits for every goroutine
// the proxy started, so tests using goleak stay clean. It is idempotent and
// returns the error from closing the listener.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		p.closeErr = p.ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p.closeErr
}

// acceptLoop runs until the listener is closed.
func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		if p.closed || p.refuse {
			p.mu.Unlock()
			reset(c)
			continue
		}
		// Register the link before dialling so Cut and Close also reach
		// connections whose dial is still in flight.
		l := &link{client: c, done: make(chan struct{})}
		l.blackholed.Store(p.blackhole)
		p.links[l] = struct{}{}
		target := p.target
		p.wg.Go(func() { p.serve(l, target) })
		p.mu.Unlock()
	}
}

// serve dials the target for l and forwards in both directions until the
// link is closed.
func (p *Proxy) serve(l *link, target string) {
	defer p.drop(l)
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", target)
	if err != nil {
		l.close(true) // the client sees the same failure as a refused dial
		return
	}
	if !l.attach(server) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, Upstream, l.client, server) })
	p.pipe(l, Downstream, server, l.client)
	wg.Wait()
}

// drop forgets l and releases its sockets once its goroutines are done.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	l.close(false)
}

// chunk is one read from a socket with the time it is due for delivery.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, which is direction dir. Reading and writing run
// in separate goroutines so latency applies per chunk instead of
// accumulating: later chunks are read while earlier ones wait out their
// delay.
func (p *Proxy) pipe(l *link, dir Direction, src, dst net.Conn) {
	q := make(chan chunk, queueLen)
	var wg sync.WaitGroup
	wg.Go(func() { p.writeLoop(l, dir, dst, q) })
	p.readLoop(l, src, q)
	wg.Wait()
}

// readLoop queues everything read from src until src fails or the link is
// closed, then closes q so the writer can finish.
func (p *Proxy) readLoop(l *link, src net.Conn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			due := time.Now().Add(p.latency)
			p.mu.Unlock()
			select {
			case q <- chunk{data: bytes.Clone(buf[:n]), due: due}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// writeLoop delivers queued chunks to dst, direction dir, in order. When
// the source is exhausted it closes the link, after the slow-close hold if
// one is set, unless the link is black-holed: a half-open connection must
// not tell the other peer anything. While the other direction holds the
// link open, a failed write does not close it: the hold decides when.
func (p *Proxy) writeLoop(l *link, dir Direction, dst net.Conn, q <-chan chunk) {
	w := &writer{p: p, l: l, i: dir.index(), dst: dst}
	for c := range q {
		if !w.deliver(c) {
			if l.holding.Load() {
				continue // drain q; the hold closes the link
			}
			l.close(false)
			return
		}
	}
	if l.blackholed.Load() {
		return
	}
	p.mu.Lock()
	hold := p.slowClose[w.i]
	p.mu.Unlock()
	if hold > 0 && l.holding.CompareAndSwap(false, true) {
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-l.done:
		}
		l.close(false)
		return
	}
	if !l.holding.Load() {
		l.close(false)
	}
}

// writer is the delivering half of one direction of a link; only its
// writeLoop goroutine uses it.
type writer struct {
	p    *Proxy
	l    *link
	i    int // Direction.index
	dst  net.Conn
	pace time.Time // when the bandwidth limit lets the next slice go
	sent int64     // bytes delivered since the data limit's generation gen
	gen  int64
}

// deliver waits out latency and stall, applies the one-shot cut and the
// data limit, then writes c at the allowed rate unless the link is
// black-holed. It reports false if the link is finished.
func (w *writer) deliver(c chunk) bool {
	p, l := w.p, w.l
	if l.blackholed.Load() {
		return true // no point holding bytes that will be dropped
	}
	if wait := time.Until(c.due); wait > 0 {
		if !l.wait(wait) {
			return false
		}
	}
	p.mu.Lock()
	unstalled := p.unstalled
	p.mu.Unlock()
	select {
	case <-unstalled:
	default:
		n := int64(len(c.data))
		p.held.Add(n)
		select {
		case <-unstalled:
			p.held.Add(-n)
		case <-l.done:
			p.held.Add(-n)
			return false
		}
	}
	if l.blackholed.Load() {
		return true // dropped on the floor, connection stays open
	}
	data, reset := w.budget(c.data)
	if !w.write(data) {
		return false
	}
	if reset {
		l.close(true)
		return false
	}
	return true
}

// budget applies an armed CutMidFrame and the data limit to data: it
// returns the part to forward and whether the link is to be reset after
// it.
func (w *writer) budget(data []byte) ([]byte, bool) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	reset := false
	if k := p.cutAt[w.i]; k >= 0 {
		p.cutAt[w.i] = -1
		data = data[:min(k, len(data)-1)]
		reset = true
	}
	if lim := p.limit[w.i]; lim > 0 {
		if w.gen != p.limitGen[w.i] {
			w.gen, w.sent = p.limitGen[w.i], 0
		}
		if left := lim - w.sent; int64(len(data)) >= left {
			data = data[:max(left, 0)]
			reset = true
		}
		w.sent += int64(len(data))
	}
	return data, reset
}

// write writes data to the destination, in slices paced by the bandwidth
// limit when there is one. It reports false if the write failed or the
// link finished while waiting.
func (w *writer) write(data []byte) bool {
	for len(data) > 0 {
		w.p.mu.Lock()
		rate := w.p.rate[w.i]
		w.p.mu.Unlock()
		if rate <= 0 {
			_, err := w.dst.Write(data)
			return err == nil
		}
		n := int(min(int64(len(data)), max(rate/20, 1)))
		if wait := time.Until(w.pace); wait > 0 && !w.l.wait(wait) {
			return false
		}
		if _, err := w.dst.Write(data[:n]); err != nil {
			return false
		}
		if now := time.Now(); w.pace.Before(now) {
			w.pace = now // no credit for idle time
		}
		w.pace = w.pace.Add(time.Duration(int64(n) * int64(time.Second) / rate))
		data = data[n:]
	}
	return true
}

// link is one proxied connection: the accepted client socket and, once
// dialled, the socket to the target.
type link struct {
	client     net.Conn
	blackholed atomic.Bool   // permanent once set: dropped data never comes back
	holding    atomic.Bool   // a slow close is holding the link open
	done       chan struct{} // closed by close, stops all waits of this link

	mu     sync.Mutex
	server net.Conn // nil until the dial succeeds
	closed bool
}

// wait waits d, and reports false if the link finished first.
func (l *link) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// attach records the dialled server socket. It reports false, and closes
// server, if the link was closed while dialling.
func (l *link) attach(server net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		reset(server)
		return false
	}
	l.server = server
	return true
}

// close closes both sockets, with a reset if rst is set, and wakes every
// goroutine of the link. It is idempotent.
func (l *link) close(rst bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	for _, c := range []net.Conn{l.client, l.server} {
		switch {
		case c == nil:
		case rst:
			reset(c)
		default:
			c.Close()
		}
	}
}

// reset closes c with SO_LINGER 0 so the peer gets a RST, which is how an
// abrupt failure looks on the wire, rather than an orderly FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

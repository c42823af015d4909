// Package faultproxy provides a loopback TCP proxy for tests that need to
// simulate network faults between a client and a server: added latency,
// abrupt connection loss, half-open (black-holed) connections, stalled
// delivery and a server that refuses connections.
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
// reset where possible, as if the network path died and the peers noticed.
// It returns how many connections it closed. New connections are still
// accepted afterwards.
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
	wg.Go(func() { p.pipe(l, l.client, server) })
	p.pipe(l, server, l.client)
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

// pipe copies src to dst. Reading and writing run in separate goroutines so
// latency applies per chunk instead of accumulating: later chunks are read
// while earlier ones wait out their delay.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	q := make(chan chunk, queueLen)
	var wg sync.WaitGroup
	wg.Go(func() { p.writeLoop(l, dst, q) })
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

// writeLoop delivers queued chunks to dst in order. When the source is
// exhausted it closes the link, unless the link is black-holed: a half-open
// connection must not tell the other peer anything.
func (p *Proxy) writeLoop(l *link, dst net.Conn, q <-chan chunk) {
	for c := range q {
		if !p.deliver(l, dst, c) {
			l.close(false)
			return
		}
	}
	if !l.blackholed.Load() {
		l.close(false)
	}
}

// deliver waits out latency and stall, then writes c unless the link is
// black-holed. It reports false if the link is finished.
func (p *Proxy) deliver(l *link, dst net.Conn, c chunk) bool {
	if l.blackholed.Load() {
		return true // no point holding bytes that will be dropped
	}
	if wait := time.Until(c.due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-l.done:
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
	_, err := dst.Write(c.data)
	return err == nil
}

// link is one proxied connection: the accepted client socket and, once
// dialled, the socket to the target.
type link struct {
	client     net.Conn
	blackholed atomic.Bool   // permanent once set: dropped data never comes back
	done       chan struct{} // closed by close, stops all waits of this link

	mu     sync.Mutex
	server net.Conn // nil until the dial succeeds
	closed bool
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

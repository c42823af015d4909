package faultproxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor is the deadline for anything that is expected to happen. It is
// generous because CI machines are slow and busy; tests never assert timings.
const waitFor = 10 * time.Second

// quietFor is how long a test waits to convince itself that nothing arrives.
// Only expected timeouts use it, so a slow machine cannot make a test fail.
const quietFor = 300 * time.Millisecond

// echoServer is a real loopback TCP server that echoes every byte back.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				_, _ = io.Copy(c, c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			})
		}
	})
	t.Cleanup(s.close)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

// live returns how many connections the server has open.
func (s *echoServer) live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *echoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), waitFor)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and requires the same bytes to come back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_, err := c.Write(msg)
	require.NoError(t, err)
	requireRead(t, c, msg)
}

// requireRead requires exactly want to arrive on c within waitFor.
func requireRead(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	got := make([]byte, len(want))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// requireQuiet requires that nothing arrives on c for quietFor and that the
// connection is still open, i.e. the read ends with a timeout, not EOF.
func requireQuiet(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(quietFor)))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n, "unexpected data")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "connection should be open but silent")
}

// requireClosed requires that reading c fails promptly with a real error
// (EOF or reset), not a timeout.
func requireClosed(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err := io.ReadAll(c)
	if err == nil {
		return // clean EOF
	}
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "connection was not closed")
}

// requireRejected requires a new connection through p to fail. The kernel
// completes the handshake before the proxy can reset it, so depending on
// timing the dial itself fails or the first read does.
func requireRejected(t *testing.T, p *Proxy) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), waitFor)
	if err != nil {
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
		return
	}
	defer c.Close()
	requireClosed(t, c)
}

// lines returns n numbered lines starting at from, so a reordering or a lost
// byte shows up in a readable diff.
func lines(from, n int) []byte {
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "message %04d\n", i)
	}
	return b.Bytes()
}

// writeLines writes each line with its own Write call so the proxy sees many
// separate chunks.
func writeLines(t *testing.T, c net.Conn, data []byte) {
	t.Helper()
	for line := range bytes.Lines(data) {
		_, err := c.Write(line)
		require.NoError(t, err)
	}
}

func TestNewRejectsBadTarget(t *testing.T) {
	_, err := New("no-port")
	require.Error(t, err)
}

func TestURL(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	require.Equal(t, "ws://"+p.Addr()+"/v1/ws?x=1", p.URL("ws", "/v1/ws?x=1"))
	require.Equal(t, "http://"+p.Addr()+"/a", p.URL("http", "a"))
	require.Equal(t, "ws://"+p.Addr()+"/", p.URL("ws", ""))
}

func TestForwardsBothWays(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)

	roundTrip(t, c, []byte("hello"))
	require.Equal(t, 1, p.Accepted())
	require.Equal(t, 1, p.Conns())

	// A payload far larger than the socket buffers must pass intact, which
	// needs a concurrent writer: the echo fills the return path meanwhile.
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		werr <- err
	}()
	requireRead(t, c, big)
	require.NoError(t, <-werr)
}

func TestClientCloseClosesServerSide(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))
	require.NoError(t, c.Close())

	// When the link is gone the proxy has closed the server side too.
	require.Eventually(t, func() bool { return p.Conns() == 0 && echo.live() == 0 },
		waitFor, 10*time.Millisecond)
}

func TestCut(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c1, c2 := dial(t, p), dial(t, p)
	roundTrip(t, c1, []byte("one"))
	roundTrip(t, c2, []byte("two"))

	require.Equal(t, 2, p.Cut())
	require.Equal(t, 0, p.Conns())
	requireClosed(t, c1)
	requireClosed(t, c2)

	// The proxy keeps working for new connections.
	c3 := dial(t, p)
	roundTrip(t, c3, []byte("three"))
	require.Equal(t, 3, p.Accepted())
}

func TestBlackhole(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	old := dial(t, p)
	roundTrip(t, old, []byte("before"))

	p.Blackhole(true)
	_, err := old.Write([]byte("lost"))
	require.NoError(t, err)
	requireQuiet(t, old)
	require.Equal(t, 1, p.Conns())
	require.Equal(t, 1, echo.live(), "server side must stay open")

	// New connections are black-holed too.
	during := dial(t, p)
	_, err = during.Write([]byte("lost too"))
	require.NoError(t, err)
	requireQuiet(t, during)

	p.Blackhole(false)
	fresh := dial(t, p)
	roundTrip(t, fresh, []byte("after"))

	// Connections black-holed earlier stay dead but open; dropped bytes are
	// gone for good.
	_, err = old.Write([]byte("still lost"))
	require.NoError(t, err)
	requireQuiet(t, old)
	require.Equal(t, 3, p.Conns())

	require.Equal(t, 3, p.Cut())
	requireClosed(t, old)
	requireClosed(t, during)
}

func TestBlackholeHidesPeerClose(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))

	p.Blackhole(true)
	require.NoError(t, c.Close())
	// The server must not learn that the client went away. A negative can
	// only be checked after some wait; the quiet period on c2 provides it.
	c2 := dial(t, p)
	_, err := c2.Write([]byte("y"))
	require.NoError(t, err)
	requireQuiet(t, c2)
	require.Equal(t, 2, echo.live())
	require.Equal(t, 2, p.Conns())
}

func TestStall(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("warm-up"))

	p.Stall(true)
	p.Stall(true) // idempotent
	want := lines(0, 200)
	writeLines(t, c, want)
	requireQuiet(t, c)

	p.Stall(false)
	p.Stall(false) // idempotent
	requireRead(t, c, want)
	roundTrip(t, c, []byte("flowing again"))
}

func TestRefuse(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	live := dial(t, p)
	roundTrip(t, live, []byte("x"))

	p.Refuse(true)
	requireRejected(t, p)
	require.Equal(t, 2, p.Accepted())
	require.Equal(t, int64(1), echo.accepted.Load(), "refused connection must not reach the server")
	roundTrip(t, live, []byte("existing connections unaffected"))

	p.Refuse(false)
	roundTrip(t, dial(t, p), []byte("back up"))
}

func TestDeadTargetClosesClient(t *testing.T) {
	// Grab a free port and release it so nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	p := newProxy(t, dead)
	requireRejected(t, p)
	require.Eventually(t, func() bool { return p.Conns() == 0 }, waitFor, 10*time.Millisecond)
}

func TestSetTarget(t *testing.T) {
	a, b := newEcho(t), newEcho(t)
	p := newProxy(t, a.addr())
	ca := dial(t, p)
	roundTrip(t, ca, []byte("to a"))

	p.SetTarget(b.addr())
	cb := dial(t, p)
	roundTrip(t, cb, []byte("to b"))
	require.Equal(t, int64(1), a.accepted.Load())
	require.Equal(t, int64(1), b.accepted.Load())

	// The existing connection still talks to the old server.
	roundTrip(t, ca, []byte("still a"))
}

func TestLatencyKeepsOrder(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("warm-up"))

	// Latency applies to existing connections.
	p.SetLatency(30 * time.Millisecond)
	first := lines(0, 100)
	writeLines(t, c, first)
	requireRead(t, c, first)

	// Lowering it while chunks may still be in flight must not let later
	// chunks overtake earlier ones. (Whether the proxy has read the second
	// batch before the change is up to the scheduler; order must hold
	// either way.)
	second, third := lines(100, 100), lines(200, 100)
	writeLines(t, c, second)
	p.SetLatency(0)
	writeLines(t, c, third)
	requireRead(t, c, append(second, third...))

	// New connections get it too.
	p.SetLatency(5 * time.Millisecond)
	c2 := dial(t, p)
	want := lines(0, 50)
	writeLines(t, c2, want)
	requireRead(t, c2, want)
}

func TestCloseReleasesEverything(t *testing.T) {
	echo := newEcho(t)
	ignore := goleak.IgnoreCurrent() // the echo server's accept loop
	p, err := New(echo.addr())
	require.NoError(t, err)

	// Connections in every state the proxy can wait in.
	normal, held, holed := dial(t, p), dial(t, p), dial(t, p)
	for _, c := range []net.Conn{normal, held, holed} {
		roundTrip(t, c, []byte("x"))
	}
	p.Stall(true)
	_, err = held.Write([]byte("held"))
	require.NoError(t, err)
	p.SetLatency(time.Hour)
	_, err = normal.Write([]byte("delayed"))
	require.NoError(t, err)
	p.Blackhole(true)
	_, err = holed.Write([]byte("dropped"))
	require.NoError(t, err)

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	require.NoError(t, p.Close(), "Close is idempotent")
	require.Equal(t, 0, p.Conns())

	for _, c := range []net.Conn{normal, held, holed} {
		requireClosed(t, c)
	}
	_, err = net.DialTimeout("tcp", p.Addr(), waitFor)
	require.Error(t, err, "listener must be closed")

	// The proxy's own goroutines are gone once Close returns; goleak retries
	// only to let the echo server's handlers notice their closed sockets.
	goleak.VerifyNone(t, ignore)
}

// TestCutDuringTraffic exercises Cut racing with busy pipes under -race.
func TestCutDuringTraffic(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	p.SetLatency(time.Millisecond)
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))

	flowing := make(chan struct{})
	readDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		var once sync.Once
		for {
			if _, err := c.Read(buf); err != nil {
				readDone <- err
				return
			}
			once.Do(func() { close(flowing) })
		}
	}()
	writeDone := make(chan error, 1)
	go func() {
		buf := bytes.Repeat([]byte("z"), 1024)
		for {
			if _, err := c.Write(buf); err != nil {
				writeDone <- err
				return
			}
		}
	}()

	select {
	case <-flowing:
	case <-time.After(waitFor):
		t.Fatal("no echo arrived")
	}
	require.Equal(t, 1, p.Cut())
	for _, done := range []chan error{readDone, writeDone} {
		select {
		case err := <-done:
			require.Error(t, err)
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
		case <-time.After(waitFor):
			t.Fatal("client did not notice the cut")
		}
	}
}

// sinkServer is a real loopback TCP server that, for every connection,
// runs greet (if any), then reads until the connection fails and reports
// what it read and how the read ended.
type sinkServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	ended chan sunk

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// sunk is one connection as the sink server saw it.
type sunk struct {
	data []byte
	err  error // nil for a clean EOF
}

func newSink(t *testing.T, greet func(net.Conn)) *sinkServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &sinkServer{ln: ln, ended: make(chan sunk, 16), conns: make(map[net.Conn]struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				if greet != nil {
					greet(c)
				}
				data, err := io.ReadAll(c)
				s.ended <- sunk{data: data, err: err}
			})
		}
	})
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sinkServer) addr() string { return s.ln.Addr().String() }

// next returns the next connection the sink saw end.
func (s *sinkServer) next(t *testing.T) sunk {
	t.Helper()
	select {
	case e := <-s.ended:
		return e
	case <-time.After(waitFor):
		t.Fatal("the server's connection did not end")
		return sunk{}
	}
}

// requireReset requires that reading c yields nothing more than want and
// then fails with ECONNRESET: the peer was reset, not closed in order.
func requireReset(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	got, err := io.ReadAll(c)
	require.Equal(t, string(want), string(got))
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

func TestCutResetsBothSides(t *testing.T) {
	sink := newSink(t, func(c net.Conn) { _, _ = c.Write([]byte("hi")) })
	p := newProxy(t, sink.addr())
	c := dial(t, p)
	requireRead(t, c, []byte("hi"))
	require.Equal(t, 1, p.Cut())
	requireReset(t, c, nil)
	e := sink.next(t)
	require.ErrorIs(t, e.err, syscall.ECONNRESET, "the server side is reset too, not closed")
}

func TestCutMidFrameUpstream(t *testing.T) {
	sink := newSink(t, func(c net.Conn) { _, _ = c.Write([]byte("ready")) })
	p := newProxy(t, sink.addr())
	c := dial(t, p)
	requireRead(t, c, []byte("ready")) // the link is up: the next write is one chunk
	require.False(t, p.Armed(Both))

	p.CutMidFrame(Upstream, 3)
	require.True(t, p.Armed(Upstream))
	require.False(t, p.Armed(Downstream))
	_, err := c.Write([]byte("hello world"))
	require.NoError(t, err)
	e := sink.next(t)
	require.Equal(t, "hel", string(e.data), "only the first k bytes of the chunk pass")
	require.ErrorIs(t, e.err, syscall.ECONNRESET)
	requireReset(t, c, nil)
	require.False(t, p.Armed(Both), "the cut is one-shot")

	// A new connection is not cut.
	c2 := dial(t, p)
	requireRead(t, c2, []byte("ready"))
	_, err = c2.Write([]byte("whole"))
	require.NoError(t, err)
	require.NoError(t, c2.Close())
	e = sink.next(t)
	require.Equal(t, "whole", string(e.data))
	require.NoError(t, e.err)
}

func TestCutMidFrameDownstreamWithholdsAtLeastOneByte(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))

	p.CutMidFrame(Downstream, 100) // larger than the chunk
	_, err := c.Write([]byte("abcdef"))
	require.NoError(t, err)
	requireReset(t, c, []byte("abcde"))
	require.Eventually(t, func() bool { return p.Conns() == 0 && echo.live() == 0 }, waitFor, 10*time.Millisecond)

	// Disarming works before a chunk comes.
	c2 := dial(t, p)
	p.CutMidFrame(Downstream, 1)
	p.CutMidFrame(Downstream, -1)
	require.False(t, p.Armed(Both))
	roundTrip(t, c2, []byte("intact"))
}

func TestDataLimit(t *testing.T) {
	sink := newSink(t, func(c net.Conn) { _, _ = c.Write([]byte("go")) })
	p := newProxy(t, sink.addr())
	p.SetDataLimit(Upstream, 10)

	c := dial(t, p)
	requireRead(t, c, []byte("go"))                         // downstream is not limited
	for _, part := range []string{"abcd", "efgh", "ijkl"} { // 12 bytes: the third crosses the limit
		_, err := c.Write([]byte(part))
		require.NoError(t, err)
	}
	e := sink.next(t)
	require.Equal(t, "abcdefghij", string(e.data), "exactly the budget passes")
	require.ErrorIs(t, e.err, syscall.ECONNRESET)
	requireReset(t, c, nil)

	// Every connection has a budget of its own; 0 removes the limit.
	c2 := dial(t, p)
	requireRead(t, c2, []byte("go"))
	p.SetDataLimit(Upstream, 0)
	_, err := c2.Write(lines(0, 10))
	require.NoError(t, err)
	require.NoError(t, c2.Close())
	e = sink.next(t)
	require.NoError(t, e.err)
	require.Equal(t, string(lines(0, 10)), string(e.data))
}

func TestDataLimitCountsFromTheCall(t *testing.T) {
	sink := newSink(t, func(c net.Conn) { _, _ = c.Write([]byte("go")) })
	p := newProxy(t, sink.addr())
	c := dial(t, p)
	requireRead(t, c, []byte("go"))
	// Downstream has carried 2 bytes; a limit of 3 from now lets 3 more
	// pass and then resets.
	p.SetDataLimit(Downstream, 3)
	p.SetDataLimit(Upstream, 5)
	_, err := c.Write([]byte("12345678"))
	require.NoError(t, err)
	e := sink.next(t)
	require.Equal(t, "12345", string(e.data))
	requireReset(t, c, nil)
}

func TestSlowCloseHoldsTheOtherSide(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  Direction
	}{{"server closes", Downstream}, {"client closes", Upstream}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink(t, func(c net.Conn) {
				_, _ = c.Write([]byte("bye"))
				if tc.dir == Downstream {
					c.Close()
				}
			})
			p := newProxy(t, sink.addr())
			p.SetSlowClose(tc.dir, time.Hour)
			c := dial(t, p)
			requireRead(t, c, []byte("bye"))
			if tc.dir == Downstream {
				// The server has closed; the client still sees an open,
				// silent connection, and what it writes is dropped.
				sink.next(t)
				requireQuiet(t, c)
				_, err := c.Write([]byte("into the closed side"))
				require.NoError(t, err)
				requireQuiet(t, c)
			} else {
				_, err := c.Write([]byte("last"))
				require.NoError(t, err)
				require.NoError(t, c.Close())
				// The server gets the data, but not the close.
				select {
				case e := <-sink.ended:
					t.Fatalf("the server saw the close during the hold: %q %v", e.data, e.err)
				case <-time.After(quietFor):
				}
			}
			require.Equal(t, 1, p.Conns())
			// Cut ends the hold at once.
			require.Equal(t, 1, p.Cut())
			if tc.dir == Downstream {
				requireClosed(t, c)
			} else {
				e := sink.next(t)
				require.Equal(t, "last", string(e.data))
			}
		})
	}
}

func TestSlowCloseEnds(t *testing.T) {
	sink := newSink(t, func(c net.Conn) {
		_, _ = c.Write([]byte("bye"))
		c.Close()
	})
	p := newProxy(t, sink.addr())
	p.SetSlowClose(Both, 50*time.Millisecond)
	c := dial(t, p)
	requireRead(t, c, []byte("bye"))
	requireClosed(t, c) // after the hold, an ordinary close
	require.Eventually(t, func() bool { return p.Conns() == 0 }, waitFor, 10*time.Millisecond)

	// Without it, closes are prompt again (the link goes away with no
	// hold to wait out; the test only checks it goes away).
	p.SetSlowClose(Both, 0)
	c2 := dial(t, p)
	requireRead(t, c2, []byte("bye"))
	requireClosed(t, c2)
}

func TestBandwidth(t *testing.T) {
	echo := newEcho(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p)
	roundTrip(t, c, []byte("x"))

	const rate = 8 << 10
	p.SetBandwidth(Upstream, rate)
	want := lines(0, 400) // 5,200 bytes
	start := time.Now()
	go func() { _, _ = c.Write(want) }()
	requireRead(t, c, want)
	// A lower bound only, which a slow machine cannot break: at 8 KiB/s
	// the bytes need more than half a second; allow a slice of slack.
	min := time.Duration(len(want))*time.Second/rate - 100*time.Millisecond
	require.GreaterOrEqual(t, time.Since(start), min, "the limit did not hold")

	// Removing the limit lets data through at once (checked only for
	// integrity: speed is not asserted).
	p.SetBandwidth(Both, 0)
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	go func() { _, _ = c.Write(big) }()
	requireRead(t, c, big)
}

func TestCloseEndsHoldsAndPacing(t *testing.T) {
	sink := newSink(t, func(c net.Conn) {
		_, _ = c.Write([]byte("bye"))
		c.Close()
	})
	ignore := goleak.IgnoreCurrent()
	p, err := New(sink.addr())
	require.NoError(t, err)
	p.SetSlowClose(Downstream, time.Hour)
	p.SetBandwidth(Upstream, 1)
	c := dial(t, p)
	requireRead(t, c, []byte("bye"))
	_, err = c.Write(bytes.Repeat([]byte("z"), 100)) // a hundred seconds' worth
	require.NoError(t, err)

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	requireClosed(t, c)
	goleak.VerifyNone(t, ignore)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth"
)

// The client roles. Each runs in a process of its own, measures with the
// process's own counters (MemStats, getrusage, VmRSS) and reports one
// result line. The calls inside measured loops carry context.Background():
// coder/websocket arms a timer per frame for a context that can end, which
// would charge both sides a cost no careful application pays.

func payload(size int) []byte { return bytes.Repeat([]byte{'x'}, size) }

// roundTripRole sends a message and waits for its echo, over and over on
// one connection, for s.Duration after s.Warmup.
func roundTripRole(ctx context.Context, s spec, out *emitter) error {
	if s.Impl == implWSInt && !hasReceiveInto() {
		out.emit(line{Kind: "result", Result: &result{Unavailable: true}})
		return nil
	}
	t, err := newTokens()
	if err != nil {
		return err
	}
	ep, err := dialEndpoint(ctx, s.Impl, s.URL, t, s.Size)
	if err != nil {
		return err
	}
	defer ep.close()
	msg := payload(s.Size)
	if _, err := roundTrips(ep, msg, s.Warmup, nil); err != nil {
		return err
	}
	lat := newLatencies(1 << 20)
	runtime.GC()
	u0 := readUsage()
	n, err := roundTrips(ep, msg, s.Duration, lat)
	u1 := readUsage()
	if err != nil {
		return err
	}
	q := lat.quantiles(0.50, 0.99)
	out.emit(line{Kind: "result", Result: &result{
		Msgs: n, Elapsed: u1.at.Sub(u0.at), P50: q[0], P99: q[1],
		Mallocs: u1.mallocs - u0.mallocs, Bytes: u1.bytes - u0.bytes, CPU: u1.cpu - u0.cpu,
	}})
	return nil
}

// roundTrips runs round trips for d; lat, when not nil, gets each one's
// time.
func roundTrips(ep endpoint, msg []byte, d time.Duration, lat *latencies) (int64, error) {
	bg := context.Background()
	start := time.Now()
	var n int64
	for {
		t0 := time.Now()
		if err := ep.send(bg, msg); err != nil {
			return n, err
		}
		if err := ep.recv(bg); err != nil {
			return n, err
		}
		t1 := time.Now()
		n++
		if lat != nil {
			lat.add(t1.Sub(t0))
		}
		if t1.Sub(start) >= d {
			return n, nil
		}
	}
}

// counter is a per-connection message count on a cache line of its own.
type counter struct {
	n atomic.Int64
	_ [56]byte
}

// pipelinedRole keeps s.Conns connections busy, a sender and a receiver
// goroutine on each, and counts the messages received in the window. The
// sender stays at most s.Window messages ahead of the receiver: unbounded,
// it would fill the socket buffers of loopback (megabytes per socket) for
// the whole window, and the figure would measure that filling rather than
// a steady flow.
func pipelinedRole(ctx context.Context, s spec, out *emitter) error {
	t, err := newTokens()
	if err != nil {
		return err
	}
	eps, err := dialMany(ctx, s.Conns, func() (endpoint, error) { return dialEndpoint(ctx, s.Impl, s.URL, t, s.Size) })
	defer func() {
		for _, ep := range eps {
			ep.close()
		}
	}()
	if err != nil {
		return err
	}
	msg := payload(s.Size)
	counts := make([]counter, len(eps))
	sent := make([]counter, len(eps))
	stop := make(chan struct{})
	failed := make(chan error, 2*len(eps))
	var wg sync.WaitGroup
	bg := context.Background()
	for i, ep := range eps {
		window := make(chan struct{}, max(1, s.Window))
		wg.Go(func() {
			for {
				select {
				case window <- struct{}{}:
				case <-stop:
					return
				}
				if err := ep.send(bg, msg); err != nil {
					failed <- err
					return
				}
				sent[i].n.Add(1)
			}
		})
		wg.Go(func() {
			for {
				if err := ep.recv(bg); err != nil {
					failed <- err
					return
				}
				<-window
				counts[i].n.Add(1)
			}
		})
	}
	total := func(counts []counter) (n int64) {
		for i := range counts {
			n += counts[i].n.Load()
		}
		return n
	}
	wait := func(d time.Duration) error {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
			return nil
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var res result
	err = wait(s.Warmup)
	if err == nil {
		u0, n0, s0 := readUsage(), total(counts), total(sent)
		err = wait(s.Duration)
		u1, n1, s1 := readUsage(), total(counts), total(sent)
		res = result{Msgs: n1 - n0, Sent: s1 - s0, Elapsed: u1.at.Sub(u0.at), Mallocs: u1.mallocs - u0.mallocs,
			Bytes: u1.bytes - u0.bytes, CPU: u1.cpu - u0.cpu, Conns: len(eps)}
	}
	close(stop)
	for _, ep := range eps {
		ep.close()
	}
	eps = nil
	wg.Wait()
	if err != nil {
		return err
	}
	out.emit(line{Kind: "result", Result: &res})
	return nil
}

// dialMany opens n endpoints, a few at a time; on failure it returns what
// it opened, for the caller to close.
func dialMany(ctx context.Context, n int, dial func() (endpoint, error)) ([]endpoint, error) {
	eps := make([]endpoint, n)
	errs := make([]error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(n, 8) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				eps[i], errs[i] = dial()
			}
		})
	}
	wg.Wait()
	opened := eps[:0]
	for _, ep := range eps {
		if ep != nil {
			opened = append(opened, ep)
		}
	}
	return opened, errors.Join(append(errs, ctx.Err())...)
}

// dialRole dials and closes (with the close handshake) one connection after
// another for s.Duration: raw coder with a static header, or a wsauth
// client with HeaderAuth and a static token.
func dialRole(ctx context.Context, s spec, out *emitter) error {
	t, err := newTokens()
	if err != nil {
		return err
	}
	var once func() error
	switch s.Impl {
	case implRaw:
		tok, err := t.mint()
		if err != nil {
			return err
		}
		once = func() error {
			ws, err := rawDial(ctx, s.URL, tok, nil)
			if err != nil {
				return err
			}
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return nil
		}
	case implWS:
		ts, err := t.static()
		if err != nil {
			return err
		}
		once = func() error {
			c, err := wsauth.Dial(ctx, s.URL, wsauthOptions(ts, 0))
			if err != nil {
				return err
			}
			return c.Close()
		}
	default:
		return fmt.Errorf("dial: unknown implementation %q", s.Impl)
	}
	loop := func(d time.Duration) (int64, error) {
		start := time.Now()
		var n int64
		for time.Since(start) < d {
			if err := once(); err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	if _, err := loop(s.Warmup); err != nil {
		return err
	}
	runtime.GC()
	u0 := readUsage()
	n, err := loop(s.Duration)
	u1 := readUsage()
	if err != nil {
		return err
	}
	out.emit(line{Kind: "result", Result: &result{Msgs: n, Elapsed: u1.at.Sub(u0.at),
		Mallocs: u1.mallocs - u0.mallocs, Bytes: u1.bytes - u0.bytes, CPU: u1.cpu - u0.cpu}})
	return nil
}

// idleRole opens s.Conns idle connections, one after another, and reports
// the growth of RSS, heap and goroutines they cost the process: raw, a
// coder connection with one goroutine blocked in Read (coder answers pings
// and closes only during a read); wsauth, a Client, which reads on its
// own, and with s.Reader a goroutine blocked in Receive, the application's
// counterpart of raw's reader.
func idleRole(ctx context.Context, s spec, out *emitter) error {
	t, err := newTokens()
	if err != nil {
		return err
	}
	var closers []func()
	var readers sync.WaitGroup
	defer func() {
		for _, c := range closers {
			c()
		}
		readers.Wait()
	}()
	tok, err := t.mint()
	if err != nil {
		return err
	}
	ts, err := t.static()
	if err != nil {
		return err
	}
	before := restingFootprint()
	for range s.Conns {
		switch s.Impl {
		case implRaw:
			ws, err := rawDial(ctx, s.URL, tok, nil)
			if err != nil {
				return err
			}
			closers = append(closers, func() { _ = ws.CloseNow() })
			readers.Go(func() {
				for {
					if _, _, err := ws.Read(context.Background()); err != nil {
						return
					}
				}
			})
		case implWS:
			c, err := wsauth.Dial(ctx, s.URL, wsauthOptions(ts, 0))
			if err != nil {
				return err
			}
			closers = append(closers, func() { _ = c.Close() })
			if s.Reader {
				readers.Go(func() {
					for {
						if _, _, err := c.Receive(context.Background()); err != nil {
							return
						}
					}
				})
			}
		default:
			return fmt.Errorf("idle: unknown implementation %q", s.Impl)
		}
	}
	after := restingFootprint()
	out.emit(line{Kind: "result", Result: &result{Conns: s.Conns, RSS: after.rss - before.rss,
		Heap: after.heap - before.heap, Goroutine: after.goroutines - before.goroutines}})
	return nil
}

// fleetRole holds s.Conns raw connections open for a server's sake. It
// reports ready, opens them when told "go", s.Parallel at a time, from
// source addresses spread over 127.0.0.x, reports connected, and holds
// them until its stdin ends. Each has a goroutine blocked in Read, so that
// the server's pings are answered. With s.AuthOK a connection counts once
// it has read the server's auth_ok: the server has registered it by then.
func fleetRole(ctx context.Context, s spec, ctl *control, out *emitter) error {
	t, err := newTokens()
	if err != nil {
		return err
	}
	tok, err := t.mint()
	if err != nil {
		return err
	}
	clients := map[string]*http.Client{}
	for i := range s.Conns {
		a := sourceAddr(s.First + i)
		if clients[a.IP.String()] == nil {
			d := &net.Dialer{LocalAddr: a, Timeout: 30 * time.Second}
			clients[a.IP.String()] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		}
	}
	out.emit(line{Kind: "ready"})
	if !ctl.await("go") {
		return nil
	}

	var (
		mu      sync.Mutex
		conns   []*websocket.Conn
		failed  int
		lastErr error
		readers sync.WaitGroup
		dialers sync.WaitGroup
		next    atomic.Int64
	)
	defer func() {
		mu.Lock()
		for _, ws := range conns {
			_ = ws.CloseNow()
		}
		mu.Unlock()
		readers.Wait()
	}()
	// attempt opens connection i once; with s.AuthOK it counts only once
	// the server's first message has arrived.
	attempt := func(i int) error {
		ws, err := rawDial(ctx, s.URL, tok, clients[sourceAddr(s.First+i).IP.String()])
		if err != nil {
			return err
		}
		first := make(chan error, 1)
		mu.Lock()
		conns = append(conns, ws)
		mu.Unlock()
		readers.Go(func() {
			for n := 0; ; n++ {
				_, _, err := ws.Read(context.Background())
				if n == 0 {
					first <- err
				}
				if err != nil {
					return
				}
			}
		})
		if !s.AuthOK {
			return nil
		}
		if err := <-first; err != nil {
			_ = ws.CloseNow()
			mu.Lock()
			conns = slices.DeleteFunc(conns, func(c *websocket.Conn) bool { return c == ws })
			mu.Unlock()
			return fmt.Errorf("closed before its first message: %w", err)
		}
		return nil
	}
	one := func(i int) (err error) {
		for range 3 {
			if err = attempt(i); err == nil || ctx.Err() != nil {
				return err
			}
		}
		return err
	}
	for range max(1, s.Parallel) {
		dialers.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= s.Conns || ctx.Err() != nil {
					return
				}
				if err := one(i); err != nil {
					mu.Lock()
					failed++
					lastErr = err
					mu.Unlock()
				}
			}
		})
	}
	dialers.Wait()
	mu.Lock()
	l := line{Kind: "connected", N: len(conns), Result: &result{Conns: len(conns), Failed: failed}}
	if lastErr != nil {
		l.Err = lastErr.Error()
	}
	mu.Unlock()
	out.emit(l)
	<-ctl.gone
	return nil
}

// reconnectRole measures, over and over, the time from the reference
// server's CloseAll(1008) to the client's next authenticated connection:
// wsauth, its EventConnected; raw, a coder client written by hand that
// redials with a fresh header when its read ends with 1008. Both times are
// wall-clock Unix nanoseconds, the clock the two processes share.
func reconnectRole(ctx context.Context, s spec, out *emitter) error {
	t, err := newTokens()
	if err != nil {
		return err
	}
	connected := make(chan int64, 64)
	failed := make(chan error, 1)
	var stop func()
	switch s.Impl {
	case implRaw:
		stop = rawRedialer(ctx, s.URL, t, connected, failed)
	case implWS:
		o := wsauthOptions(t, 0) // a fresh token for every connection
		// Every 1008 here ends a session that is over: a client whose
		// sessions last StableAfter reconnects at once, and the bench
		// means that path, not the backoff of a refusal streak.
		o.Reconnect.StableAfter = time.Nanosecond
		o.OnEvent = func(e wsauth.Event) {
			if e.Kind == wsauth.EventConnected {
				connected <- e.Time.UnixNano()
			}
		}
		c, err := wsauth.New(s.URL, o)
		if err != nil {
			return err
		}
		stop = func() { _ = c.Close() }
	default:
		return fmt.Errorf("reconnect: unknown implementation %q", s.Impl)
	}
	defer stop()

	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	awaitConnected := func() (int64, error) {
		tm := time.NewTimer(10 * time.Second)
		defer tm.Stop()
		select {
		case at := <-connected:
			return at, nil
		case err := <-failed:
			return 0, err
		case <-tm.C:
			return 0, errors.New("no connection within 10s")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if _, err := awaitConnected(); err != nil {
		return err
	}
	lat := newLatencies(1 << 16)
	round := func() error {
		closedAt, err := postCloseAll(ctx, hc, s.Control)
		if err != nil {
			return err
		}
		at, err := awaitConnected()
		if err != nil {
			return err
		}
		lat.add(time.Duration(at - closedAt))
		return nil
	}
	for start := time.Now(); time.Since(start) < s.Warmup; {
		if err := round(); err != nil {
			return err
		}
	}
	lat = newLatencies(1 << 16)
	start := time.Now()
	for time.Since(start) < s.Duration || lat.n < 10 {
		if err := round(); err != nil {
			return err
		}
	}
	q := lat.quantiles(0.50, 0.99)
	out.emit(line{Kind: "result", Result: &result{Msgs: int64(lat.n), Elapsed: time.Since(start), P50: q[0], P99: q[1]}})
	return nil
}

func postCloseAll(ctx context.Context, hc *http.Client, control string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, control+"/bench/close-all", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("close-all: %s", resp.Status)
	}
	var a closeAllAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return 0, err
	}
	return a.At, nil
}

// rawRedialer is the by-hand baseline of a reconnecting client: dial with
// a fresh token, read until the connection ends, and on a 1008 do it
// again. It reports each connection's time on connected; stop ends it.
func rawRedialer(ctx context.Context, url string, t tokens, connected chan<- int64, failed chan<- error) (stop func()) {
	var (
		mu      sync.Mutex
		cur     *websocket.Conn
		stopped bool
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			tok, err := t.mint()
			if err != nil {
				failed <- err
				return
			}
			ws, err := rawDial(ctx, url, tok, nil)
			if err != nil {
				mu.Lock()
				quiet := stopped
				mu.Unlock()
				if !quiet {
					failed <- err
				}
				return
			}
			at := time.Now().UnixNano()
			mu.Lock()
			if stopped {
				mu.Unlock()
				_ = ws.CloseNow()
				return
			}
			cur = ws
			mu.Unlock()
			connected <- at
			for {
				if _, _, err = ws.Read(context.Background()); err != nil {
					break
				}
			}
			_ = ws.CloseNow()
			mu.Lock()
			quiet := stopped
			mu.Unlock()
			if quiet {
				return
			}
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				failed <- fmt.Errorf("raw redialer: connection ended without 1008: %w", err)
				return
			}
		}
	}()
	return func() {
		mu.Lock()
		stopped = true
		if cur != nil {
			_ = cur.CloseNow()
		}
		mu.Unlock()
		<-done
	}
}

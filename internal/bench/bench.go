package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// bench runs the figures round after round and keeps every measurement.
type bench struct {
	cfg   *config
	l     *launcher
	log   io.Writer
	rows  []*row
	byKey map[string]*row
	notes []string
	// fdHard is RLIMIT_NOFILE's hard limit, which every child inherits and
	// none can raise without privilege: it caps the connections of one
	// process.
	fdHard uint64
	// loadBefore is the load average when the run started.
	loadBefore string
	// nextAddr is the connection index the next fleet starts at: every
	// fleet of the run gets source addresses of its own, from a random
	// start, so that no fleet meets the TIME_WAIT ports of an earlier one,
	// of this run or of the last.
	nextAddr int

	rawSrv, refSrv *serverProc
}

// unit says how a figure's values print.
type unit string

const (
	unitRate  unit = "1/s"
	unitDur   unit = "ns"
	unitBytes unit = "bytes"
	unitCount unit = "count"
)

// row is one line of the table: per round, the raw and the wsauth value
// (NaN where not measured).
type row struct {
	key, label string
	unit       unit
	raw, ws    []float64
	na         string // why the wsauth side is not measured
}

func newBench(cfg *config, l *launcher, log io.Writer) *bench {
	b := &bench{cfg: cfg, l: l, log: log, byKey: map[string]*row{}, nextAddr: rand.IntN(30000) * perAddr}
	add := func(group, key, label string, u unit) {
		if !cfg.runs(group) {
			return
		}
		r := &row{key: key, label: label, unit: u, raw: nans(cfg.rounds), ws: nans(cfg.rounds)}
		b.rows = append(b.rows, r)
		b.byKey[key] = r
	}
	add("rtt", "rtt.rate", "round trip, 1 conn: msgs/s", unitRate)
	add("rtt", "rtt.p50", "round trip p50 latency", unitDur)
	add("rtt", "rtt.p99", "round trip p99 latency", unitDur)
	add("pipe", "pipe.1", "pipelined, 1 conn: msgs/s", unitRate)
	add("pipe", "pipe.n", fmt.Sprintf("pipelined, %d conns: msgs/s", cfg.pipeConns), unitRate)
	add("rtt", "alloc.recv", "allocations per message (Receive; raw: Read)", unitCount)
	add("rtt", "bytes.recv", "bytes allocated per message (Receive; raw: Read)", unitBytes)
	add("rtt", "alloc.into", "allocations per message (ReceiveInto; raw: Read)", unitCount)
	add("rtt", "bytes.into", "bytes allocated per message (ReceiveInto; raw: Read)", unitBytes)
	add("rtt", "rtt.into", "round trip with ReceiveInto, 1 conn: msgs/s", unitRate)
	add("rtt", "cpu.rtt", "client CPU per message, round trip", unitDur)
	add("pipe", "cpu.pipe1", "client CPU per message, pipelined 1 conn", unitDur)
	add("pipe", "cpu.pipen", fmt.Sprintf("client CPU per message, pipelined %d conns", cfg.pipeConns), unitDur)
	add("dial", "dial.rate", "dial + close vs the raw server: conns/s", unitRate)
	add("dial", "dial.allocs", "dial + close vs the raw server: allocations per dial", unitCount)
	add("dial", "dial.cpu", "dial + close vs the raw server: client CPU per dial", unitDur)
	add("dial", "dialref.rate", "dial + close vs the reference server: conns/s", unitRate)
	add("dial", "dialref.allocs", "dial + close vs the reference server: allocations per dial", unitCount)
	add("dial", "dialref.cpu", "dial + close vs the reference server: client CPU per dial", unitDur)
	add("idle", "idle.rss", fmt.Sprintf("idle conn with a reader (%d in one process): RSS per conn", cfg.idleConns), unitBytes)
	add("idle", "idle.heap", "idle conn with a reader: heap per conn", unitBytes)
	add("idle", "idle.goroutines", "idle conn with a reader: goroutines per conn", unitCount)
	add("idle", "client.rss", "idle wsauth Client alone (no Receive goroutine): RSS per conn", unitBytes)
	add("idle", "client.goroutines", "idle wsauth Client alone: goroutines per conn", unitCount)
	add("server", "server.rss", "", unitBytes)
	add("server", "server.goroutines", "", unitCount)
	add("server", "server.hs", "", unitRate)
	add("server", "server.cpu", "", unitDur)
	add("reconnect", "reconnect.p50", "server 1008 → next authenticated connection p50", unitDur)
	add("reconnect", "reconnect.p99", "server 1008 → next authenticated connection p99", unitDur)
	if cfg.big && cfg.runs("server") {
		add("server", "big.rss", "", unitBytes)
		add("server", "big.goroutines", "", unitCount)
		add("server", "big.hs", "", unitRate)
		add("server", "big.cpu", "", unitDur)
	}
	if !hasReceiveInto() {
		for _, k := range []string{"alloc.into", "bytes.into", "rtt.into"} {
			if r := b.byKey[k]; r != nil {
				r.na = "wsauth.Client has no ReceiveInto in this build"
			}
		}
	}
	return b
}

func nans(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// set records one value; a row not in this run is ignored.
func (b *bench) set(key string, round int, impl string, v float64) {
	r := b.byKey[key]
	if r == nil {
		return
	}
	if impl == implRaw {
		r.raw[round] = v
	} else {
		r.ws[round] = v
	}
}

func (b *bench) label(key, label string) {
	if r := b.byKey[key]; r != nil {
		r.label = label
	}
}

func (b *bench) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
	}
}

// note adds a line under the table, once.
func (b *bench) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(b.notes, n) {
		b.notes = append(b.notes, n)
	}
}

// order alternates which side goes first, round by round, so that a drift
// of the machine does not always favour the same one.
func order(round int) []string {
	if round%2 == 0 {
		return []string{implRaw, implWS}
	}
	return []string{implWS, implRaw}
}

// measure runs every round, then the --big figure.
func (b *bench) measure(ctx context.Context) error {
	b.loadBefore = loadAverage()
	_, b.fdHard, _ = raiseFileLimit(maxFiles)
	c := b.cfg
	var err error
	if c.runs("rtt") || c.runs("pipe") || c.runs("dial") || c.runs("idle") {
		if b.rawSrv, err = b.startServer(ctx, roleRawServer); err != nil {
			return err
		}
		defer b.rawSrv.stop()
	}
	if c.runs("dial") || c.runs("reconnect") {
		if b.refSrv, err = b.startServer(ctx, roleRefServer); err != nil {
			return err
		}
		defer b.refSrv.stop()
	}
	n := b.capConns(c.conns)
	b.label("server.rss", fmt.Sprintf("server, %s idle authenticated conns: RSS per conn", count(n)))
	b.label("server.goroutines", fmt.Sprintf("server, %s idle authenticated conns: goroutines per conn", count(n)))
	b.label("server.hs", fmt.Sprintf("server, opening %s conns: handshakes/s", count(n)))
	b.label("server.cpu", fmt.Sprintf("server, opening %s conns: server CPU per handshake", count(n)))
	for r := range c.rounds {
		steps := []struct {
			group string
			run   func(context.Context, int) error
		}{
			{"rtt", b.roundTrip}, {"pipe", b.pipelined}, {"dial", b.dial}, {"idle", b.idle},
			{"server", func(ctx context.Context, r int) error { return b.serverFigure(ctx, r, "server", n) }},
			{"reconnect", b.reconnect},
		}
		for _, s := range steps {
			if !c.runs(s.group) {
				continue
			}
			b.logf("round %d/%d: %s", r+1, c.rounds, s.group)
			if err := s.run(ctx, r); err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, s.group, err)
			}
		}
	}
	if c.big && c.runs("server") {
		n := b.capConns(c.bigConns)
		b.label("big.rss", fmt.Sprintf("server, %s idle authenticated conns (--big, once): RSS per conn", count(n)))
		b.label("big.goroutines", fmt.Sprintf("server, %s idle authenticated conns (--big, once): goroutines per conn", count(n)))
		b.label("big.hs", fmt.Sprintf("server, opening %s conns (--big, once): handshakes/s", count(n)))
		b.label("big.cpu", fmt.Sprintf("server, opening %s conns (--big, once): server CPU per handshake", count(n)))
		b.logf("--big: %d connections", n)
		if err := b.serverFigure(ctx, 0, "big", n); err != nil {
			return fmt.Errorf("--big: %w", err)
		}
	}
	return nil
}

// capConns limits a server's connections to what RLIMIT_NOFILE lets one
// process hold, and says so.
func (b *bench) capConns(n int) int {
	if b.fdHard == 0 || uint64(n)+fdSpare <= b.fdHard {
		return n
	}
	capped := int(b.fdHard) - fdSpare
	b.note("asked for %d connections on one server; RLIMIT_NOFILE's hard limit (%d) lets one process hold about %d, "+
		"and raising it needs CAP_SYS_RESOURCE (ulimit -Hn as root): measured %d", n, b.fdHard, capped, capped)
	return capped
}

// fdSpare is the file descriptors a process keeps beside its connections.
const fdSpare = 512

// serverProc is a running server child.
type serverProc struct {
	c    *child
	addr string
	hc   *http.Client
}

func (b *bench) startServer(ctx context.Context, role string) (*serverProc, error) {
	c, err := b.l.start(ctx, spec{Role: role})
	if err != nil {
		return nil, err
	}
	ln, err := c.expect("ready", time.Minute)
	if err != nil {
		c.kill()
		return nil, err
	}
	return &serverProc{c: c, addr: ln.Addr, hc: &http.Client{Timeout: time.Minute}}, nil
}

func (s *serverProc) url() string     { return "ws://" + s.addr + wsPath }
func (s *serverProc) control() string { return "http://" + s.addr }

func (s *serverProc) stats(ctx context.Context) (serverStats, error) {
	var st serverStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.control()+"/bench/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (s *serverProc) stop() error {
	s.hc.CloseIdleConnections()
	return s.c.stop(time.Minute)
}

// client runs one client process to its result.
func (b *bench) client(ctx context.Context, s spec) (*result, error) {
	c, err := b.l.start(ctx, s)
	if err != nil {
		return nil, err
	}
	ln, err := c.expect("result", s.Warmup+s.Duration+2*time.Minute)
	if err != nil {
		c.kill()
		_ = c.finish(time.Minute)
		return nil, err
	}
	if err := c.finish(time.Minute); err != nil {
		return nil, err
	}
	if ln.Result == nil {
		return nil, c.failure(fmt.Errorf("result line without a result"))
	}
	return ln.Result, nil
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return math.NaN()
	}
	return float64(n) / d.Seconds()
}

func per(x float64, n int64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return x / float64(n)
}

func (b *bench) roundTrip(ctx context.Context, r int) error {
	impls := order(r)
	if hasReceiveInto() {
		impls = append(impls, implWSInt)
	}
	for _, impl := range impls {
		res, err := b.client(ctx, spec{Role: roleRoundTrip, Impl: impl, URL: b.rawSrv.url(), Size: b.cfg.size,
			Duration: b.cfg.duration, Warmup: b.cfg.warmup})
		if err != nil {
			return err
		}
		if res.Unavailable {
			continue
		}
		rate := perSecond(res.Msgs, res.Elapsed)
		allocs, bytes := per(float64(res.Mallocs), res.Msgs), per(float64(res.Bytes), res.Msgs)
		if impl == implWSInt {
			b.set("rtt.into", r, implWS, rate)
			b.set("alloc.into", r, implWS, allocs)
			b.set("bytes.into", r, implWS, bytes)
			continue
		}
		b.set("rtt.rate", r, impl, rate)
		b.set("rtt.p50", r, impl, float64(res.P50))
		b.set("rtt.p99", r, impl, float64(res.P99))
		b.set("alloc.recv", r, impl, allocs)
		b.set("bytes.recv", r, impl, bytes)
		b.set("cpu.rtt", r, impl, per(float64(res.CPU), res.Msgs))
		if impl == implRaw {
			// ReceiveInto is measured against the same raw Read.
			b.set("rtt.into", r, impl, rate)
			b.set("alloc.into", r, impl, allocs)
			b.set("bytes.into", r, impl, bytes)
		}
	}
	return nil
}

func (b *bench) pipelined(ctx context.Context, r int) error {
	for _, conns := range []int{1, b.cfg.pipeConns} {
		rate, cpu := "pipe.1", "cpu.pipe1"
		if conns != 1 {
			rate, cpu = "pipe.n", "cpu.pipen"
		}
		for _, impl := range order(r) {
			res, err := b.client(ctx, spec{Role: rolePipelined, Impl: impl, URL: b.rawSrv.url(), Size: b.cfg.size,
				Conns: conns, Window: b.cfg.window, Duration: b.cfg.duration, Warmup: b.cfg.warmup})
			if err != nil {
				return err
			}
			b.set(rate, r, impl, perSecond(res.Msgs, res.Elapsed))
			b.set(cpu, r, impl, per(float64(res.CPU), res.Msgs))
		}
	}
	return nil
}

func (b *bench) dial(ctx context.Context, r int) error {
	for _, target := range []struct {
		srv             *serverProc
		rate, allo, cpu string
	}{{b.rawSrv, "dial.rate", "dial.allocs", "dial.cpu"}, {b.refSrv, "dialref.rate", "dialref.allocs", "dialref.cpu"}} {
		for _, impl := range order(r) {
			res, err := b.client(ctx, spec{Role: roleDial, Impl: impl, URL: target.srv.url(),
				Duration: b.cfg.duration, Warmup: b.cfg.warmup})
			if err != nil {
				return err
			}
			b.set(target.rate, r, impl, perSecond(res.Msgs, res.Elapsed))
			b.set(target.allo, r, impl, per(float64(res.Mallocs), res.Msgs))
			b.set(target.cpu, r, impl, per(float64(res.CPU), res.Msgs))
		}
	}
	return nil
}

// idle measures idle connections in one client process: raw with a
// goroutine in Read; wsauth with a goroutine in Receive, and alone.
func (b *bench) idle(ctx context.Context, r int) error {
	n := b.capConns(b.cfg.idleConns)
	for _, impl := range order(r) {
		readers := []bool{false}
		if impl == implWS {
			readers = []bool{true, false}
		}
		for _, reader := range readers {
			res, err := b.client(ctx, spec{Role: roleIdle, Impl: impl, URL: b.rawSrv.url(), Conns: n, Reader: reader})
			if err != nil {
				return err
			}
			rss := per(float64(res.RSS), int64(res.Conns))
			goroutines := per(float64(res.Goroutine), int64(res.Conns))
			if impl == implRaw || reader {
				b.set("idle.rss", r, impl, rss)
				b.set("idle.heap", r, impl, per(float64(res.Heap), int64(res.Conns)))
				b.set("idle.goroutines", r, impl, goroutines)
			}
			if impl == implRaw || !reader {
				b.set("client.rss", r, impl, rss)
				b.set("client.goroutines", r, impl, goroutines)
			}
		}
	}
	return nil
}

// serverFigure measures a server holding n idle authenticated connections:
// raw, the raw echo server; wsauth, the reference server. The clients are
// raw coder connections with the header in both cases, in fleet processes
// of their own.
func (b *bench) serverFigure(ctx context.Context, r int, prefix string, n int) error {
	for _, impl := range order(r) {
		role := roleRawServer
		if impl == implWS {
			role = roleRefServer
		}
		m, err := b.holdFleet(ctx, role, n)
		if err != nil {
			return err
		}
		b.set(prefix+".rss", r, impl, m.rssPerConn)
		b.set(prefix+".goroutines", r, impl, m.goroutinesPerConn)
		b.set(prefix+".hs", r, impl, m.handshakes)
		b.set(prefix+".cpu", r, impl, m.cpuPerHandshake)
	}
	return nil
}

type fleetMeasure struct {
	rssPerConn, goroutinesPerConn, handshakes, cpuPerHandshake float64
}

func (b *bench) holdFleet(ctx context.Context, role string, n int) (fleetMeasure, error) {
	var m fleetMeasure
	srv, err := b.startServer(ctx, role)
	if err != nil {
		return m, err
	}
	defer srv.stop()
	before, err := srv.stats(ctx)
	if err != nil {
		return m, err
	}
	perFleet := max(1, min(int(b.fdHard)-fdSpare, 25000))
	if b.fdHard == 0 {
		perFleet = 10000
	}
	var fleets []*child
	defer func() {
		for _, f := range fleets {
			if err := f.stop(time.Minute); err != nil {
				b.logf("%v", err)
			}
		}
	}()
	base := b.nextAddr
	b.nextAddr += (n + perAddr - 1) / perAddr * perAddr
	for first := 0; first < n; first += perFleet {
		f, err := b.l.start(ctx, spec{Role: roleFleet, URL: srv.url(), Conns: min(perFleet, n-first), First: base + first,
			Parallel: b.cfg.parallel, AuthOK: role == roleRefServer})
		if err != nil {
			return m, err
		}
		fleets = append(fleets, f)
		if _, err := f.expect("ready", time.Minute); err != nil {
			return m, err
		}
	}
	start := time.Now()
	for _, f := range fleets {
		if err := f.tell("go"); err != nil {
			return m, err
		}
	}
	held := 0
	for _, f := range fleets {
		ln, err := f.expect("connected", time.Minute+time.Duration(n)*10*time.Millisecond)
		if err != nil {
			return m, err
		}
		if ln.Result.Failed > 0 {
			return m, f.failure(fmt.Errorf("%d of %d connections failed: %s", ln.Result.Failed, ln.Result.Failed+ln.Result.Conns, ln.Err))
		}
		held += ln.Result.Conns
	}
	elapsed := time.Since(start)
	after, err := srv.stats(ctx)
	if err != nil {
		return m, err
	}
	if after.Live-before.Live != int64(held) {
		b.note("%s: %d connections held, the server counted %d live", role, held, after.Live-before.Live)
	}
	m.rssPerConn = per(float64(after.RSS-before.RSS), int64(held))
	m.goroutinesPerConn = per(float64(after.Goroutines-before.Goroutines), int64(held))
	m.handshakes = perSecond(int64(held), elapsed)
	m.cpuPerHandshake = per(float64(after.CPU-before.CPU), int64(held))
	return m, nil
}

func (b *bench) reconnect(ctx context.Context, r int) error {
	for _, impl := range order(r) {
		res, err := b.client(ctx, spec{Role: roleReconnect, Impl: impl, URL: b.refSrv.url(), Control: b.refSrv.control(),
			Duration: b.cfg.duration, Warmup: b.cfg.warmup})
		if err != nil {
			return err
		}
		b.set("reconnect.p50", r, impl, float64(res.P50))
		b.set("reconnect.p99", r, impl, float64(res.P99))
	}
	return nil
}

// count prints a connection count the way the table names it: 10k, 100k.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

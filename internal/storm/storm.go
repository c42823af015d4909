package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wsauth/wsauth/server"
)

// config is the command's flags, resolved.
type config struct {
	args        []string
	clients     int
	quick       bool
	svg         string
	json        bool
	addr        string
	down        time.Duration
	stableAfter time.Duration
	parallel    int
	stops       []string
	timeout     time.Duration
}

// The ways of stopping the server.
const (
	stopGraceful = "graceful" // SIGTERM: every WebSocket closed 1001, then Shutdown
	stopKill     = "kill"     // SIGKILL: the sockets just end
	// stopGoingAway is no stop: the server sends going_away on every
	// connection and stays up, and the clients move to new connections.
	stopGoingAway = "going-away"
)

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{args: args}
	fs.IntVar(&c.clients, "clients", 5000, "wsauth clients connected to the server")
	fs.BoolVar(&c.quick, "quick", false, "a run of seconds for CI: 300 clients, 1s down, StableAfter 1s (explicit flags win)")
	fs.StringVar(&c.svg, "svg", "docs/storm.svg", "write the chart here; empty: no chart")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of the table")
	fs.StringVar(&c.addr, "addr", "", "the server's fixed address; default a free 127.0.0.1 port below the ephemeral range")
	fs.DurationVar(&c.down, "down", 2*time.Second, "how long the server stays down between the old one's exit and the new one's start")
	fs.DurationVar(&c.stableAfter, "stable-after", 0, "the clients' ReconnectPolicy.StableAfter, also how long the connections are up before the restart; 0: the default, 10s")
	fs.IntVar(&c.parallel, "parallel", 64, "first connections in flight at once while the fleet connects")
	stops := fs.String("stop", stopGraceful+","+stopKill+","+stopGoingAway,
		"comma-separated: graceful (SIGTERM, close 1001), kill (SIGKILL), going-away (the going_away notice, the server stays up)")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "how long every step (connecting, reconnecting) may take before the run fails")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./internal/storm [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["clients"] {
			c.clients = 300
		}
		if !set["down"] {
			c.down = time.Second
		}
		if !set["stable-after"] {
			c.stableAfter = time.Second
		}
	}
	for s := range strings.SplitSeq(*stops, ",") {
		switch s = strings.TrimSpace(s); s {
		case stopGraceful, stopKill, stopGoingAway:
			c.stops = append(c.stops, s)
		case "":
		default:
			return nil, fmt.Errorf("--stop: unknown %q (have graceful, kill, going-away)", s)
		}
	}
	switch {
	case c.clients < 1:
		return nil, errors.New("--clients must be at least 1")
	case c.clients > 9000:
		// Each side holds a socket per client, and a ticket connection
		// or two beside it, under a hard limit of open files.
		return nil, errors.New("--clients: at most 9000 in one process")
	case c.down < 0 || c.stableAfter < 0 || c.parallel < 1 || c.timeout <= 0:
		return nil, errors.New("--down and --stable-after must not be negative, --parallel and --timeout positive")
	case len(c.stops) == 0:
		return nil, errors.New("--stop: nothing to run")
	}
	return c, nil
}

// report is what the command prints as JSON.
type report struct {
	Command  string    `json:"command"`
	Date     time.Time `json:"date"`
	CPUs     int       `json:"cpus"`
	Clients  int       `json:"clients"`
	Down     string    `json:"down"`
	Stable   string    `json:"stable_after"`
	BucketMS int       `json:"bucket_ms"`
	Runs     []*result `json:"runs"`
}

// run is the command: it runs the storms, then prints the table (or JSON)
// on stdout and writes the chart; progress goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	rep, err := storms(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.svg != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.svg), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(cfg.svg, chart(rep), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "storm: chart written to", cfg.svg)
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeTable(stdout, rep)
	return nil
}

// storms runs every policy against every way of stopping the server.
func storms(ctx context.Context, cfg *config, stderr io.Writer) (*report, error) {
	if limit, err := raiseFileLimit(); err != nil {
		return nil, fmt.Errorf("file limit: %w", err)
	} else if limit != 0 && limit < uint64(cfg.clients)+1000 {
		return nil, fmt.Errorf("%d clients need more than the %d open files this process may have", cfg.clients, limit)
	}
	key := server.RandomKey()
	issuer, err := server.NewHMACIssuer(key)
	if err != nil {
		return nil, err
	}
	tokens := make([]string, cfg.clients)
	for i := range tokens {
		if tokens[i], err = issuer.Issue(fmt.Sprintf("storm-%d", i), 24*time.Hour); err != nil {
			return nil, err
		}
	}
	addr := cfg.addr
	if addr == "" {
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	stable := cfg.stableAfter
	if stable == 0 {
		stable = 10 * time.Second // the default of ReconnectPolicy.StableAfter
	}
	rep := &report{Command: "go run ./internal/storm " + strings.Join(cfg.args, " "), Date: time.Now().UTC(),
		CPUs: runtime.NumCPU(), Clients: cfg.clients, Down: cfg.down.String(), Stable: stable.String(), BucketMS: int(bucket / time.Millisecond)}
	n := 0
	for _, stop := range cfg.stops {
		for _, pol := range []policy{fullJitter, noJitter} {
			fmt.Fprintf(stderr, "storm: %s, %s stop, %d clients...\n", pol.name, stop, cfg.clients)
			s := &storm{cfg: cfg, addr: addr, hexKey: hex.EncodeToString(key), tokens: tokens, stable: stable, run: n}
			r, err := s.do(ctx, pol, stop)
			if err != nil {
				return nil, fmt.Errorf("%s, %s stop: %w", pol.name, stop, err)
			}
			fmt.Fprintf(stderr, "storm:   all back after %s, peak %d reconnections per 100ms\n", r.AllReconnected.Round(time.Millisecond), r.PeakReconnects)
			rep.Runs = append(rep.Runs, r)
			n++
		}
	}
	return rep, nil
}

// freeAddr picks a free 127.0.0.1 port below the usual ephemeral range
// (32768 and up), so that no client's source port takes it while the
// server is down.
func freeAddr() (string, error) {
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.N(12000))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			_ = ln.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port found in 127.0.0.1:20000-31999; use --addr")
}

// storm is one run.
type storm struct {
	cfg    *config
	addr   string
	hexKey string
	tokens []string
	stable time.Duration
	run    int
}

func (s *storm) do(ctx context.Context, pol policy, stop string) (res *result, err error) {
	timeout := s.cfg.timeout
	old, _, err := startServer(s.addr, s.hexKey, timeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if old != nil {
			old.kill()
		}
	}()
	f, err := connectFleet(ctx, fleetConfig{
		run: s.run, n: s.cfg.clients, wsURL: "ws://" + s.addr + "/ws", ticketURL: "http://" + s.addr + "/api/ws-ticket",
		tokens: s.tokens[:s.cfg.clients], policy: pol, stableAfter: s.cfg.stableAfter, parallel: s.cfg.parallel,
	})
	if err != nil {
		return nil, err
	}
	defer f.close()

	// Leave every connection up for StableAfter, so that each client's
	// backoff is reset when the restart ends its connection.
	last := time.Time{}
	for _, evs := range f.snapshot() {
		for _, e := range evs {
			if e.Time.After(last) {
				last = e.Time
			}
		}
	}
	if err := wait(ctx, time.Until(last.Add(s.stable+100*time.Millisecond))); err != nil {
		return nil, err
	}

	res = &result{Policy: pol.name, Stop: stop}
	t0 := time.Now()
	f.markRestart(t0)
	if stop == stopGoingAway {
		srv := old
		if n, err := srv.goingAway(timeout); err != nil {
			return nil, err
		} else if n != s.cfg.clients {
			return nil, fmt.Errorf("going_away delivered on %d of %d connections", n, s.cfg.clients)
		}
		return s.finish(ctx, res, t0, f, srv, func() { old = nil })
	}
	switch stop {
	case stopGraceful:
		err = old.stop(timeout)
	default:
		old.kill()
	}
	old = nil
	if err != nil {
		return nil, err
	}
	res.Stopping = time.Since(t0)
	if err := wait(ctx, s.cfg.down); err != nil {
		return nil, err
	}
	srv, up, err := startServer(s.addr, s.hexKey, timeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if srv != nil {
			srv.kill()
		}
	}()
	res.Up = up.Sub(t0)
	return s.finish(ctx, res, t0, f, srv, func() { srv = nil })
}

// finish waits for every client to be back on srv, collects the records,
// closes the fleet and stops srv; stopped tells the caller that srv is
// no longer its to kill.
func (s *storm) finish(ctx context.Context, res *result, t0 time.Time, f *fleet, srv *serverProc, stopped func()) (*result, error) {
	timeout := s.cfg.timeout
	if err := f.waitReconnected(ctx, timeout); err != nil {
		return nil, err
	}
	rec, err := srv.report(timeout)
	if err != nil {
		return nil, err
	}
	logs := f.snapshot()
	res.Offered, res.OfferedTwice = f.offered.counts()
	f.close()
	stopped()
	if err := srv.stop(timeout); err != nil {
		return nil, err
	}
	analyze(res, t0, logs, rec)
	return res, nil
}

// wait waits d, part of the scenario (never a synchronisation), or until
// ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// writeTable prints the figures, one column a run.
func writeTable(w io.Writer, rep *report) {
	fmt.Fprintf(w, "%d clients, server down %s, StableAfter %s, %d CPUs, buckets of %d ms\n\n", rep.Clients, rep.Down, rep.Stable, rep.CPUs, rep.BucketMS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(r *result) string) {
		fmt.Fprint(tw, label+"\t")
		for _, r := range rep.Runs {
			fmt.Fprint(tw, f(r)+"\t")
		}
		fmt.Fprintln(tw)
	}
	row("", func(r *result) string { return r.Policy })
	row("server stop", func(r *result) string { return r.Stop })
	row("close code seen", func(r *result) string { return codes(r.DropCodes) })
	row("new server listening at", func(r *result) string {
		if r.Stop == stopGoingAway {
			return "(stays up)"
		}
		return ms(r.Up)
	})
	row("all back at", func(r *result) string { return ms(r.AllReconnected) })
	row("p50 reconnect", func(r *result) string { return ms(r.P50) })
	row("p99 reconnect", func(r *result) string { return ms(r.P99) })
	row("peak reconnects /100ms", func(r *result) string { return fmt.Sprint(r.PeakReconnects) })
	row("peak attempts /100ms", func(r *result) string { return fmt.Sprint(r.PeakAttempts) })
	row("peak ticket requests /100ms", func(r *result) string { return fmt.Sprint(r.PeakTickets) })
	row("peak handshakes /100ms", func(r *result) string { return fmt.Sprint(r.PeakHandshakes) })
	row("attempts after restart", func(r *result) string { return fmt.Sprint(r.Attempts) })
	row("ticket requests (new server)", func(r *result) string { return fmt.Sprint(r.Tickets) })
	row("tickets offered twice", func(r *result) string { return fmt.Sprint(r.OfferedTwice) })
	row("invalid-ticket refusals", func(r *result) string { return fmt.Sprint(r.InvalidTickets) })
	tw.Flush()
	fmt.Fprintln(w, "\ntimes are since the restart (the stop signal, or the going_away notice); a reconnect is a client's first")
	fmt.Fprintln(w, "EventConnected after it (EventRotated after going_away); attempts count EventConnecting, which a rotation has not")
}

// codes renders the close codes the clients saw, "none" for a connection
// that ended without a close frame.
func codes(m map[int]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for code, n := range m {
		name := fmt.Sprint(code)
		if code == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, n))
	}
	if len(parts) > 1 {
		slices.Sort(parts)
	}
	return strings.Join(parts, " ")
}

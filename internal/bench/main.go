// Command bench measures wsauth against raw github.com/coder/websocket on
// this machine, side by side in the same run, and prints a table of the
// figures with the median of the per-round wsauth/raw ratios:
//
//	go run ./internal/bench              # the full run: 5 rounds of 2s windows
//	go run ./internal/bench --quick      # seconds, for CI
//	go run ./internal/bench --json       # machine-readable
//	go run ./internal/bench --big --only server   # the 100,000-connection server figure
//
// Every server and every client runs in a process of its own: the command
// re-executes itself with a hidden subcommand, and each client process
// measures its own allocations (runtime.MemStats), CPU (getrusage) and
// memory (VmRSS), reported back as JSON on stdout. Readiness travels the
// same way (a server prints its address once listening, a fleet of
// connections says when it is connected); nothing waits by sleeping.
// Rounds alternate which implementation goes first. BENCHMARKS.md says
// what each figure means.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsauth/wsauth/server"
)

func main() {
	if isChild(os.Args[1:]) {
		os.Exit(runChild(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the run's flags, resolved.
type config struct {
	args      []string
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	size      int
	pipeConns int
	window    int
	idleConns int
	conns     int // figure 7: idle authenticated connections on one server
	big       bool
	bigConns  int // figure 8
	parallel  int // handshakes in flight per fleet process
	json      bool
	jsonFile  string
	quick     bool
	only      map[string]bool
}

// The groups --only selects.
var groups = []string{"rtt", "pipe", "dial", "idle", "server", "reconnect"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{args: args}
	fs.IntVar(&c.rounds, "rounds", 5, "rounds; each figure is measured once per round for each side")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "measured window of each loop")
	fs.DurationVar(&c.warmup, "warmup", 300*time.Millisecond, "warm-up before each measured window")
	fs.IntVar(&c.size, "size", 64, "message size, bytes")
	fs.IntVar(&c.pipeConns, "pipe-conns", 64, "connections of the many-connection pipelined figure")
	fs.IntVar(&c.window, "window", 128, "pipelined: messages a sender may be ahead of its receiver")
	fs.IntVar(&c.idleConns, "idle", 1000, "idle client connections held by one process")
	fs.IntVar(&c.conns, "conns", 10000, "idle authenticated connections held by one server process")
	fs.BoolVar(&c.big, "big", false, "also measure one server holding --big-conns connections, once")
	fs.IntVar(&c.bigConns, "big-conns", 100000, "connections of the --big figure")
	fs.IntVar(&c.parallel, "parallel", 32, "handshakes in flight per fleet process")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of the table")
	fs.StringVar(&c.jsonFile, "json-file", "", "also write the JSON to this file")
	fs.BoolVar(&c.quick, "quick", false, "a run of seconds: 2 short rounds, few connections (explicit flags win)")
	only := fs.String("only", "", "comma-separated figure groups to run: "+strings.Join(groups, ","))
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./internal/bench [flags]")
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
		quick := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quick("rounds", func() { c.rounds = 2 })
		quick("duration", func() { c.duration = 200 * time.Millisecond })
		quick("warmup", func() { c.warmup = 50 * time.Millisecond })
		quick("idle", func() { c.idleConns = 50 })
		quick("conns", func() { c.conns = 300 })
		quick("big-conns", func() { c.bigConns = 1000 })
	}
	switch {
	case c.rounds < 1:
		return nil, errors.New("--rounds must be at least 1")
	case c.duration <= 0 || c.warmup < 0:
		return nil, errors.New("--duration must be positive and --warmup not negative")
	case c.size < 1:
		return nil, errors.New("--size must be at least 1")
	case c.pipeConns < 1 || c.window < 1 || c.idleConns < 1 || c.conns < 1 || c.bigConns < 1 || c.parallel < 1:
		return nil, errors.New("connection counts must be at least 1")
	}
	c.only = map[string]bool{}
	for g := range strings.SplitSeq(*only, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		known := false
		for _, k := range groups {
			known = known || k == g
		}
		if !known {
			return nil, fmt.Errorf("--only: unknown group %q (have %s)", g, strings.Join(groups, ","))
		}
		c.only[g] = true
	}
	return c, nil
}

// runs reports whether group g is part of this run.
func (c *config) runs(g string) bool { return len(c.only) == 0 || c.only[g] }

// run is the command: it measures, then prints the table (or JSON) on
// stdout; progress goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	l, err := newLauncher(hex.EncodeToString(server.RandomKey()))
	if err != nil {
		return err
	}
	defer l.killAll()
	b := newBench(cfg, l, stderr)
	if err := b.measure(ctx); err != nil {
		return err
	}
	rep := b.report()
	if cfg.jsonFile != "" {
		f, err := os.Create(cfg.jsonFile)
		if err != nil {
			return err
		}
		err = writeReportJSON(f, rep)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if cfg.json {
		return writeReportJSON(stdout, rep)
	}
	return writeReportTable(stdout, rep)
}

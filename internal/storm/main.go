// Command storm measures the reconnect storm of issue 14: N wsauth
// clients connected to one reference server, the server restarted, and
// when each client comes back. It runs the storm with the default backoff
// (FullJitter) and with the same ceilings without jitter, once for each
// way of stopping the server (gracefully, as `wsauth serve` does on
// SIGTERM: close 1001 "Server shutting down"; abruptly, SIGKILL), prints
// the figures and draws the histograms as an SVG chart:
//
//	go run ./internal/storm                  # 5,000 clients, docs/storm.svg
//	go run ./internal/storm --quick          # 300 clients, seconds, for CI
//	go run ./internal/storm --json --svg ''  # machine-readable, no chart
//
// The server runs in a child process (this executable, re-executed) on a
// fixed loopback address, so that it can be killed and started again; the
// clients run in this process, their source addresses spread over
// 127.0.x.y. Nothing waits by sleeping: readiness, connections and
// reconnections are events. The only timed waits are the scenario's own:
// the connections are left up for ReconnectPolicy.StableAfter before the
// restart (so that each backoff is reset, as in a fleet that has run for a
// while) and the server stays down for --down. docs/storm.md says what the
// figures mean.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if isServerChild(os.Args[1:]) {
		os.Exit(runServerChild(os.Args[2], os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// Command chaos is the fault suite: it runs the wsauth client against the
// reference server through a fault proxy and checks, message by message,
// the guarantees of doc.go under every fault at every phase of a
// connection.
//
//	go run ./internal/chaos matrix [--quick] [--messages N] [--senders S] [--json]
//	go run ./internal/chaos flood  [--quick] [--duration D]
//	go run ./internal/chaos soak   [--quick] [--duration D]
//
// matrix runs one cell per phase (credentials, handshake, auth, refresh,
// steady, rotation), fault (latency, bandwidth, cut-mid-frame, stall,
// blackhole, reset, slow-close, data-limit) and mode (send,
// confirmed), and prints one line per cell; flood runs a client against a
// server that closes every session with 1011 right after authenticating
// it, and checks the reconnects keep to the backoff; soak runs a few
// clients for minutes through random faults with one-second sessions,
// sampling goroutines and heap. Each exits non-zero on a broken guarantee.
// docs/faults.md says what each check means and shows a full run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// errFailed is returned when a run found a broken guarantee; the details
// are in the output.
var errFailed = errors.New("guarantees broken (see above)")

// run is the command: the subcommand and its flags in args, the report on
// stdout, progress on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: go run ./internal/chaos matrix|flood|soak [flags]   (-h after a subcommand for its flags)")
	}
	if len(args) == 0 {
		usage()
		return errors.New("no subcommand")
	}
	switch args[0] {
	case "matrix":
		return runMatrix(ctx, args[1:], stdout, stderr)
	case "flood":
		return runFlood(ctx, args[1:], stdout, stderr)
	case "soak":
		return runSoak(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage()
		return flag.ErrHelp
	}
	usage()
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// quickDefaults applies the --quick values of the flags not set
// explicitly.
func quickDefaults(fs *flag.FlagSet, quick bool, apply map[string]func()) {
	if !quick {
		return
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, fn := range apply {
		if !set[name] {
			fn()
		}
	}
}

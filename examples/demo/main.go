// Command demo is the guided tour of wsauth: it starts the reference server
// in-process on loopback and shows every credential pattern, a proactive
// refresh, re-authentication after a 1008, recovery from an outage, and the
// refusals that must happen. It exits 0 only if every step behaved.
//
//	go run ./examples/demo
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/wsauth/wsauth/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demo.Run(ctx, os.Stdout, demo.Options{Color: isTerminal(os.Stdout)}); err != nil {
		os.Exit(1)
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

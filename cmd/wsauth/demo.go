package main

import (
	"context"
	"flag"

	"github.com/wsauth/wsauth/internal/demo"
)

func demoCommand() *command {
	return &command{
		name:    "demo",
		summary: "the guided tour: every pattern, refresh, re-authentication, outage, refusals",
		usage:   "",
		help: `
Start the reference server in-process on 127.0.0.1 and walk through the SDK: connect
with every credential pattern, refresh a short session in place, re-authenticate after
a 1008, ride out a server outage with backoff, and show the refusals that must happen
(replayed ticket, foreign Origin, revoked principal). The same as 'go run ./examples/demo'.
Colour only when stdout is a terminal. Exits 0 only if every step behaved.`,
		flags: func() (*flag.FlagSet, any) { return flag.NewFlagSet("demo", flag.ContinueOnError), nil },
		run: func(ctx context.Context, _ any, args []string, s stdio) int {
			if len(args) > 0 {
				return fail(s, "demo", usagef("takes no arguments, got %q", args))
			}
			if err := demo.Run(ctx, s.out, demo.Options{Color: s.isTTY}); err != nil {
				return exitFailure
			}
			return exitOK
		},
	}
}

// Command wsauth is the command line of the wsauth SDK: a wscat-like client
// that speaks every credential pattern, the reference server standalone, a
// token minter for it, and the guided demo.
//
//	wsauth connect [flags] URL    stdin lines → messages → stdout lines
//	wsauth serve [flags]          the reference server, echo application
//	wsauth token [flags]          mint a token the reference server accepts
//	wsauth demo                   the guided tour of the SDK
//
// Exit codes: 0 clean close, 1 any other failure, 2 usage, 3 gave up on
// authentication. docs/cli.md has the details and recipes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A closed stdout (wsauth connect … | head -1) becomes a write error,
	// on which connect closes its WebSocket cleanly, instead of a SIGPIPE
	// that kills the process mid-connection.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal a second one kills at once, as usual.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], osStdio()))
}

package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wsauth/wsauth/server"
)

// The command re-executes itself for every server and client process:
// "bench _child <spec as JSON>". A child talks to its parent in JSON lines
// on stdout and takes commands, one a line, on stdin; the end of stdin
// means the parent is done with it (or gone), and the child shuts down.

// maxFiles is the RLIMIT_NOFILE every process asks for; without
// CAP_SYS_RESOURCE it gets its hard limit instead.
const maxFiles = 1 << 20

// childArg is the hidden subcommand.
const childArg = "_child"

// keyEnv carries the HMAC key every process of one run shares, hex
// encoded: servers verify with it, clients mint tokens with it.
const keyEnv = "WSAUTH_BENCH_KEY"

// The roles of a child process.
const (
	roleRefServer = "server-ref" // the reference server (server.New, server.Echo)
	roleRawServer = "server-raw" // a coder/websocket echo server that checks the header
	roleRoundTrip = "rtt"        // one connection, send then receive, time-bounded
	rolePipelined = "pipe"       // a sender and a receiver per connection
	roleDial      = "dial"       // dial and close in a loop
	roleIdle      = "idle"       // N idle connections with a reader, memory and goroutines
	roleFleet     = "fleet"      // many raw connections held open for a server's sake
	roleReconnect = "reconnect"  // server 1008 to the next authenticated connection
)

// The client implementations a client role can run.
const (
	implRaw   = "raw"         // coder/websocket alone
	implWS    = "wsauth"      // wsauth.Client with Receive
	implWSInt = "wsauth-into" // wsauth.Client with ReceiveInto, when the build has it
)

// spec tells a child what to do.
type spec struct {
	Role     string        `json:"role"`
	Impl     string        `json:"impl,omitempty"`
	URL      string        `json:"url,omitempty"`     // the WebSocket URL
	Control  string        `json:"control,omitempty"` // http://host:port of the server's /bench/ endpoints
	Size     int           `json:"size,omitempty"`    // message size, bytes
	Conns    int           `json:"conns,omitempty"`   // connections
	Window   int           `json:"window,omitempty"`  // rolePipelined: messages in flight per connection, at most
	First    int           `json:"first,omitempty"`   // fleet: index of its first connection among all
	Parallel int           `json:"parallel,omitempty"`
	Duration time.Duration `json:"duration,omitempty"` // measured window
	Warmup   time.Duration `json:"warmup,omitempty"`
	// AuthOK says the server sends a first message (auth_ok) that a fleet
	// connection reads before it counts as connected.
	AuthOK bool `json:"auth_ok,omitempty"`
	// Reader gives each idle wsauth client a goroutine blocked in Receive,
	// as an application that reads has.
	Reader bool `json:"reader,omitempty"`
}

// line is one JSON line a child writes on stdout.
type line struct {
	Kind   string  `json:"kind"` // "ready", "connected", "result", "error"
	Addr   string  `json:"addr,omitempty"`
	N      int     `json:"n,omitempty"`
	Result *result `json:"result,omitempty"`
	Err    string  `json:"err,omitempty"`
}

// result is what a client process measured; each role fills its part.
type result struct {
	// Unavailable: the implementation is not in this build (ReceiveInto).
	Unavailable bool `json:"unavailable,omitempty"`

	Msgs      int64         `json:"msgs,omitempty"` // messages received in the window; dials for roleDial
	Sent      int64         `json:"sent,omitempty"` // rolePipelined: messages sent in the window
	Elapsed   time.Duration `json:"elapsed_ns,omitempty"`
	P50       time.Duration `json:"p50_ns,omitempty"`
	P99       time.Duration `json:"p99_ns,omitempty"`
	Mallocs   uint64        `json:"mallocs,omitempty"`
	Bytes     uint64        `json:"bytes,omitempty"`
	CPU       time.Duration `json:"cpu_ns,omitempty"`
	Conns     int           `json:"conns,omitempty"`
	Failed    int           `json:"failed,omitempty"`
	RSS       int64         `json:"rss_delta,omitempty"`  // bytes
	Heap      int64         `json:"heap_delta,omitempty"` // bytes
	Goroutine int           `json:"goroutine_delta,omitempty"`
}

// isChild reports whether args (os.Args[1:]) ask for a child process.
func isChild(args []string) bool { return len(args) == 2 && args[0] == childArg }

// runChild runs the child process described by args and returns its exit
// code.
func runChild(args []string) int {
	out := &emitter{w: os.Stdout}
	var s spec
	if err := json.Unmarshal([]byte(args[1]), &s); err != nil {
		out.fail(fmt.Errorf("bad spec: %w", err))
		return 2
	}
	// Every process may hold many sockets: as many as the system lets it.
	if _, _, err := raiseFileLimit(maxFiles); err != nil {
		out.fail(fmt.Errorf("RLIMIT_NOFILE: %w", err))
		return 1
	}
	ctl := watchControl(os.Stdin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-ctl.gone
		cancel()
		if s.Role != roleRefServer && s.Role != roleRawServer && s.Role != roleFleet {
			// Only servers and fleets are told to stop this way; for a
			// client in a measured loop it means the parent is gone.
			os.Exit(3)
		}
	}()
	if err := runRole(ctx, s, ctl, out); err != nil {
		out.fail(err)
		return 1
	}
	return 0
}

func runRole(ctx context.Context, s spec, ctl *control, out *emitter) error {
	switch s.Role {
	case roleRefServer, roleRawServer:
		return serveRole(ctx, s, ctl, out)
	case roleRoundTrip:
		return roundTripRole(ctx, s, out)
	case rolePipelined:
		return pipelinedRole(ctx, s, out)
	case roleDial:
		return dialRole(ctx, s, out)
	case roleIdle:
		return idleRole(ctx, s, out)
	case roleFleet:
		return fleetRole(ctx, s, ctl, out)
	case roleReconnect:
		return reconnectRole(ctx, s, out)
	}
	return fmt.Errorf("unknown role %q", s.Role)
}

// emitter writes JSON lines; safe for concurrent use.
type emitter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *emitter) emit(l line) {
	b, _ := json.Marshal(l)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(b, '\n'))
}

func (e *emitter) fail(err error) { e.emit(line{Kind: "error", Err: err.Error()}) }

// control is the child's side of stdin: commands, and the end of it.
type control struct {
	cmds chan string
	gone chan struct{}
}

func watchControl(r io.Reader) *control {
	c := &control{cmds: make(chan string, 8), gone: make(chan struct{})}
	go func() {
		defer close(c.gone)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if cmd := strings.TrimSpace(sc.Text()); cmd != "" {
				c.cmds <- cmd
			}
		}
	}()
	return c
}

// await waits for command cmd; false when stdin ended first.
func (c *control) await(cmd string) bool {
	for {
		select {
		case got := <-c.cmds:
			if got == cmd {
				return true
			}
		case <-c.gone:
			return false
		}
	}
}

// issuerFromEnv returns the run's token issuer.
func issuerFromEnv() (*server.HMACIssuer, error) { return issuerFromKey(os.Getenv(keyEnv)) }

// issuerFromKey returns the issuer of a hex-encoded key.
func issuerFromKey(hexKey string) (*server.HMACIssuer, error) {
	key, err := hex.DecodeString(hexKey)
	if err != nil || len(key) == 0 {
		return nil, errors.New(keyEnv + " is not set to a hex key")
	}
	return server.NewHMACIssuer(key)
}

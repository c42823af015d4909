package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
)

// waitLong bounds every wait on an event, a message or an exit: CI is a
// busy two-core machine running -race. A wait that runs out is a failure,
// never a way to pass time.
const waitLong = 20 * time.Second

// event is one state change of a client, the same for the library
// (wsauth.Event) and the command (a JSON line of --events json), so that
// every scenario is written once and checked both ways.
type event struct {
	Time    time.Time
	Kind    string // connecting, authenticating, connected, refreshed, refresh_failed, rotated, reconnecting, stopped, …
	Attempt int
	Why     string // connecting: initial, reconnect, session_ended, rejected
	Action  string // reconnecting: retry, reauth
	Delay   time.Duration
	Code    int
	Reason  string
	Status  int
	Expiry  time.Time
	Verdict string // connected: handshake, explicit, first-message, window; "" while the client does not say
	Err     string
}

func (e event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s attempt=%d", e.Time.Format("15:04:05.000"), e.Kind, e.Attempt)
	add := func(k string, v any, ok bool) {
		if ok {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
	}
	add("why", e.Why, e.Why != "")
	add("action", e.Action, e.Action != "")
	add("delay", e.Delay, e.Kind == "reconnecting")
	add("code", e.Code, e.Code != 0)
	add("reason", fmt.Sprintf("%q", e.Reason), e.Reason != "")
	add("status", e.Status, e.Status != 0)
	add("verdict", e.Verdict, e.Verdict != "")
	add("error", fmt.Sprintf("%q", e.Err), e.Err != "")
	return b.String()
}

func is(kind string) func(event) bool { return func(e event) bool { return e.Kind == kind } }

func reconnectingWith(code int) func(event) bool {
	return func(e event) bool { return e.Kind == "reconnecting" && e.Code == code }
}

func reconnectingWithStatus(status int) func(event) bool {
	return func(e event) bool { return e.Kind == "reconnecting" && e.Status == status }
}

// verdictOf is the rule that decided an EventConnected: "handshake",
// "explicit", "first-message" or "window", and "" when there is none.
func verdictOf(e wsauth.Event) string {
	if e.Verdict == wsauth.VerdictPending {
		return ""
	}
	return e.Verdict.String()
}

func libEvent(e wsauth.Event) event {
	ev := event{Time: e.Time, Kind: e.Kind.String(), Attempt: e.Attempt, Code: int(e.Code),
		Reason: e.CloseReason, Status: e.HTTPStatus, Expiry: e.Expiry}
	switch e.Kind {
	case wsauth.EventConnecting:
		if e.Reason != 0 {
			ev.Why = e.Reason.String()
		}
	case wsauth.EventReconnecting:
		ev.Action, ev.Delay = e.Action.String(), e.Delay
	case wsauth.EventConnected:
		ev.Verdict = verdictOf(e)
	}
	if e.Err != nil {
		ev.Err = e.Err.Error()
	}
	return ev
}

// log collects what a client reports, in order, and lets a test wait for
// the next item it expects. Once closed nothing more will come, and a wait
// fails at once instead of running out its deadline.
type log[T any] struct {
	mu      sync.Mutex
	items   []T
	cursor  int
	closed  bool
	changed chan struct{}
}

func newLog[T any]() *log[T] { return &log[T]{changed: make(chan struct{})} }

func (l *log[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *log[T]) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.changed)
	}
}

func (l *log[T]) all() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

func (l *log[T]) count(pred func(T) bool) int {
	n := 0
	for _, v := range l.all() {
		if pred(v) {
			n++
		}
	}
	return n
}

func (l *log[T]) dump() string {
	var b strings.Builder
	for _, v := range l.all() {
		fmt.Fprintf(&b, "\t%v\n", v)
	}
	return b.String()
}

// next waits for the first item after the one next returned last that
// satisfies pred, and returns it: a sequence of next calls checks that
// things happen in that order.
func (l *log[T]) next(t *testing.T, what string, pred func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := l.cursor; i < len(l.items); i++ {
			if pred(l.items[i]) {
				l.cursor = i + 1
				v := l.items[i]
				l.mu.Unlock()
				return v
			}
		}
		closed, changed := l.closed, l.changed
		l.mu.Unlock()
		if closed {
			t.Fatalf("ended before %s; got:\n%s", what, l.dump())
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %s; got:\n%s", what, waitLong, l.dump())
		}
	}
}

// client is one wsauth client under test: the library or the command.
type client interface {
	events() *log[event]
	// send sends one text message (the library: Send, which returns once
	// it is written; the command: a line on stdin).
	send(t *testing.T, text string)
	// recv returns the next message received.
	recv(t *testing.T) string
	// stop ends the client the ordinary way (Close; end of stdin) and
	// checks that it ended cleanly.
	stop(t *testing.T)
	// waitStopped waits for the client to stop on its own.
	waitStopped(t *testing.T) stopped
}

// stopped says how a client ended.
type stopped struct {
	ev event
	// gaveUp is the GaveUpError's Why ("authentication", "policy", …),
	// "" when the client did not give up.
	gaveUp string
	// exit is the command's exit code, -1 for the library.
	exit int
}

// spec says how to start a client against one server, both ways.
type spec struct {
	url string
	// options configures the library; startLibrary adds OnEvent and a
	// quick backoff.
	options func() *wsauth.Options
	// args are the command's flags (startCommand adds --events json and a
	// quick backoff); env its environment (secrets go there, as docs/cli.md
	// recommends).
	args []string
	env  []string
}

type starter func(spec) client

// bothWays runs body twice, in parallel subtests: with the library and with
// the command.
func bothWays(t *testing.T, body func(t *testing.T, start starter)) {
	t.Run("library", func(t *testing.T) {
		t.Parallel()
		body(t, func(s spec) client { return startLibrary(t, s.url, s.options()) })
	})
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		body(t, func(s spec) client { return startCommand(t, s.url, s.args, s.env) })
	})
}

// testBackoff keeps reconnects quick; Retry-After still wins over it.
func testBackoff() *wsauth.FullJitter {
	return &wsauth.FullJitter{Initial: 100 * time.Millisecond, Multiplier: 2, Max: time.Second}
}

// libClient drives the library.
type libClient struct {
	c   *wsauth.Client
	log *log[event]
}

func startLibrary(t *testing.T, url string, o *wsauth.Options) *libClient {
	t.Helper()
	l := newLog[event]()
	o.OnEvent = func(e wsauth.Event) {
		l.add(libEvent(e))
		if e.Kind == wsauth.EventStopped {
			l.close()
		}
	}
	if o.Reconnect.Backoff == nil {
		o.Reconnect.Backoff = testBackoff()
	}
	c, err := wsauth.New(url, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &libClient{c: c, log: l}
}

func (c *libClient) events() *log[event] { return c.log }

func (c *libClient) send(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, c.c.SendText(ctx, text), "send %q; events:\n%s", text, c.log.dump())
}

func (c *libClient) recv(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, data, err := c.c.Receive(ctx)
	require.NoError(t, err, "receive; events:\n%s", c.log.dump())
	return string(data)
}

func (c *libClient) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, c.c.Close())
	st := c.log.next(t, "stopped", is("stopped"))
	require.Empty(t, st.Err, "a client closed by the application stops without an error")
	require.ErrorIs(t, c.c.Err(), wsauth.ErrClosed)
}

func (c *libClient) waitStopped(t *testing.T) stopped {
	t.Helper()
	ev := c.log.next(t, "stopped", is("stopped"))
	st := stopped{ev: ev, exit: -1}
	var gu *wsauth.GaveUpError
	if errors.As(c.c.Err(), &gu) {
		st.gaveUp = gu.Why
	}
	return st
}

// randomString is a fresh opaque credential.
func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// waitGroupWithin fails the test when wg does not finish in time, instead
// of hanging the whole run.
func waitGroupWithin(t *testing.T, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Errorf("%s still running %s after the test", what, waitLong)
	}
}

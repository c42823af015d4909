package wsauth

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/testenv"
)

// waitLong bounds every wait on an event: CI is a busy two-core machine,
// and a wait that times out is a failure, never a sleep.
const waitLong = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
	t.Cleanup(cancel)
	return ctx
}

// recorder collects a client's events and lets a test wait for one.
type recorder struct {
	mu     sync.Mutex
	events []Event
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) count(kind EventKind) int {
	n := 0
	for _, e := range r.all() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// waitFor waits until the n-th event (counting from 1) matching pred has
// been seen, and returns it.
func (r *recorder) waitFor(t *testing.T, n int, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		seen := 0
		for _, e := range r.all() {
			if pred(e) {
				seen++
				if seen == n {
					return e
				}
			}
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for event; have: %v", r.all())
		}
	}
}

func kind(k EventKind) func(Event) bool { return func(e Event) bool { return e.Kind == k } }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func debugLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// dialed connects a client and closes it at the end of the test.
func dialed(t *testing.T, env *testenv.Env, o *Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), env.WSURL(), o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends msg and expects it back.
func echo(t *testing.T, c *Client, msg string) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.SendText(ctx, msg))
	typ, data, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, MessageText, typ)
	require.Equal(t, msg, string(data))
}

// ask sends a text message and returns the answer.
func ask(t *testing.T, c *Client, msg string) string {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.SendText(ctx, msg))
	_, data, err := c.Receive(ctx)
	require.NoError(t, err)
	return string(data)
}

// waitDone waits for the client to stop on its own.
func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatalf("client did not stop; state %s", c.State())
	}
}

// Package testkit holds test helpers that know nothing of the client: a
// log of events a test can wait on, and a log sink safe for concurrent
// writes.
package testkit

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// WaitLong bounds every wait on an event: CI is a busy two-core machine,
// and a wait that times out is a failure, never a sleep.
const WaitLong = 20 * time.Second

// Log collects events of type E and lets a test wait for one.
type Log[E any] struct {
	mu     sync.Mutex
	events []E
	wake   chan struct{}
}

// NewLog returns an empty log.
func NewLog[E any]() *Log[E] { return &Log[E]{wake: make(chan struct{}, 1)} }

// Add records e; it is safe to use as a callback from any goroutine.
func (l *Log[E]) Add(e E) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// All returns every event so far, in order.
func (l *Log[E]) All() []E {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]E(nil), l.events...)
}

// Count counts the events matching pred.
func (l *Log[E]) Count(pred func(E) bool) int {
	n := 0
	for _, e := range l.All() {
		if pred(e) {
			n++
		}
	}
	return n
}

// WaitFor waits until the n-th event (counting from 1) matching pred has
// been seen, and returns it; the test fails after WaitLong.
func (l *Log[E]) WaitFor(t testing.TB, n int, pred func(E) bool) E {
	t.Helper()
	deadline := time.NewTimer(WaitLong)
	defer deadline.Stop()
	for {
		seen := 0
		for _, e := range l.All() {
			if pred(e) {
				seen++
				if seen == n {
					return e
				}
			}
		}
		select {
		case <-l.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for event %d; have: %v", n, l.All())
		}
	}
}

// Buffer is a log sink safe for concurrent writes.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// DebugLogger logs everything, as JSON, to w.
func DebugLogger(w *Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

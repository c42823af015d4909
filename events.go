package wsauth

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// State is where the client's one logical connection stands.
type State int

// The client's states.
const (
	// StateConnecting: getting credentials and dialing.
	StateConnecting State = iota + 1
	// StateAuthenticating: upgraded, running the in-band exchange.
	StateAuthenticating
	// StateConnected: authenticated; sends flow.
	StateConnected
	// StateReconnecting: waiting out the delay before the next attempt.
	StateReconnecting
	// StateClosed: stopped for good; Err says why.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateAuthenticating:
		return "authenticating"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// EventKind says what an Event reports.
type EventKind int

// The kinds of event.
const (
	// EventConnecting: a connection attempt starts (Attempt, Reason).
	EventConnecting EventKind = iota + 1
	// EventAuthenticating: the upgrade succeeded; the in-band exchange runs.
	EventAuthenticating
	// EventConnected: authenticated (Attempt, Verdict, Expiry,
	// Subprotocol).
	EventConnected
	// EventRefreshed: the session was extended in place (Expiry).
	EventRefreshed
	// EventRefreshFailed: a refresh was refused, timed out or had no token
	// (Err); the client falls back to a reconnect or rotation.
	EventRefreshFailed
	// EventRotated: a new connection took over from the old one without a
	// gap (make-before-break).
	EventRotated
	// EventReconnecting: the connection ended and the client will try again
	// after Delay (Attempt is the next attempt's number; Err, Code,
	// CloseReason, HTTPStatus describe the cause; Action says how).
	EventReconnecting
	// EventStopped: the client stopped for good (Err is the stop cause).
	EventStopped
	// EventUnconfirmed: a connection ended with Unconfirmed sends written
	// on it after its last confirmation; they may or may not have arrived.
	// With Limits.KeepUnconfirmed, Frames holds them, oldest first, for the
	// application to resend what matters.
	EventUnconfirmed
)

func (k EventKind) String() string {
	switch k {
	case EventConnecting:
		return "connecting"
	case EventAuthenticating:
		return "authenticating"
	case EventConnected:
		return "connected"
	case EventRefreshed:
		return "refreshed"
	case EventRefreshFailed:
		return "refresh_failed"
	case EventRotated:
		return "rotated"
	case EventReconnecting:
		return "reconnecting"
	case EventStopped:
		return "stopped"
	case EventUnconfirmed:
		return "unconfirmed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change of the client's state. No field ever holds a
// credential: errors and reasons are redacted.
type Event struct {
	Kind EventKind
	Time time.Time
	// Attempt numbers connection attempts since the last stable connection,
	// starting at 1.
	Attempt int
	// Reason is why credentials were asked for (EventConnecting).
	Reason Reason
	// Action is what the client does about the ending (EventReconnecting).
	Action Action
	// Err is the cause (EventReconnecting, EventRefreshFailed,
	// EventStopped).
	Err error
	// Code and CloseReason are the server's close frame, HTTPStatus the
	// status of a refused handshake or provider call.
	Code        StatusCode
	CloseReason string
	HTTPStatus  int
	// Delay is the wait before the next attempt (EventReconnecting).
	Delay time.Duration
	// Expiry is when the session is expected to end, zero if unknown
	// (EventConnected, EventRefreshed, EventRotated).
	Expiry time.Time
	// Subprotocol is the negotiated subprotocol (EventConnected,
	// EventRotated).
	Subprotocol string
	// Verdict is what decided that the connection was authenticated
	// (EventConnected, EventRotated).
	Verdict Verdict
	// Unconfirmed is how many sends the connection's end left unconfirmed,
	// and Frames the copies of those kept (EventUnconfirmed). Frames never
	// appear in String or the log record.
	Unconfirmed int
	Frames      []Frame
}

// String renders the event as one line for humans: its kind and the same
// fields, by the same names, as its log record.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	for _, a := range e.attrs()[1:] {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteByte('=')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			if s := v.String(); strings.ContainsAny(s, " \"=\t\n") || s == "" {
				b.WriteString(strconv.Quote(s))
			} else {
				b.WriteString(s)
			}
		case slog.KindDuration:
			b.WriteString(v.Duration().Round(time.Millisecond).String())
		case slog.KindTime:
			// For a reader, how far away rather than when.
			fmt.Fprintf(&b, "in %s", time.Until(v.Time()).Round(time.Millisecond))
		default:
			b.WriteString(v.String())
		}
	}
	return b.String()
}

// attrs renders the event for slog, and for String.
func (e Event) attrs() []slog.Attr {
	a := []slog.Attr{slog.String("event", e.Kind.String())}
	if e.Attempt > 0 {
		a = append(a, slog.Int("attempt", e.Attempt))
	}
	if e.Kind == EventConnecting && e.Reason != 0 {
		a = append(a, slog.String("reason", e.Reason.String()))
	}
	if e.Kind == EventReconnecting {
		a = append(a, slog.String("action", e.Action.String()), slog.Duration("delay", e.Delay))
	}
	if e.Code != 0 {
		a = append(a, slog.Int("code", int(e.Code)))
	}
	if e.CloseReason != "" {
		a = append(a, slog.String("close_reason", e.CloseReason))
	}
	if e.HTTPStatus != 0 {
		a = append(a, slog.Int("status", e.HTTPStatus))
	}
	if !e.Expiry.IsZero() {
		a = append(a, slog.Time("expiry", e.Expiry))
	}
	if e.Subprotocol != "" {
		a = append(a, slog.String("subprotocol", e.Subprotocol))
	}
	if e.Verdict != VerdictPending {
		a = append(a, slog.String("verdict", e.Verdict.String()))
	}
	if e.Unconfirmed > 0 {
		a = append(a, slog.Int("unconfirmed", e.Unconfirmed))
	}
	if e.Err != nil {
		a = append(a, slog.String("error", e.Err.Error()))
	}
	return a
}

func (e Event) level() slog.Level {
	switch e.Kind {
	case EventConnecting, EventAuthenticating:
		return slog.LevelDebug
	case EventReconnecting, EventRefreshFailed, EventUnconfirmed:
		return slog.LevelWarn
	case EventStopped:
		if e.Err != nil && e.Err != ErrClosed {
			return slog.LevelError
		}
	}
	return slog.LevelInfo
}

// dispatcher delivers events to the user's callback in order on a
// goroutine of its own, so that a slow callback never stalls the
// connection and the callback may call any client method.
type dispatcher struct {
	fn func(Event)

	mu      sync.Mutex
	pending []Event
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// start readies d in place and starts its goroutine; without a callback
// there is nothing to deliver and d is done from the start.
func (d *dispatcher) start(fn func(Event)) {
	if fn == nil {
		d.done = closedChan
		return
	}
	d.fn, d.wake, d.done = fn, make(chan struct{}, 1), make(chan struct{})
	go d.run()
}

// closedChan is a channel closed from the start, for what is done at once.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (d *dispatcher) emit(e Event) {
	if d.fn == nil {
		return
	}
	d.mu.Lock()
	if !d.closed {
		d.pending = append(d.pending, e)
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close lets the dispatcher exit once it has delivered what is pending.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		batch := d.pending
		d.pending = nil
		closed := d.closed
		d.mu.Unlock()
		for _, e := range batch {
			runCallback(func() { d.fn(e) })
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		<-d.wake
	}
}

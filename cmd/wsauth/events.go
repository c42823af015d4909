package main

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/redact"
)

// The --events formats.
const (
	eventsText = "text"
	eventsJSON = "json"
	eventsNone = "none"
)

// eventRecord is one line of --events output. The JSON names are part of
// the command's interface (docs/cli.md); text output uses the same names as
// key=value pairs.
type eventRecord struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	// Attempt is the connection attempt the event belongs to; events that
	// belong to no attempt of their own (refreshed, stopped, …) carry the
	// latest one.
	Attempt int `json:"attempt"`
	// Why is why credentials were asked for (connecting): initial,
	// reconnect, session_ended or rejected.
	Why string `json:"why,omitempty"`
	// Action is what the client does about an ending (reconnecting):
	// retry or reauth.
	Action string `json:"action,omitempty"`
	// DelayMS is the wait before the next attempt (reconnecting).
	DelayMS *int64 `json:"delay_ms,omitempty"`
	// Code and Reason are the server's close frame; Status is the HTTP
	// status of a refused handshake, ticket, login or token request.
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	Status int    `json:"status,omitempty"`
	// Expiry and ExpiresInMS say when the session is expected to end
	// (connected, refreshed, rotated).
	Expiry      *time.Time `json:"expiry,omitempty"`
	ExpiresInMS *int64     `json:"expires_in_ms,omitempty"`
	Subprotocol string     `json:"subprotocol,omitempty"`
	// Verdict is what decided the connection was authenticated
	// (connected, rotated): explicit, handshake, first-message or window.
	Verdict string `json:"verdict,omitempty"`
	// Unconfirmed is how many sends a connection's end left without the
	// server's confirmation (unconfirmed): they may or may not have
	// arrived.
	Unconfirmed int `json:"unconfirmed,omitempty"`
	// Cause says why the command closed the connection (closing): eof or
	// signal.
	Cause string `json:"cause,omitempty"`
	Error string `json:"error,omitempty"`
}

// eventSink writes events to stderr in the chosen format, one per line,
// with every known secret scrubbed. It is safe for concurrent use.
type eventSink struct {
	w      io.Writer
	format string
	scrub  *scrubber

	mu      sync.Mutex
	attempt int

	// stopped is closed once the client's last event has been written.
	stopped     chan struct{}
	stoppedOnce sync.Once
}

func newEventSink(w io.Writer, format string, scrub *scrubber) *eventSink {
	return &eventSink{w: w, format: format, scrub: scrub, stopped: make(chan struct{})}
}

// clientEvent is the client's Options.OnEvent.
func (s *eventSink) clientEvent(e wsauth.Event) {
	s.write(recordOf(e))
	if e.Kind == wsauth.EventStopped {
		s.stoppedOnce.Do(func() { close(s.stopped) })
	}
}

// waitStopped waits, a bounded time, until the client's stopped event has
// been written. Client.Close does not always wait for its event goroutine
// (it cannot tell a call from inside the callback from a concurrent one),
// and the last line of the output must not be lost.
func (s *eventSink) waitStopped(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.stopped:
	case <-t.C:
	}
}

// recordOf turns a client event into its record.
func recordOf(e wsauth.Event) eventRecord {
	r := eventRecord{Time: e.Time, Event: e.Kind.String(), Attempt: e.Attempt,
		Code: int(e.Code), Reason: e.CloseReason, Status: e.HTTPStatus, Subprotocol: e.Subprotocol,
		Unconfirmed: e.Unconfirmed}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if e.Kind == wsauth.EventConnecting && e.Reason != 0 {
		r.Why = e.Reason.String()
	}
	if e.Verdict != wsauth.VerdictPending {
		r.Verdict = e.Verdict.String()
	}
	if e.Kind == wsauth.EventReconnecting {
		r.Action = e.Action.String()
		ms := e.Delay.Milliseconds()
		r.DelayMS = &ms
	}
	if !e.Expiry.IsZero() {
		exp := e.Expiry
		in := exp.Sub(r.Time).Milliseconds()
		r.Expiry, r.ExpiresInMS = &exp, &in
	}
	if e.Err != nil {
		r.Error = e.Err.Error()
	}
	return r
}

// note writes an event of the command itself (closing, send_failed). With
// --events none only errors are written, as plain text.
func (s *eventSink) note(event, cause string, err error) {
	r := eventRecord{Time: time.Now(), Event: event, Cause: cause}
	if err != nil {
		r.Error = err.Error()
	}
	s.write(r)
}

func (s *eventSink) write(r eventRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Attempt > 0 {
		s.attempt = r.Attempt
	} else {
		r.Attempt = s.attempt
	}
	r.Reason = s.scrub.String(r.Reason)
	r.Error = s.scrub.String(r.Error)
	var line string
	switch s.format {
	case eventsJSON:
		b, err := json.Marshal(r)
		if err != nil {
			return
		}
		line = string(b)
	case eventsText:
		line = r.text()
	default:
		if r.Error == "" || r.Event == wsauth.EventStopped.String() {
			// The stop cause is printed once by the command.
			return
		}
		line = "wsauth connect: " + r.Event + ": " + r.Error
	}
	// Belt and braces: the client redacts its own output, this catches
	// what the command itself knows to be secret.
	io.WriteString(s.w, s.scrub.String(line)+"\n")
}

// text renders the record as "time event key=value …".
func (r eventRecord) text() string {
	var b strings.Builder
	b.WriteString(r.Time.Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString(" ")
	b.WriteString(r.Event)
	kv := func(k, v string) { b.WriteString(" " + k + "=" + v) }
	quoted := func(s string) string {
		if s != "" && !strings.ContainsAny(s, " \t\"=") && strconv.Quote(s) == `"`+s+`"` {
			return s
		}
		return strconv.Quote(s)
	}
	if r.Attempt > 0 {
		kv("attempt", strconv.Itoa(r.Attempt))
	}
	if r.Why != "" {
		kv("why", r.Why)
	}
	if r.Action != "" {
		kv("action", r.Action)
	}
	if r.DelayMS != nil {
		kv("delay", (time.Duration(*r.DelayMS) * time.Millisecond).String())
	}
	if r.Code != 0 {
		kv("code", strconv.Itoa(r.Code))
	}
	if r.Reason != "" {
		kv("reason", quoted(r.Reason))
	}
	if r.Status != 0 {
		kv("status", strconv.Itoa(r.Status))
	}
	if r.ExpiresInMS != nil {
		kv("expires_in", (time.Duration(*r.ExpiresInMS) * time.Millisecond).String())
	}
	if r.Subprotocol != "" {
		kv("subprotocol", quoted(r.Subprotocol))
	}
	if r.Verdict != "" {
		kv("verdict", r.Verdict)
	}
	if r.Unconfirmed > 0 {
		kv("unconfirmed", strconv.Itoa(r.Unconfirmed))
	}
	if r.Cause != "" {
		kv("cause", r.Cause)
	}
	if r.Error != "" {
		kv("error", quoted(r.Error))
	}
	return b.String()
}

// scrubber replaces the secrets the command knows of (tokens it read,
// client secrets, login passwords, credential headers, the credential-like
// query parameters of the URL it was given) in everything it prints, on
// top of what the client scrubs itself: the client's own redaction, in
// every encoding a secret travels in.
type scrubber = redact.Set

package main

import (
	"slices"
	"time"

	"github.com/wsauth/wsauth"
)

// bucket is the width of the histograms: the brief's "per 100 ms".
const bucket = 100 * time.Millisecond

// result is one run: one policy, one way of stopping the server.
type result struct {
	Policy  string `json:"policy"` // "full jitter", "no jitter"
	Stop    string `json:"stop"`   // "graceful", "kill", "going-away"
	Clients int    `json:"clients"`

	// Stopping is how long the old server took from the signal to its
	// exit, Up when the new one was listening; both since the restart.
	Stopping time.Duration `json:"stopping_ns"`
	Up       time.Duration `json:"up_ns"`

	// AllReconnected is when the last client was connected again, P50
	// and P99 the percentiles of the clients' reconnect times, all since
	// the restart.
	AllReconnected time.Duration `json:"all_reconnected_ns"`
	P50            time.Duration `json:"p50_ns"`
	P99            time.Duration `json:"p99_ns"`

	// The peaks of the histograms below, per 100 ms.
	PeakReconnects int `json:"peak_reconnects"`
	PeakAttempts   int `json:"peak_attempts"`
	PeakTickets    int `json:"peak_tickets"`
	PeakHandshakes int `json:"peak_handshakes"`

	// Attempts counts connection attempts after the restart, Tickets the
	// ticket requests the new server saw (refused ones among them in
	// TicketsRefused), HandshakesRefused its refused handshakes.
	Attempts          int `json:"attempts"`
	Tickets           int `json:"tickets"`
	TicketsRefused    int `json:"tickets_refused"`
	HandshakesRefused int `json:"handshakes_refused"`
	// InvalidTickets counts handshakes the new server refused for an
	// unknown, used or expired ticket; OfferedTwice the tickets a client
	// handshake carried more than once (the whole run, both servers).
	InvalidTickets int `json:"invalid_tickets"`
	OfferedTwice   int `json:"offered_twice"`
	Offered        int `json:"offered"`
	// DropCodes counts the close codes the clients saw at the restart (0:
	// no close frame, the connection just ended).
	DropCodes map[int]int `json:"drop_codes"`

	// Histograms per 100 ms since the restart: reconnections (a client's
	// first EventConnected after it, or EventRotated after going_away), connection attempts
	// (EventConnecting), ticket requests and authenticated handshakes at
	// the new server.
	Reconnects []int `json:"reconnects"`
	AttemptsH  []int `json:"attempts_hist"`
	TicketsH   []int `json:"tickets_hist"`
	Handshakes []int `json:"handshakes_hist"`

	// Delays are, per client, the backoff delays it chose after the
	// restart (EventReconnecting.Delay), in order.
	Delays [][]time.Duration `json:"-"`
}

// analyze makes the result of a run from the clients' events and the new
// server's records; t0 is the restart.
func analyze(r *result, t0 time.Time, logs [][]wsauth.Event, rec *records) {
	r.Clients = len(logs)
	r.DropCodes = map[int]int{}
	var times, attempts []time.Duration
	for _, evs := range logs {
		var delays []time.Duration
		reconnected, dropped := false, false
		for _, e := range evs {
			if e.Time.Before(t0) {
				continue
			}
			at := e.Time.Sub(t0)
			switch e.Kind {
			case wsauth.EventConnecting:
				if !reconnected {
					attempts = append(attempts, at)
				}
			case wsauth.EventReconnecting:
				if !reconnected {
					delays = append(delays, e.Delay)
					if !dropped {
						r.DropCodes[int(e.Code)]++
						dropped = true
					}
				}
			case wsauth.EventConnected, wsauth.EventRotated:
				if !reconnected {
					times = append(times, at)
					reconnected = true
				}
			}
		}
		r.Delays = append(r.Delays, delays)
	}
	r.Attempts = len(attempts)
	r.Reconnects = histogram(times)
	r.AttemptsH = histogram(attempts)
	r.TicketsH = histogram(since(t0, rec.Tickets))
	r.Handshakes = histogram(since(t0, rec.Handshakes))
	r.PeakReconnects = slices.Max(append(r.Reconnects, 0))
	r.PeakAttempts = slices.Max(append(r.AttemptsH, 0))
	r.PeakTickets = slices.Max(append(r.TicketsH, 0))
	r.PeakHandshakes = slices.Max(append(r.Handshakes, 0))
	r.Tickets = sum(r.TicketsH)
	r.TicketsRefused = rec.TicketsRefused
	r.HandshakesRefused = rec.HandshakesRefused
	r.InvalidTickets = rec.InvalidTickets
	slices.Sort(times)
	if len(times) > 0 {
		r.AllReconnected = times[len(times)-1]
		r.P50 = percentile(times, 50)
		r.P99 = percentile(times, 99)
	}
}

func sum(h []int) int {
	n := 0
	for _, v := range h {
		n += v
	}
	return n
}

// since converts Unix nanoseconds to durations since t0, dropping those
// before it.
func since(t0 time.Time, ts []int64) []time.Duration {
	out := make([]time.Duration, 0, len(ts))
	for _, t := range ts {
		if d := time.Unix(0, t).Sub(t0); d >= 0 {
			out = append(out, d)
		}
	}
	return out
}

// histogram counts ds in buckets of 100 ms from zero.
func histogram(ds []time.Duration) []int {
	var h []int
	for _, d := range ds {
		if d < 0 {
			continue
		}
		i := int(d / bucket)
		for len(h) <= i {
			h = append(h, 0)
		}
		h[i]++
	}
	return h
}

// percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The command re-executes itself for the server; under test, itself
	// is this binary.
	if isServerChild(os.Args[1:]) {
		os.Exit(runServerChild(os.Args[2], os.Stdin, os.Stdout))
	}
	goleak.VerifyTestMain(m)
}

// TestQuickStorm runs the quick storm with 100 clients, both policies and
// both ways of stopping the server, and the going_away notice, and checks what must hold whatever
// the machine's speed. How much lower the jitter run's peak is depends on
// how fast a loaded machine serves the herd, so the test checks the
// structure behind it instead: without jitter every client waits the same
// delays, so their attempts fall together; with full jitter the first
// delays spread over the first backoff window.
func TestQuickStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a server four times under 100 clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svg := filepath.Join(t.TempDir(), "storm.svg")
	cfg, err := parseFlags([]string{"--quick", "--clients", "100", "--svg", svg}, io.Discard)
	require.NoError(t, err)
	var progress bytes.Buffer
	rep, err := storms(ctx, cfg, &progress)
	require.NoError(t, err, progress.String())
	require.Len(t, rep.Runs, 6)

	for _, r := range rep.Runs {
		name := r.Policy + ", " + r.Stop
		t.Logf("%s: all reconnected at %s, peak %d reconnects, %d tickets per 100ms", name, r.AllReconnected, r.PeakReconnects, r.PeakTickets)

		// Every client reconnected, once each.
		sum := 0
		for _, n := range r.Reconnects {
			sum += n
		}
		require.Equal(t, 100, sum, name)
		require.Positive(t, r.AllReconnected, name)
		require.Positive(t, r.PeakReconnects, name)
		require.Positive(t, r.PeakTickets, name)

		// Tickets are single use: no handshake carried one twice, and the
		// new server refused none as used.
		require.Zero(t, r.OfferedTwice, name)
		require.Zero(t, r.InvalidTickets, name)
		require.GreaterOrEqual(t, r.Offered, 200, "%s: a ticket for every connection", name)

		// Every client saw the restart as the server made it; after a
		// going_away notice none lost its connection.
		switch r.Stop {
		case stopGraceful:
			require.Equal(t, map[int]int{1001: 100}, r.DropCodes, name)
		case stopKill:
			require.Equal(t, map[int]int{0: 100}, r.DropCodes, name)
		case stopGoingAway:
			require.Empty(t, r.DropCodes, name)
			require.Zero(t, r.Attempts, name)
			continue
		}

		require.Len(t, r.Delays, 100, name)
		switch r.Policy {
		case noJitter.name:
			// The herd: the same delays for everyone, 500ms, 1s, 2s…
			for i, d := range r.Delays {
				require.NotEmpty(t, d, "%s: client %d", name, i)
				for k, v := range d {
					require.Equal(t, 500*time.Millisecond<<k, v, "%s: client %d, delay %d", name, i, k)
				}
			}
		case fullJitter.name:
			// The first delays spread over [0, 500ms]: no 100 ms bucket
			// holds half of them (five buckets, twenty each expected).
			h := make([]int, 6)
			for i, d := range r.Delays {
				require.NotEmpty(t, d, "%s: client %d", name, i)
				require.LessOrEqual(t, d[0], 500*time.Millisecond, "%s: client %d", name, i)
				h[d[0]/bucket]++
			}
			require.Less(t, slices.Max(h), 50, "%s: first delays per 100ms %v", name, h)
		}
	}

	// The chart is well-formed XML with both panels and a legend.
	b := chart(rep)
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	s := string(b)
	for _, want := range []string{"Server stopped gracefully", "Server killed", "full jitter: reconnections", "no jitter: ticket-endpoint requests", "clients rotate", "seconds since the restart"} {
		require.True(t, strings.Contains(s, want), want)
	}
	var table bytes.Buffer
	writeTable(&table, rep)
	require.Contains(t, table.String(), "peak reconnects /100ms")
}

// TestFlags checks the quick defaults and that explicit flags win.
func TestFlags(t *testing.T) {
	c, err := parseFlags([]string{"--quick", "--clients", "50", "--stop", "kill"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 50, c.clients)
	require.Equal(t, time.Second, c.down)
	require.Equal(t, time.Second, c.stableAfter)
	require.Equal(t, []string{stopKill}, c.stops)
	c, err = parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{stopGraceful, stopKill, stopGoingAway}, c.stops)
	require.Equal(t, 5000, c.clients)
	_, err = parseFlags([]string{"--stop", "gently"}, io.Discard)
	require.Error(t, err)
	_, err = parseFlags([]string{"--clients", "0"}, io.Discard)
	require.Error(t, err)
}

// TestHistogram checks the buckets and the percentiles.
func TestHistogram(t *testing.T) {
	h := histogram([]time.Duration{0, 99 * time.Millisecond, 100 * time.Millisecond, 350 * time.Millisecond, -time.Millisecond})
	require.Equal(t, []int{2, 1, 0, 1}, h)
	sorted := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	require.Equal(t, time.Duration(5), percentile(sorted, 50))
	require.Equal(t, time.Duration(10), percentile(sorted, 99))
	require.Equal(t, 2000.0, niceCeil(1234))
	require.Equal(t, 5.0, niceCeil(4.2))
}

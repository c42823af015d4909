package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The command re-executes itself for its servers and clients; under
	// test, itself is this binary.
	if isChild(os.Args[1:]) {
		os.Exit(runChild(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// TestQuickRun runs the whole command on small numbers and checks that
// every figure is there with sane values. It never looks at how fast
// anything was.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts some forty processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	args := []string{"--quick", "--json", "--idle", "50", "--conns", "100", "--pipe-conns", "4", "--big", "--big-conns", "150"}
	require.NoError(t, run(ctx, args, &out, &progress), progress.String())

	var rep report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), out.String())
	require.Equal(t, 2, rep.Setup.Rounds)
	require.Equal(t, hasReceiveInto(), rep.Setup.ReceiveInto)
	require.Positive(t, rep.Machine.CPUs)
	require.Contains(t, rep.Command, "--quick")

	want := []string{
		"rtt.rate", "rtt.p50", "rtt.p99", "pipe.1", "pipe.n", "alloc.recv", "bytes.recv", "alloc.into", "bytes.into",
		"rtt.into", "cpu.rtt", "cpu.pipe1", "cpu.pipen", "dial.rate", "dial.allocs", "dialref.rate", "dialref.allocs",
		"dial.cpu", "dialref.cpu", "idle.rss", "idle.heap", "idle.goroutines", "client.rss", "client.goroutines",
		"server.rss", "server.goroutines", "server.hs", "server.cpu",
		"reconnect.p50", "reconnect.p99", "big.rss", "big.goroutines", "big.hs", "big.cpu",
	}
	got := map[string]figure{}
	for _, f := range rep.Figures {
		got[f.Key] = f
	}
	for _, k := range want {
		f, ok := got[k]
		require.True(t, ok, "figure %s missing", k)
		require.NotEmpty(t, f.Label, k)
		require.NotNil(t, f.Raw, k)
		require.Positive(t, *f.Raw, k)
		wantRounds := rep.Setup.Rounds
		if strings.HasPrefix(k, "big.") {
			wantRounds = 1 // --big measures once
		}
		measured := 0
		for _, p := range f.Rounds {
			if p.Raw != nil {
				measured++
			}
		}
		require.Equal(t, wantRounds, measured, k)
		if f.NA != "" {
			require.Nil(t, f.WSAuth, k)
			require.Nil(t, f.Ratio, k)
			continue
		}
		require.NotNil(t, f.WSAuth, k)
		require.Positive(t, *f.WSAuth, k)
		require.NotNil(t, f.Ratio, k)
		require.Positive(t, *f.Ratio, k)
		require.LessOrEqual(t, *f.RatioMin, *f.Ratio, k)
		require.GreaterOrEqual(t, *f.RatioMax, *f.Ratio, k)
	}
	if !hasReceiveInto() {
		require.NotEmpty(t, got["alloc.into"].NA)
	}

	var table bytes.Buffer
	require.NoError(t, writeReportTable(&table, rep))
	require.Contains(t, table.String(), "| figure | raw coder/websocket | wsauth | wsauth/raw |")
	for _, f := range rep.Figures {
		require.Contains(t, table.String(), "| "+f.Label+" | ", f.Key)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, c *config)
		err   string
	}{
		{name: "defaults", check: func(t *testing.T, c *config) {
			require.Equal(t, 5, c.rounds)
			require.Equal(t, 2*time.Second, c.duration)
			require.Equal(t, 64, c.size)
			require.Equal(t, 10000, c.conns)
			require.False(t, c.big)
			require.True(t, c.runs("rtt"))
		}},
		{name: "quick", args: []string{"--quick"}, check: func(t *testing.T, c *config) {
			require.Equal(t, 2, c.rounds)
			require.Less(t, c.duration, time.Second)
			require.Less(t, c.conns, 10000)
		}},
		{name: "explicit flags win over quick", args: []string{"--quick", "--rounds", "3", "--conns", "500"}, check: func(t *testing.T, c *config) {
			require.Equal(t, 3, c.rounds)
			require.Equal(t, 500, c.conns)
		}},
		{name: "only", args: []string{"--only", "server, reconnect"}, check: func(t *testing.T, c *config) {
			require.True(t, c.runs("server"))
			require.True(t, c.runs("reconnect"))
			require.False(t, c.runs("rtt"))
		}},
		{name: "unknown group", args: []string{"--only", "rtt,nope"}, err: `unknown group "nope"`},
		{name: "no rounds", args: []string{"--rounds", "0"}, err: "--rounds"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, &bytes.Buffer{})
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestFormat(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	for _, tc := range []struct {
		v    *float64
		u    unit
		want string
	}{
		{nil, unitRate, "n/a"},
		{v(2247), unitRate, "2247"},
		{v(35712), unitRate, "35.7k"},
		{v(2.5e6), unitRate, "2.50M"},
		{v(14200), unitDur, "14.2 µs"},
		{v(360000), unitDur, "360 µs"},
		{v(1.5e6), unitDur, "1.50 ms"},
		{v(512), unitBytes, "512 B"},
		{v(14.4 * 1024), unitBytes, "14.4 KiB"},
		{v(1), unitCount, "1"},
		{v(4.5), unitCount, "4.50"},
	} {
		require.Equal(t, tc.want, format(tc.v, tc.u))
	}
}

func TestMedianAndRatio(t *testing.T) {
	nan := nans(1)[0]
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, nan, 2, 3}))
	require.True(t, isNaN(median([]float64{nan})))
	require.Equal(t, 0.5, ratio(1, 2))
	require.Equal(t, 1.0, ratio(0, 0))
	require.True(t, isNaN(ratio(1, 0)))
}

func isNaN(f float64) bool { return f != f }

package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"time"
)

// usage is what a measured loop costs the process: allocations from
// runtime.MemStats and CPU time from getrusage, read before and after.
type usage struct {
	at      time.Time
	mallocs uint64
	bytes   uint64
	cpu     time.Duration
}

// readUsage takes a snapshot. ReadMemStats stops the world briefly; it is
// called only at the edges of a measured loop, never inside.
func readUsage() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{at: time.Now(), mallocs: ms.Mallocs, bytes: ms.TotalAlloc, cpu: cpuTime()}
}

// footprint is a process's memory and goroutines at rest.
type footprint struct {
	rss        int64 // bytes, from /proc/self/status VmRSS; 0 if unknown
	heap       int64 // bytes, runtime.MemStats HeapInuse
	goroutines int
}

// restingFootprint collects garbage and returns freed memory to the
// system first, so that the reading is what the process holds, not what
// the collector has not got round to yet.
func restingFootprint() footprint {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := readRSS()
	return footprint{rss: rss, heap: int64(ms.HeapInuse), goroutines: runtime.NumGoroutine()}
}

// readRSS returns VmRSS from /proc/self/status, in bytes.
func readRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, err
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// latencies keeps round-trip times in a ring allocated before the measured
// loop, so that recording one costs no allocation; past its size it keeps
// the latest.
type latencies struct {
	ring []time.Duration
	n    int
}

func newLatencies(size int) *latencies { return &latencies{ring: make([]time.Duration, size)} }

func (l *latencies) add(d time.Duration) {
	l.ring[l.n%len(l.ring)] = d
	l.n++
}

// quantiles returns the given quantiles (0..1) of what was recorded.
func (l *latencies) quantiles(qs ...float64) []time.Duration {
	s := slices.Clone(l.ring[:min(l.n, len(l.ring))])
	slices.Sort(s)
	out := make([]time.Duration, len(qs))
	if len(s) == 0 {
		return out
	}
	for i, q := range qs {
		out[i] = s[min(len(s)-1, int(q*float64(len(s))))]
	}
	return out
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
)

// report is the run's outcome, as --json prints it.
type report struct {
	Machine machine  `json:"machine"`
	Command string   `json:"command"`
	Setup   setup    `json:"setup"`
	Figures []figure `json:"figures"`
	Notes   []string `json:"notes,omitempty"`
}

type machine struct {
	Go       string `json:"go"`
	OS       string `json:"os"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	NoFile   uint64 `json:"rlimit_nofile"`
	NoFileHi uint64 `json:"rlimit_nofile_hard"`
	// LoadBefore and LoadAfter are /proc/loadavg's one-minute load at the
	// start and the end of the run: other work on the machine is the
	// first suspect of a noisy figure.
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
	// PressureAfter is /proc/pressure/cpu's "some avg300" at the end: the
	// share of the last five minutes in which some runnable task waited
	// for a CPU.
	PressureAfter string `json:"cpu_pressure_after,omitempty"`
}

type setup struct {
	Rounds      int     `json:"rounds"`
	DurationSec float64 `json:"duration_s"`
	WarmupSec   float64 `json:"warmup_s"`
	Size        int     `json:"size"`
	PipeConns   int     `json:"pipe_conns"`
	IdleConns   int     `json:"idle_conns"`
	Conns       int     `json:"conns"`
	BigConns    int     `json:"big_conns,omitempty"`
	ReceiveInto bool    `json:"receive_into"`
}

// figure is one row: the medians over rounds of each side, and the median
// (min, max) of the per-round wsauth/raw ratios. A nil value was not
// measured; NA says why.
type figure struct {
	Key      string   `json:"key"`
	Label    string   `json:"label"`
	Unit     unit     `json:"unit"`
	Raw      *float64 `json:"raw"`
	WSAuth   *float64 `json:"wsauth"`
	Ratio    *float64 `json:"ratio"`
	RatioMin *float64 `json:"ratio_min"`
	RatioMax *float64 `json:"ratio_max"`
	NA       string   `json:"na,omitempty"`
	Rounds   []pair   `json:"rounds"`
}

type pair struct {
	Raw    *float64 `json:"raw"`
	WSAuth *float64 `json:"wsauth"`
	Ratio  *float64 `json:"ratio"`
}

func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// median of the values that are numbers; NaN when there are none.
func median(vs []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(ws, raw float64) float64 {
	if raw == 0 {
		if ws == 0 {
			return 1
		}
		return math.NaN()
	}
	return ws / raw
}

func (b *bench) report() report {
	soft, hard := fileLimit()
	rep := report{
		Machine: machine{Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(),
			CPUModel: cpuModel(), Kernel: kernel(), NoFile: soft, NoFileHi: hard,
			LoadBefore: b.loadBefore, LoadAfter: loadAverage(), PressureAfter: cpuPressure()},
		Command: strings.TrimSpace("go run ./internal/bench " + strings.Join(b.cfg.args, " ")),
		Setup: setup{Rounds: b.cfg.rounds, DurationSec: b.cfg.duration.Seconds(), WarmupSec: b.cfg.warmup.Seconds(),
			Size: b.cfg.size, PipeConns: b.cfg.pipeConns, IdleConns: b.cfg.idleConns, Conns: b.cfg.conns,
			ReceiveInto: hasReceiveInto()},
		Notes: b.notes,
	}
	if b.cfg.big {
		rep.Setup.BigConns = b.cfg.bigConns
	}
	for _, r := range b.rows {
		f := figure{Key: r.key, Label: r.label, Unit: r.unit, NA: r.na}
		var ratios []float64
		for i := range r.raw {
			q := ratio(r.ws[i], r.raw[i])
			ratios = append(ratios, q)
			f.Rounds = append(f.Rounds, pair{Raw: num(r.raw[i]), WSAuth: num(r.ws[i]), Ratio: num(q)})
		}
		f.Raw, f.WSAuth, f.Ratio = num(median(r.raw)), num(median(r.ws)), num(median(ratios))
		if valid := slices.DeleteFunc(ratios, math.IsNaN); len(valid) > 0 {
			f.RatioMin, f.RatioMax = num(slices.Min(valid)), num(slices.Max(valid))
		}
		if f.Raw == nil && f.WSAuth == nil && f.NA == "" {
			continue // a figure of a run that measured only part of a round
		}
		rep.Figures = append(rep.Figures, f)
	}
	return rep
}

func writeReportJSON(w io.Writer, rep report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func writeReportTable(w io.Writer, rep report) error {
	bw := bufio.NewWriter(w)
	m := rep.Machine
	fmt.Fprintf(bw, "wsauth bench: %s %s, %d CPUs", m.Go, m.OS, m.CPUs)
	if m.CPUModel != "" {
		fmt.Fprintf(bw, " (%s)", m.CPUModel)
	}
	fmt.Fprintf(bw, ", RLIMIT_NOFILE %d (hard %d)", m.NoFile, m.NoFileHi)
	if m.LoadBefore != "" {
		fmt.Fprintf(bw, ", load average %s before, %s after", m.LoadBefore, m.LoadAfter)
	}
	if m.PressureAfter != "" {
		fmt.Fprintf(bw, ", CPU pressure %s%% (5 min)", m.PressureAfter)
	}
	fmt.Fprintln(bw)
	fmt.Fprintf(bw, "command: %s\n", rep.Command)
	s := rep.Setup
	fmt.Fprintf(bw, "%d rounds of %gs windows after %gs warm-up, %d B messages; values are medians over rounds, "+
		"wsauth/raw the median of the per-round ratios (min–max)\n\n", s.Rounds, s.DurationSec, s.WarmupSec, s.Size)
	fmt.Fprintln(bw, "| figure | raw coder/websocket | wsauth | wsauth/raw |")
	fmt.Fprintln(bw, "|---|---|---|---|")
	for _, f := range rep.Figures {
		ws := format(f.WSAuth, f.Unit)
		q := "n/a"
		if f.Ratio != nil {
			q = fmt.Sprintf("%.2f", *f.Ratio)
			if s.Rounds > 1 && f.RatioMin != nil {
				q += fmt.Sprintf(" (%.2f–%.2f)", *f.RatioMin, *f.RatioMax)
			}
		}
		fmt.Fprintf(bw, "| %s | %s | %s | %s |\n", f.Label, format(f.Raw, f.Unit), ws, q)
	}
	var notes []string
	for _, f := range rep.Figures {
		if f.NA != "" {
			notes = append(notes, fmt.Sprintf("%s: n/a, %s", f.Label, f.NA))
		}
	}
	notes = append(notes, rep.Notes...)
	if len(notes) > 0 {
		fmt.Fprintln(bw, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintf(bw, "- %s\n", n)
		}
	}
	return bw.Flush()
}

// format prints a value in its unit, or "n/a".
func format(v *float64, u unit) string {
	if v == nil {
		return "n/a"
	}
	x := *v
	switch u {
	case unitRate:
		switch {
		case x >= 1e6:
			return fmt.Sprintf("%.2fM", x/1e6)
		case x >= 1e4:
			return fmt.Sprintf("%.1fk", x/1e3)
		}
		return fmt.Sprintf("%.0f", x)
	case unitDur:
		switch {
		case x < 1e3:
			return fmt.Sprintf("%.0f ns", x)
		case x < 1e5:
			return fmt.Sprintf("%.1f µs", x/1e3)
		case x < 1e6:
			return fmt.Sprintf("%.0f µs", x/1e3)
		case x < 1e9:
			return fmt.Sprintf("%.2f ms", x/1e6)
		}
		return fmt.Sprintf("%.2f s", x/1e9)
	case unitBytes:
		switch {
		case math.Abs(x) < 1024:
			return fmt.Sprintf("%.0f B", x)
		case math.Abs(x) < 1<<20:
			return fmt.Sprintf("%.1f KiB", x/1024)
		}
		return fmt.Sprintf("%.1f MiB", x/(1<<20))
	}
	if math.Abs(x-math.Round(x)) < 0.005 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for l := range bytes.SplitSeq(b, []byte("\n")) {
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// loadAverage is the one-minute load average, "" if unknown.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// cpuPressure is the "some avg300" of /proc/pressure/cpu, "" if unknown.
func cpuPressure() string {
	b, _ := os.ReadFile("/proc/pressure/cpu")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg300="); ok {
			return v
		}
	}
	return ""
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

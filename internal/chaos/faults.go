package main

import (
	"time"

	"github.com/wsauth/wsauth/internal/faultproxy"
)

// A fault is one kind of network trouble the proxy makes. on starts it on
// a proxy for a phase; off ends it. A fault that happens at once (a reset)
// has nothing to end.
type fault struct {
	name string
	// window is how long the fault stays on each time, for the faults that
	// last; 0 means the phase driver's default.
	window time.Duration
	on     func(p *faultproxy.Proxy, ph *phase)
	off    func(p *faultproxy.Proxy)
}

// The faults, in the order the matrix runs them.
var faults = []fault{
	{
		name: "latency",
		on: func(p *faultproxy.Proxy, ph *phase) {
			p.SetLatency(pick(ph, 150*time.Millisecond, 50*time.Millisecond))
		},
		off: func(p *faultproxy.Proxy) { p.SetLatency(0) },
	},
	{
		name: "bandwidth",
		on: func(p *faultproxy.Proxy, ph *phase) {
			// Slow enough that a handshake or a verdict takes a noticeable
			// part of a second; steady traffic backs up behind it.
			p.SetBandwidth(faultproxy.Both, pick(ph, int64(800), int64(8<<10)))
		},
		off: func(p *faultproxy.Proxy) { p.SetBandwidth(faultproxy.Both, 0) },
	},
	{
		name: "cut-mid-frame",
		on: func(p *faultproxy.Proxy, ph *phase) {
			p.CutMidFrame(ph.cutDir, ph.cutAt)
		},
		off: func(p *faultproxy.Proxy) { p.CutMidFrame(faultproxy.Both, -1) },
	},
	{
		name:   "stall",
		window: 1500 * time.Millisecond, // longer than the client's pong timeout
		on:     func(p *faultproxy.Proxy, _ *phase) { p.Stall(true) },
		off:    func(p *faultproxy.Proxy) { p.Stall(false) },
	},
	{
		name:   "blackhole",
		window: 1500 * time.Millisecond,
		on:     func(p *faultproxy.Proxy, _ *phase) { p.Blackhole(true) },
		off: func(p *faultproxy.Proxy) {
			p.Blackhole(false)
			// The connections black-holed stay dead but open (the client
			// has given up on them by its pong timeout); release them.
			p.Cut()
		},
	},
	{
		name: "reset",
		on:   func(p *faultproxy.Proxy, _ *phase) { p.Cut() },
		off:  func(*faultproxy.Proxy) {},
	},
	{
		name: "slow-close",
		on: func(p *faultproxy.Proxy, ph *phase) {
			p.SetSlowClose(faultproxy.Both, 2*time.Second)
			if ph.closeForSlowClose != nil {
				ph.closeForSlowClose()
			}
		},
		off: func(p *faultproxy.Proxy) { p.SetSlowClose(faultproxy.Both, 0) },
	},
	{
		name: "data-limit",
		on: func(p *faultproxy.Proxy, ph *phase) {
			p.SetDataLimit(ph.limitDir, ph.limit)
		},
		off: func(p *faultproxy.Proxy) { p.SetDataLimit(faultproxy.Both, 0) },
	},
}

// clearProxy turns every fault of p off.
func clearProxy(p *faultproxy.Proxy) {
	for _, f := range faults {
		if f.name != "reset" {
			f.off(p)
		}
	}
}

// faultNamed returns the fault called name.
func faultNamed(name string) (fault, bool) {
	for _, f := range faults {
		if f.name == name {
			return f, true
		}
	}
	return fault{}, false
}

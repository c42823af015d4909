package wsauthtest

import (
	"time"

	"github.com/wsauth/wsauth/internal/faultproxy"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a Server that injects
// network faults into the connections it carries: latency, abrupt cuts,
// half-open (black-holed) connections, stalls, and refused connections.
// It knows nothing of WebSocket; it forwards bytes, so TLS works through
// it. Get it from Server.Proxy. Its methods are safe for concurrent use.
//
// The proxy forwards to the server's address, so it keeps working across
// Server.Stop and Server.Start: while the server is down, connections
// through the proxy fail as they would without it.
type Proxy struct {
	p      *faultproxy.Proxy
	useTLS bool
	wsPath string
}

// Addr is the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.p.Addr() }

// URL is the server's WebSocket URL through the proxy: the one to dial.
func (p *Proxy) URL() string { return wsScheme(p.useTLS) + "://" + p.p.Addr() + p.wsPath }

// HTTPURL is the base URL of the server's endpoints through the proxy,
// without a trailing slash.
func (p *Proxy) HTTPURL() string {
	if p.useTLS {
		return "https://" + p.p.Addr()
	}
	return "http://" + p.p.Addr()
}

// SetLatency delays data by d in each direction on every connection,
// current and new; 0 removes the delay. Data already in flight keeps the
// delay it was read with, and is never reordered.
func (p *Proxy) SetLatency(d time.Duration) { p.p.SetLatency(d) }

// Cut closes both sides of every current connection abruptly (a TCP reset
// where possible), as if the network path died, and returns how many it
// closed. New connections are accepted as before.
func (p *Proxy) Cut() int { return p.p.Cut() }

// Blackhole, while on, silently drops every byte in both directions on
// every connection, current and new, and hides a peer's close: half-open
// connections that only a liveness check (ping/pong) can detect. Turning
// it off helps only connections made afterwards; the black-holed ones stay
// dead until Cut or the end of the test.
func (p *Proxy) Blackhole(on bool) { p.p.Blackhole(on) }

// Stall, while on, holds data in both directions without dropping it, as a
// congested path would; turning it off delivers what was held, in order.
// A stalled sender eventually blocks through TCP flow control.
func (p *Proxy) Stall(on bool) { p.p.Stall(on) }

// Held reports how many bytes a stall is holding right now, in both
// directions; wait for it instead of waiting for a while.
func (p *Proxy) Held() int64 { return p.p.Held() }

// Refuse, while on, resets new connections as soon as they are accepted,
// like a host whose server is down; current connections carry on.
func (p *Proxy) Refuse(on bool) { p.p.Refuse(on) }

// Conns is the number of connections the proxy carries now, black-holed
// ones included.
func (p *Proxy) Conns() int { return p.p.Conns() }

// Accepted is the number of connections accepted so far, refused ones
// included, so a test can tell that a client reconnected.
func (p *Proxy) Accepted() int { return p.p.Accepted() }

// Close stops the proxy and closes its connections; the Server does it
// when the test ends. It is idempotent.
func (p *Proxy) Close() error { return p.p.Close() }

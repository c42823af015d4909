package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the part of hardening that lives below the WebSocket handler: the
// http.Server settings and a cap on TCP connections, counted from accept to close whatever
// they carry (plain HTTP requests, idle keep-alive connections, handshakes, connections
// waiting for their auth message, authenticated WebSockets).

// Recommended http.Server settings, as NewHTTPServer applies them.
const (
	// DefaultReadHeaderTimeout bounds the TLS handshake and the reading of a request's
	// headers, against connections that trickle them in (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection that carries no request for that
	// long; without it one plain request can hold a socket open forever.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxHeaderBytes bounds a request's headers; a WebSocket handshake needs far less.
	DefaultMaxHeaderBytes = 64 << 10
)

// NewHTTPServer returns an http.Server serving h with the settings a server reachable from
// the network should have: ReadHeaderTimeout DefaultReadHeaderTimeout, IdleTimeout
// DefaultIdleTimeout, MaxHeaderBytes DefaultMaxHeaderBytes, and the connection caps of lim
// installed (nil: a ConnLimiter with the default ConnLimits). ReadTimeout and WriteTimeout
// stay zero: they would cut every WebSocket after that long, since a hijacked connection
// lives far beyond its handshake. Serve it as usual (Serve, ServeTLS, ListenAndServe);
// close the Server (the handler) before calling Shutdown, which does not know hijacked
// connections.
func NewHTTPServer(h http.Handler, lim *ConnLimiter) *http.Server {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
	}
	if lim == nil {
		lim, _ = NewConnLimiter(ConnLimits{}) // the defaults cannot fail
	}
	lim.Install(hs)
	return hs
}

// ConnLimits configures a ConnLimiter. The zero value means the defaults.
type ConnLimits struct {
	// MaxPerIP caps the TCP connections open at once from one peer IP. Default 100;
	// negative: no per-IP cap. Connections from TrustedProxies count toward MaxTotal only:
	// behind a proxy every client shares its address, so the proxy must cap per client.
	MaxPerIP int
	// MaxTotal caps the TCP connections open at once. Default 1000 (keep it below the
	// process's file descriptor limit); negative: no cap.
	MaxTotal int
	// RetryAfter is the Retry-After of the 503 a connection over a cap gets. Default 10
	// seconds.
	RetryAfter time.Duration
	// MaxRefusing caps the connections over a cap that are being answered at once (each
	// holds a socket until its request is read, at most ReadHeaderTimeout); more are closed
	// at accept without an answer. Default 64.
	MaxRefusing int
	// TrustedProxies lists reverse proxies, as CIDR prefixes or single IPs, exempt from
	// MaxPerIP; usually the same list as Config.TrustedProxies. Default none.
	TrustedProxies []string
}

// ConnLimiter caps TCP connections per peer IP and in total. A connection over a cap is
// answered "503 Service Unavailable" with Retry-After and "Connection: close", then
// closed, once its first request has been read; the WebSocket handshake is never reached.
// Counting follows the connection from accept to close, through a hijack: a WebSocket
// holds its slot until its socket closes. Install it on an http.Server, or use
// NewHTTPServer. One ConnLimiter may serve several http.Servers; its methods are safe for
// concurrent use.
type ConnLimiter struct {
	limits  ConnLimits
	proxies *proxyPolicy

	mu       sync.Mutex
	conns    map[net.Conn]*slot
	perIP    map[netip.Addr]int
	total    int
	refusing int

	refused, dropped atomic.Int64
}

// slot is a tracked connection.
type slot struct {
	ip   netip.Addr
	ipOK bool
	over bool // over a cap: answered 503, not counted
}

// ConnStats is a snapshot of a ConnLimiter.
type ConnStats struct {
	// Open is the number of connections counted toward the caps now.
	Open int
	// Refused counts connections answered 503 for being over a cap.
	Refused int64
	// Dropped counts connections over a cap closed at accept without an answer, because
	// MaxRefusing were being answered already.
	Dropped int64
}

// NewConnLimiter validates the limits, fills in their defaults and returns a limiter.
func NewConnLimiter(limits ConnLimits) (*ConnLimiter, error) {
	proxies, err := newProxyPolicy(limits.TrustedProxies)
	if err != nil {
		return nil, err
	}
	if limits.MaxPerIP == 0 {
		limits.MaxPerIP = 100
	}
	if limits.MaxTotal == 0 {
		limits.MaxTotal = 1000
	}
	if limits.RetryAfter <= 0 {
		limits.RetryAfter = 10 * time.Second
	}
	if limits.MaxRefusing <= 0 {
		limits.MaxRefusing = 64
	}
	return &ConnLimiter{
		limits:  limits,
		proxies: proxies,
		conns:   make(map[net.Conn]*slot),
		perIP:   make(map[netip.Addr]int),
	}, nil
}

// overCapKey marks, in a connection's context, a connection over a cap.
type overCapKey struct{}

// Install hooks the limiter into hs: ConnContext admits or refuses each accepted
// connection, ConnState releases it at close, and the handler (hs.Handler, or
// http.DefaultServeMux when nil) is wrapped to answer refused connections and to follow
// hijacked ones to their close. Hooks hs already has keep running. Call it once, after
// setting hs.Handler and before serving. It sets hs.ReadHeaderTimeout to
// DefaultReadHeaderTimeout when that is zero: a connection over the cap that never sends a
// request would otherwise keep its socket forever.
func (l *ConnLimiter) Install(hs *http.Server) {
	if hs.ReadHeaderTimeout == 0 {
		hs.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	prevContext, prevState := hs.ConnContext, hs.ConnState
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevContext != nil {
			ctx = prevContext(ctx, c)
		}
		if l.admit(c) {
			return ctx
		}
		return context.WithValue(ctx, overCapKey{}, true)
	}
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			l.release(c)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	next := hs.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if over, _ := r.Context().Value(overCapKey{}).(bool); over {
			l.refuse(w, r)
			return
		}
		next.ServeHTTP(&trackingWriter{ResponseWriter: w, l: l}, r)
	})
}

// Stats returns a snapshot of the counters.
func (l *ConnLimiter) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConnStats{Open: l.total, Refused: l.refused.Load(), Dropped: l.dropped.Load()}
}

// admit counts a new connection, or marks it over a cap and reports false. A connection
// over a cap when MaxRefusing are being answered is closed at once (its StateClosed then
// finds nothing to release).
func (l *ConnLimiter) admit(c net.Conn) bool {
	ip, ipOK := peerAddr(c)
	perIPCapped := l.limits.MaxPerIP > 0 && ipOK && !l.proxies.isTrusted(ip)
	l.mu.Lock()
	over := l.limits.MaxTotal > 0 && l.total >= l.limits.MaxTotal ||
		perIPCapped && l.perIP[ip] >= l.limits.MaxPerIP
	if !over {
		l.total++
		if ipOK {
			l.perIP[ip]++
		}
		l.conns[c] = &slot{ip: ip, ipOK: ipOK}
		l.mu.Unlock()
		return true
	}
	if l.refusing >= l.limits.MaxRefusing {
		l.mu.Unlock()
		l.dropped.Add(1)
		_ = c.Close()
		return false
	}
	l.refusing++
	l.conns[c] = &slot{over: true}
	l.mu.Unlock()
	return false
}

// release gives back the slot of a closed connection; unknown connections are ignored,
// and a connection is released once.
func (l *ConnLimiter) release(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.conns[c]
	if !ok {
		return
	}
	delete(l.conns, c)
	if s.over {
		l.refusing--
		return
	}
	l.total--
	if s.ipOK {
		if l.perIP[s.ip] <= 1 {
			delete(l.perIP, s.ip)
		} else {
			l.perIP[s.ip]--
		}
	}
}

// refuse answers a request of a connection over a cap; net/http closes the connection
// after the answer because of "Connection: close" (HTTP/2 has no such header: there the
// connection lives on until IdleTimeout, answering 503 each time).
func (l *ConnLimiter) refuse(w http.ResponseWriter, r *http.Request) {
	l.refused.Add(1)
	w.Header().Set("Retry-After", retryAfterValue(l.limits.RetryAfter))
	w.Header().Set("Cache-Control", "no-store")
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, http.StatusText(http.StatusServiceUnavailable)+": too many connections", http.StatusServiceUnavailable)
}

// peerAddr is the IP of a connection's TCP peer (a *tls.Conn reports its own).
func peerAddr(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// trackingWriter follows a hijacked connection: net/http reports StateHijacked and never
// StateClosed for it, so the connection handed out is wrapped to release its slot when it
// is closed. Unwrap lets http.ResponseController reach the rest of the ResponseWriter.
type trackingWriter struct {
	http.ResponseWriter
	l *ConnLimiter
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the ResponseWriter underneath, for handlers that assert http.Flusher.
func (w *trackingWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hijacks the connection underneath and hands out a wrapper that releases the
// connection's slot at Close.
func (w *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nc, brw, err
	}
	return &hijackedConn{Conn: nc, l: w.l}, brw, nil
}

// hijackedConn is a hijacked connection that releases its slot once closed.
type hijackedConn struct {
	net.Conn
	l    *ConnLimiter
	once sync.Once
}

func (c *hijackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.Conn) })
	return err
}

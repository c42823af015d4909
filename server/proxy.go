package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// proxyPolicy knows the reverse proxies whose forwarding headers are believed
// (Config.TrustedProxies). Without any, the client is the TCP peer, whatever the request
// says: any client can send Forwarded or X-Forwarded-For.
type proxyPolicy struct {
	trusted []netip.Prefix
}

// newProxyPolicy parses Config.TrustedProxies: CIDR prefixes or single IPs.
func newProxyPolicy(list []string) (*proxyPolicy, error) {
	p := &proxyPolicy{}
	for _, s := range list {
		pfx, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("wsauth/server: trusted proxy %q: want a CIDR prefix or an IP", s)
		}
		p.trusted = append(p.trusted, pfx)
	}
	return p, nil
}

// parsePrefix reads "10.0.0.0/8" or "10.1.2.3" (a /32, or /128 for IPv6). IPv4-mapped IPv6
// prefixes are refused: peers are compared unmapped.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad prefix")
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// isTrusted reports whether a is one of the trusted proxies.
func (p *proxyPolicy) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// hop is one forwarded-for entry: the address a proxy saw its request come from, and the
// scheme it was received with when the header says ("" when not).
type hop struct {
	addr  netip.Addr
	proto string
}

// client works out who sent request r: the IP the limits count against and the scheme the
// client used. For a peer that is not a trusted proxy that is the peer and the scheme of
// the connection. For a trusted proxy it walks the forwarded hops from the nearest one
// outward and stops at the first address that is not a trusted proxy; a hop it cannot read
// (a garbled entry, "unknown", an obfuscated name) ends the walk at the last hop it could,
// since only the entries right of it were written by trusted proxies.
func (p *proxyPolicy) client(r *http.Request) (ip netip.Addr, scheme string, ok bool) {
	scheme = "http"
	if r.TLS != nil {
		scheme = "https"
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, scheme, false
	}
	ip = peer.Addr().Unmap().WithZone("")
	if len(p.trusted) == 0 || !p.isTrusted(ip) {
		return ip, scheme, true
	}
	hops, proto := forwardedHops(r.Header)
	if proto != "" {
		scheme = proto
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		if !h.addr.IsValid() {
			break
		}
		ip = h.addr
		if h.proto != "" {
			scheme = h.proto
		}
		if !p.isTrusted(ip) {
			break
		}
	}
	return ip, scheme, true
}

// forwardedHops reads the Forwarded header (RFC 7239) when there is one, else
// X-Forwarded-For with X-Forwarded-Proto, and returns the hops in header order, the client
// first. An entry that does not name an IP becomes a hop with an invalid address. proto is
// X-Forwarded-Proto's rightmost value (what the nearest proxy saw), "" when absent or not
// http or https.
func forwardedHops(h http.Header) (hops []hop, proto string) {
	if fw := h.Values("Forwarded"); len(fw) > 0 {
		for _, line := range fw {
			for _, el := range splitForwarded(line) {
				hops = append(hops, hop{addr: parseNode(el["for"]), proto: normScheme(el["proto"])})
			}
		}
		return hops, ""
	}
	for _, line := range h.Values("X-Forwarded-For") {
		for _, e := range strings.Split(line, ",") {
			hops = append(hops, hop{addr: parseNode(strings.TrimSpace(e))})
		}
	}
	if xfp := h.Values("X-Forwarded-Proto"); len(xfp) > 0 {
		vals := strings.Split(xfp[len(xfp)-1], ",")
		proto = normScheme(strings.TrimSpace(vals[len(vals)-1]))
	}
	return hops, proto
}

// normScheme accepts the two schemes an origin can have.
func normScheme(s string) string {
	switch s = strings.ToLower(s); s {
	case "http", "https":
		return s
	}
	return ""
}

// maxForwardedElements bounds the work a hostile Forwarded header can cause.
const maxForwardedElements = 64

// splitForwarded parses one Forwarded header line into its elements, each a map of
// lower-cased parameter names to values with quotes removed. Commas and semicolons inside
// quoted strings do not split. A malformed pair is kept with what could be read, which the
// callers then fail to parse as an address.
func splitForwarded(line string) []map[string]string {
	var out []map[string]string
	el := map[string]string{}
	var key, val strings.Builder
	inKey, quoted, escaped := true, false, false
	flushPair := func() {
		k := strings.ToLower(strings.TrimSpace(key.String()))
		if k != "" {
			if _, dup := el[k]; !dup {
				el[k] = strings.TrimSpace(val.String())
			} else {
				el[k] = "" // a repeated parameter is invalid (RFC 7239 §4)
			}
		}
		key.Reset()
		val.Reset()
		inKey = true
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case escaped:
			val.WriteByte(c)
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"' && !inKey:
			quoted = !quoted
		case quoted:
			val.WriteByte(c)
		case c == '=' && inKey:
			inKey = false
		case c == ';':
			flushPair()
		case c == ',':
			flushPair()
			out = append(out, el)
			if len(out) >= maxForwardedElements {
				return out
			}
			el = map[string]string{}
		case inKey:
			key.WriteByte(c)
		default:
			val.WriteByte(c)
		}
	}
	flushPair()
	return append(out, el)
}

// parseNode reads a forwarded node: "192.0.2.1", "192.0.2.1:8080", "[2001:db8::1]",
// "[2001:db8::1]:8080", or a bare IPv6 address as some proxies write into
// X-Forwarded-For. Anything else ("unknown", "_hidden", a name) is the invalid Addr.
func parseNode(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap()
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}
		}
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}
		}
		return a.Unmap()
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || !validPort(port) {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

// validPort accepts a decimal port, or RFC 7239's obfuscated port ("_abc").
func validPort(p string) bool {
	if p == "" || len(p) > 16 {
		return false
	}
	if p[0] == '_' {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return len(p) <= 5
}

// clientIP is the IP the limits and caps count request r against: the TCP peer, or, when
// the peer is a trusted proxy, the client it forwarded for.
func (s *Server) clientIP(r *http.Request) string {
	ip, _, ok := s.proxies.client(r)
	if !ok {
		return hostOf(r.RemoteAddr)
	}
	return ip.String()
}

// requestScheme is the scheme the client used to reach the server: https over TLS, or what
// a trusted proxy reported.
func (s *Server) requestScheme(r *http.Request) string {
	_, scheme, _ := s.proxies.client(r)
	return scheme
}

// hostOf is the host part of an ip:port address, the whole string when it has no port.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

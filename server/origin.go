package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// originPolicy decides which browser origins may open a WebSocket. Entries are exact
// "scheme://host[:port]" origins: a cookie is scoped to a host, not to a port or scheme, so
// anything looser than an exact match lets another local page or a plain-http page ride a
// victim's session (cross-site WebSocket hijacking).
//
// Every origin, configured or received, goes through the same normalisation (parseOrigin):
// scheme and host lower-cased, the scheme's default port dropped. That is the form browsers
// send, so "https://h:443" in the configuration or in a request is "https://h".
type originPolicy struct {
	allowed map[string]bool // normalized origins
	list    []string        // normalized, in configuration order
}

// originVerdict is what the policy says of a request's Origin.
type originVerdict int

const (
	// originAbsent: no Origin header, a non-browser client.
	originAbsent originVerdict = iota
	// originAllowed: the server's own origin or an allowed one.
	originAllowed
	// originRefused: anything else, including malformed, empty and "null" origins.
	originRefused
)

// newOriginPolicy validates and normalizes Config.AllowedOrigins.
func newOriginPolicy(origins []string) (*originPolicy, error) {
	p := &originPolicy{allowed: make(map[string]bool)}
	for _, o := range origins {
		n, err := normalizeOriginEntry(o)
		if err != nil {
			return nil, err
		}
		if !p.allowed[n] {
			p.allowed[n] = true
			p.list = append(p.list, n)
		}
	}
	return p, nil
}

// normalizeOriginEntry checks one AllowedOrigins entry and returns it normalised, with a
// configuration error that says what is wrong with it.
func normalizeOriginEntry(o string) (string, error) {
	switch {
	case strings.Contains(o, "*"):
		return "", fmt.Errorf("wsauth/server: allowed origin %q: wildcards are not allowed, list exact origins", o)
	case strings.EqualFold(strings.TrimSpace(o), "null"):
		return "", fmt.Errorf("wsauth/server: allowed origin %q: the null origin can be forged by any page", o)
	}
	n, ok := parseOrigin(o)
	if !ok {
		return "", fmt.Errorf("wsauth/server: allowed origin %q: want scheme://host[:port], without user, path, query or fragment", o)
	}
	return n, nil
}

// maxOriginLen bounds the Origin values looked at; real ones are a few dozen bytes.
const maxOriginLen = 1024

// parseOrigin reads a serialized origin, "scheme://host[:port]" (RFC 6454 §6.2), and returns
// it normalised: scheme and host lower-cased, IPv6 literals bracketed, the scheme's default
// port (80 for http and ws, 443 for https and wss) dropped. Anything else — a path (even
// "/"), a query, a fragment, userinfo, an empty or non-numeric port, percent-encoding
// (IPv6 zones included), whitespace, control or non-ASCII bytes, "null" — is not an origin.
func parseOrigin(o string) (string, bool) {
	if len(o) > maxOriginLen {
		return "", false
	}
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#@\\%") {
		return "", false
	}
	for i := 0; i < len(o); i++ {
		if o[i] <= ' ' || o[i] >= 0x7f {
			return "", false
		}
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false
	}
	if strings.HasSuffix(u.Host, ":") || !validOriginHost(u) {
		return "", false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return "", false
		}
	}
	return normalizeOrigin(u), true
}

// validOriginHost accepts the hosts a browser puts in an origin: a DNS name or IPv4 address
// (letters, digits, '-', '.', '_'), or an IPv6 literal in brackets. url.Parse is more
// lenient ("h::1" parses as host "h:" and port "1"), and a lenient host would not survive
// normalisation unchanged.
func validOriginHost(u *url.URL) bool {
	host := u.Hostname()
	if host == "" {
		return false
	}
	if strings.HasPrefix(u.Host, "[") {
		a, err := netip.ParseAddr(host)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// normalizeOrigin renders u as scheme://host[:port], lower-cased, with the scheme's default
// port dropped, as browsers serialize origins.
func normalizeOrigin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" || scheme == "ws") && port == "80" || (scheme == "https" || scheme == "wss") && port == "443" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port
	}
	return scheme + "://" + host
}

// ownOrigin is the origin of a page served by this server for request r: the scheme the
// client used (http, or https over TLS or behind a trusted TLS proxy) with the Host header.
// It is "" when the Host header is not a host[:port].
func ownOrigin(scheme string, r *http.Request) string {
	n, ok := parseOrigin(scheme + "://" + r.Host)
	if !ok {
		return ""
	}
	return n
}

// check judges the request's Origin: absent (a non-browser client), allowed (the server's
// own origin, scheme, host and port, or exactly one of the allowed origins), or refused.
// Two Origin headers, an empty one, "null" and anything unparsable are refused. scheme is
// the scheme the client used to reach the server.
func (p *originPolicy) check(r *http.Request, scheme string) originVerdict {
	values := r.Header.Values("Origin")
	if len(values) == 0 {
		return originAbsent
	}
	if len(values) > 1 {
		return originRefused
	}
	n, ok := parseOrigin(values[0])
	if !ok {
		return originRefused
	}
	if own := ownOrigin(scheme, r); own != "" && n == own {
		return originAllowed
	}
	if p.allowed[n] {
		return originAllowed
	}
	return originRefused
}

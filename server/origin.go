package server

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// originPolicy decides which browser origins may open a WebSocket. Entries are exact
// "scheme://host[:port]" origins: a cookie is scoped to a host, not to a port or scheme, so
// anything looser than an exact match lets another local page or a plain-http page ride a
// victim's session (cross-site WebSocket hijacking).
type originPolicy struct {
	allowed map[string]bool // normalized origins
	list    []string        // normalized, in configuration order
}

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

// normalizeOriginEntry checks one AllowedOrigins entry and returns it lower-cased, without
// a default port, in the form browsers send in the Origin header.
func normalizeOriginEntry(o string) (string, error) {
	switch {
	case strings.Contains(o, "*"):
		return "", fmt.Errorf("wsauth/server: allowed origin %q: wildcards are not allowed, list exact origins", o)
	case strings.EqualFold(strings.TrimSpace(o), "null"):
		return "", fmt.Errorf("wsauth/server: allowed origin %q: the null origin can be forged by any page", o)
	case strings.ContainsAny(o, "?#\\ \t"):
		return "", fmt.Errorf("wsauth/server: allowed origin %q: want scheme://host[:port]", o)
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", fmt.Errorf("wsauth/server: allowed origin %q: %w", o, err)
	}
	if u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("wsauth/server: allowed origin %q: want scheme://host[:port]", o)
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("wsauth/server: allowed origin %q: an origin has no user, path, query or fragment", o)
	}
	if u.Port() == "" && strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("wsauth/server: allowed origin %q: empty port", o)
	}
	return normalizeOrigin(u), nil
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

// check reports whether the request's Origin may open a WebSocket: an absent Origin (a
// non-browser client), the request's own host (what coder/websocket also allows), or an
// exact match with an allowed origin. "null" and anything unparsable are refused.
func (p *originPolicy) check(r *http.Request) bool {
	values := r.Header.Values("Origin")
	if len(values) == 0 {
		return true
	}
	if len(values) > 1 {
		return false
	}
	origin := values[0]
	if origin == "" || strings.EqualFold(origin, "null") {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Opaque != "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return p.allowed[normalizeOrigin(u)]
}

// acceptPatterns turns the allowed origins into coder/websocket OriginPatterns. They contain
// "://", so Accept matches them against scheme://host; path.Match metacharacters that can
// appear in a valid origin (the brackets of an IPv6 literal) are escaped, and '*' never
// appears because New refuses it.
func (p *originPolicy) acceptPatterns() []string {
	out := make([]string, 0, len(p.list))
	for _, o := range p.list {
		r := strings.NewReplacer("[", `\[`, "]", `\]`)
		out = append(out, r.Replace(o))
	}
	return out
}

// clientIP is the IP of the peer that opened the TCP connection. Proxy headers such as
// X-Forwarded-For are deliberately ignored: any client can set them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

package wsauth

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// The transport rules every credential obeys, at every hop:
//
//   - a credential goes over plain ws:// or http:// only to a loopback host,
//     unless Options.AllowInsecure;
//   - the WebSocket handshake never follows a redirect (browsers do not
//     either): a 3xx stops the client with an HTTPError naming the
//     redacted Location, so that the URL can be fixed;
//   - a REST call a provider makes (ticket endpoint, login, a URL endpoint)
//     follows redirects only within its own origin (scheme, host and
//     port), never sends a Referer, and refuses any other redirect with an
//     error wrapping ErrRedirect: no credential, header or body ever
//     reaches another origin.

// httpURL maps a ws/wss URL to the http/https URL a cookie jar keys on.
func httpURL(u *url.URL) *url.URL {
	c := *u
	switch c.Scheme {
	case "ws":
		c.Scheme = "http"
	case "wss":
		c.Scheme = "https"
	}
	return &c
}

// originOf is the browser origin of a WebSocket URL: scheme (http or
// https), host and port, nothing else.
func originOf(u *url.URL) string {
	h := httpURL(u)
	return strings.ToLower(h.Scheme) + "://" + h.Host
}

// checkTransport refuses a credential over plain ws:// or http:// to a host
// that is not loopback unless the user opted in.
func checkTransport(u *url.URL, allowInsecure bool) error {
	if allowInsecure {
		return nil
	}
	switch strings.ToLower(u.Scheme) {
	case "wss", "https":
		return nil
	}
	if isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%w: %s://%s is neither TLS nor loopback; use wss:// (https://) or set Options.AllowInsecure", ErrInsecureTransport, u.Scheme, u.Host)
}

// isLoopback is true for "localhost" and loopback IP literals. Names are
// never resolved: "localhost.example.com" is not loopback.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxRedirects bounds the same-origin redirects of one REST call.
const maxRedirects = 10

// RedirectPolicy is the http.Client CheckRedirect of the REST calls the
// client makes for credentials: it follows a redirect only to the origin
// (scheme, host and port) of the first request, at most 10 times, and
// removes the Referer header Go would add, which could carry a query
// token. Any other redirect fails with an error wrapping ErrRedirect.
// Use it for the HTTP client of a token source of your own.
func RedirectPolicy(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects within %s://%s", ErrRedirect, maxRedirects, via[0].URL.Scheme, via[0].URL.Host)
	}
	first := via[0].URL
	if !sameOrigin(first, req.URL) {
		return fmt.Errorf("%w: %s://%s redirected to another origin, %s://%s", ErrRedirect,
			first.Scheme, first.Host, req.URL.Scheme, req.URL.Host)
	}
	req.Header.Del("Referer")
	return nil
}

// sameOrigin compares scheme, host and port, default ports included.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) &&
		portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		return "443"
	}
	return "80"
}

// restClient is hc with RedirectPolicy in front of its own CheckRedirect.
func restClient(hc *http.Client) *http.Client {
	cp := *hc
	own := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := RedirectPolicy(req, via); err != nil {
			return err
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	return &cp
}

// handshakeClient is hc without redirects: the 3xx itself comes back.
func handshakeClient(hc *http.Client) *http.Client {
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// isRedirect reports a 3xx status that carries a Location.
func isRedirect(status int) bool {
	return status >= 300 && status < 400 && status != http.StatusNotModified
}

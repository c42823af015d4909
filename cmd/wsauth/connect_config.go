package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
)

// connectConfig is connect's validated configuration.
type connectConfig struct {
	url  *url.URL
	auth string

	source *tokenSource // nil for cookie and none

	ticketURL, loginURL string
	param               string
	loginBody           []byte
	origin              string
	header              http.Header
	subprotocols        []string
	bearerPrefix        string
	dialect             wsauth.Dialect
	insecure            bool

	reauthCodes     []wsauth.StatusCode
	maxAuthFailures int
	backoffInitial  time.Duration
	backoffMax      time.Duration
	ping            time.Duration
	refreshLead     time.Duration
	renewal         wsauth.Renewal

	events string
	output string
	wait   time.Duration

	// tlsConfig carries --cacert; nil for the system roots.
	tlsConfig *tls.Config
	// oauthHC makes the token endpoint calls of --oauth2-token-url; its
	// idle connections are closed at the end.
	oauthHC *http.Client

	scrub *scrubber
}

// newConnectConfig checks connect's flags and builds its configuration,
// one flag group at a time, each checked by a function of its own: the
// URL, the credential pattern (--auth and the flags of one mode), the
// transport, the token source, the cookie login, the connection,
// reconnecting and refreshing, and the output. Every error it returns is
// a usage error except an unreadable --cacert.
func newConnectConfig(f *connectFlags, args []string, s stdio) (*connectConfig, error) {
	c := &connectConfig{scrub: &scrubber{}, header: http.Header{}}
	if err := c.setURL(args); err != nil {
		return nil, err
	}
	if err := c.setAuthMode(f); err != nil {
		return nil, err
	}
	if err := c.setTransport(f); err != nil {
		return nil, err
	}
	chosen, err := c.setTokenSource(f, s)
	if err != nil {
		return nil, err
	}
	if err := c.setCookieLogin(f, chosen, s.getenv); err != nil {
		return nil, err
	}
	if err := c.setConnection(f); err != nil {
		return nil, err
	}
	if err := c.setReconnect(f); err != nil {
		return nil, err
	}
	if err := c.setOutput(f); err != nil {
		return nil, err
	}
	return c, nil
}

// shown is a URL the user gave, for an error message: the credentials a
// URL carries on its own (credential-like query parameters such as token=,
// access_token= or api_key=, a password) are registered with the scrubber
// and replaced.
func (c *connectConfig) shown(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		c.scrub.AddURL(u)
	}
	return c.scrub.String(raw)
}

// setURL takes the one argument, the WebSocket URL. A token written into
// it is a secret like any other: it is registered before anything can
// print the URL.
func (c *connectConfig) setURL(args []string) error {
	switch len(args) {
	case 0:
		return usagef("missing the WebSocket URL")
	case 1:
	default:
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = c.shown(a)
		}
		return usagef("one URL expected, got %d arguments: %q", len(args), shown)
	}
	u, err := url.Parse(args[0])
	if err != nil {
		// url.Parse quotes its input, which may hold a token.
		return usagef("the URL does not parse")
	}
	c.scrub.AddURL(u)
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return usagef("URL must start with ws://, wss://, http:// or https://, got %s", c.scrub.URL(u))
	}
	if u.Host == "" {
		return usagef("URL %s has no host", c.scrub.URL(u))
	}
	c.url = u
	return nil
}

// setAuthMode takes --auth, and the flags of the credential patterns
// that go with one mode only: --ticket-url and --param, --bearer-prefix
// (the cookie login's are setCookieLogin's).
func (c *connectConfig) setAuthMode(f *connectFlags) error {
	if !slices.Contains(authModes, f.auth) {
		return usagef("--auth %q: want one of %s", f.auth, strings.Join(authModes, ", "))
	}
	c.auth = f.auth
	if f.ticketURL.val != "" && c.auth != "ticket" {
		return usagef("--ticket-url goes with --auth ticket")
	}
	if f.param.val != "" && c.auth != "ticket" && c.auth != "query" {
		return usagef("--param goes with --auth ticket or --auth query")
	}
	c.param = f.param.val
	if c.auth == "ticket" {
		var err error
		if c.ticketURL, err = c.endpoint("--ticket-url", f.ticketURL.val, "/api/ws-ticket"); err != nil {
			return err
		}
	}
	if f.bearerPrefix == "" {
		return usagef("--bearer-prefix must not be empty")
	}
	c.bearerPrefix = f.bearerPrefix
	return nil
}

// endpoint is the REST endpoint a flag names, or by default the reference
// server's path on the WebSocket URL's host, over http for ws and https
// for wss, without the URL's query, fragment or user info.
func (c *connectConfig) endpoint(flagName, v, path string) (string, error) {
	if v == "" {
		e := *c.url
		e.RawQuery, e.Fragment, e.User = "", "", nil
		switch e.Scheme {
		case "ws":
			e.Scheme = "http"
		case "wss":
			e.Scheme = "https"
		}
		e.Path, e.RawPath = path, ""
		return e.String(), nil
	}
	pu, err := url.Parse(v)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return "", usagef("%s %q is not an http(s) URL", flagName, c.shown(v))
	}
	return v, nil
}

// setTransport takes --cacert (root certificates trusted besides the
// system's, for wss:// and https://) and --insecure (credentials may
// travel in clear text to a host that is not loopback). TLS verification
// is never turned off.
func (c *connectConfig) setTransport(f *connectFlags) error {
	c.insecure = f.insecure
	if f.cacert == "" {
		return nil
	}
	pem, err := os.ReadFile(f.cacert)
	if err != nil {
		return fmt.Errorf("--cacert: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--cacert %s: no PEM certificate in it", f.cacert)
	}
	c.tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return nil
}

// tokenChoice is what the token source flags chose, which the cookie
// login goes by.
type tokenChoice struct {
	// flags are the token source flags given (at most one is valid).
	flags []string
	// env is WSAUTH_TOKEN, trimmed.
	env string
}

// setTokenSource takes the token source: at most one of --token,
// --token-file, --token-command and --oauth2-token-url (with --client-id,
// --client-secret and --scope), and WSAUTH_TOKEN only when no flag chose;
// a mode that carries a token needs one, and --auth none takes none.
func (c *connectConfig) setTokenSource(f *connectFlags, s stdio) (tokenChoice, error) {
	var chosen tokenChoice
	for _, fl := range []struct{ name, val string }{
		{"--token", f.token}, {"--token-file", f.tokenFile}, {"--token-command", f.tokenCommand}, {"--oauth2-token-url", f.oauthURL},
	} {
		if fl.val != "" {
			chosen.flags = append(chosen.flags, fl.name)
		}
	}
	if len(chosen.flags) > 1 {
		return chosen, usagef("%s: give one token source", strings.Join(chosen.flags, " and "))
	}
	if f.oauthURL == "" && (f.clientID != "" || f.secret != "" || len(f.scopes.vals) > 0) {
		return chosen, usagef("--client-id, --client-secret and --scope go with --oauth2-token-url")
	}
	if f.tokenCommandTimeout <= 0 {
		return chosen, usagef("--token-command-timeout must be positive")
	}
	chosen.env = strings.TrimSpace(s.getenv(envToken))
	needsToken := c.auth != "none" && c.auth != "cookie"
	switch {
	case f.token != "":
		c.source = staticSource("--token", f.token, c.scrub)
	case f.tokenFile != "":
		c.source = fileSource(f.tokenFile, c.scrub)
	case f.tokenCommand != "":
		c.source = commandSource(f.tokenCommand, f.tokenCommandTimeout, s.err, c.scrub)
	case f.oauthURL != "":
		if err := c.setOAuth2(f, s.getenv); err != nil {
			return chosen, err
		}
	case chosen.env != "" && needsToken:
		c.source = staticSource(envToken, chosen.env, c.scrub)
	}
	switch {
	case c.auth == "none" && len(chosen.flags) > 0:
		return chosen, usagef("%s given with --auth none: choose how the token travels with --auth (%s)", chosen.flags[0], strings.Join(authModes[:6], ", "))
	case needsToken && c.source == nil:
		return chosen, usagef("--auth %s needs a token: --token, --token-file, --token-command, --oauth2-token-url or %s", c.auth, envToken)
	}
	return chosen, nil
}

// setOAuth2 takes --oauth2-token-url, --client-id, --client-secret (or
// WSAUTH_CLIENT_SECRET) and --scope: the client-credentials grant, through
// an HTTP client of its own that carries --cacert and follows redirects
// only within the token endpoint's origin (wsauth.RedirectPolicy).
func (c *connectConfig) setOAuth2(f *connectFlags, getenv func(string) string) error {
	ou, err := url.Parse(f.oauthURL)
	if err != nil || (ou.Scheme != "http" && ou.Scheme != "https") || ou.Host == "" {
		return usagef("--oauth2-token-url %q is not an http(s) URL", c.shown(f.oauthURL))
	}
	secret := cmp.Or(f.secret, getenv(envClientSecret))
	if f.clientID == "" || secret == "" {
		return usagef("--oauth2-token-url needs --client-id and a secret (--client-secret or %s)", envClientSecret)
	}
	var scopes []string
	for _, s := range f.scopes.vals {
		scopes = append(scopes, strings.Fields(s)...)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.tlsConfig.Clone()
	c.oauthHC = &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: wsauth.RedirectPolicy}
	cc := &clientcredentials.Config{ClientID: f.clientID, ClientSecret: secret, TokenURL: f.oauthURL, Scopes: scopes}
	c.source = oauth2Source(cc, c.oauthHC, c.scrub)
	return nil
}

// setCookieLogin takes --login-url and the login body of --auth cookie:
// --login-json or WSAUTH_LOGIN_JSON, whose strings are secrets, or a
// fixed token (--token, WSAUTH_TOKEN), with which the reference server's
// login also works. The session cookie the login sets is the credential:
// no token source is left.
func (c *connectConfig) setCookieLogin(f *connectFlags, chosen tokenChoice, getenv func(string) string) error {
	if (f.loginURL.val != "" || f.loginJSON != "") && c.auth != "cookie" {
		return usagef("--login-url and --login-json go with --auth cookie")
	}
	if c.auth != "cookie" {
		return nil
	}
	var err error
	if c.loginURL, err = c.endpoint("--login-url", f.loginURL.val, "/api/login"); err != nil {
		return err
	}
	body := cmp.Or(f.loginJSON, getenv(envLoginJSON))
	switch {
	case body != "" && len(chosen.flags) > 0:
		return usagef("--auth cookie logs in with a login body or with %s, not both", chosen.flags[0])
	case body != "":
		var obj map[string]any
		if json.Unmarshal([]byte(body), &obj) != nil {
			return usagef("--login-json must be a JSON object")
		}
		c.scrub.Add(jsonStrings(obj)...)
		c.loginBody = []byte(body)
	case f.token != "" || (len(chosen.flags) == 0 && chosen.env != ""):
		tok := cmp.Or(f.token, chosen.env)
		c.scrub.Add(tok)
		c.loginBody, _ = json.Marshal(map[string]string{"token": tok})
	case len(chosen.flags) > 0:
		return usagef("--auth cookie logs in with --login-json, %s, or a fixed --token; %s cannot be used", envLoginJSON, chosen.flags[0])
	default:
		return usagef("--auth cookie needs a login body: --login-json, %s, --token or %s", envLoginJSON, envToken)
	}
	c.source = nil // the cookie jar is the credential
	return nil
}

// jsonStrings returns every string of a decoded JSON value, at any depth:
// a login body may nest its credentials ({"user":{"password":…}}).
func jsonStrings(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case map[string]any:
		for _, e := range v {
			out = append(out, jsonStrings(e)...)
		}
	case []any:
		for _, e := range v {
			out = append(out, jsonStrings(e)...)
		}
	}
	return out
}

// setConnection takes what every handshake carries besides the
// credential, and the protocol spoken on the connection: --origin,
// --header (the values of credential-like headers are secrets),
// --subprotocol, --dialect (a name from dialects.go, one with an auth
// message for --auth first-message) and --ping.
func (c *connectConfig) setConnection(f *connectFlags) error {
	c.origin = f.origin
	if f.origin != "" {
		c.header.Set("Origin", f.origin)
	}
	for _, h := range f.headers.vals {
		if err := c.addHeader(h); err != nil {
			return err
		}
	}
	for _, sp := range f.subprotocols.vals {
		if sp == "" || strings.ContainsAny(sp, " ,\t") {
			return usagef("--subprotocol %q is not a subprotocol name", sp)
		}
		c.subprotocols = append(c.subprotocols, sp)
	}
	d, ok := dialectNamed(f.dialect)
	if !ok {
		return usagef("--dialect %q: want one of %s", f.dialect, dialectNames())
	}
	if c.auth == "first-message" && !dialects[f.dialect].authMessage {
		return usagef("--auth first-message needs a dialect with an auth message: --dialect %s has none (%s have one)", f.dialect, authMessageDialects())
	}
	c.dialect = d
	if f.ping < 0 {
		return usagef("--ping must not be negative (0 turns pings off)")
	}
	c.ping = f.ping
	return nil
}

// addHeader adds one --header 'Name: value'. A malformed one is not
// echoed in the error: without its colon it may be a bare credential.
func (c *connectConfig) addHeader(h string) error {
	k, v, ok := strings.Cut(h, ":")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" || strings.ContainsAny(k, " \t\r\n") || strings.ContainsAny(v, "\r\n") {
		return usagef("--header wants Name: value")
	}
	if sensitiveHeader(k) {
		c.scrub.Add(v)
		if _, cred, ok := strings.Cut(v, " "); ok {
			c.scrub.Add(strings.TrimSpace(cred))
		}
	}
	c.header.Add(k, v)
	return nil
}

// sensitiveHeader reports headers whose values are credentials.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"authorization", "cookie", "token", "secret", "key", "password", "session"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// setReconnect takes how the client reconnects and renews: --reauth-codes
// (the close codes that mean "fresh credentials", an override of the
// client's classification), --max-auth-failures, --backoff-initial and
// --backoff-max, --refresh-lead and --renewal.
func (c *connectConfig) setReconnect(f *connectFlags) error {
	var err error
	if c.reauthCodes, err = parseCodes(f.reauthCodes); err != nil {
		return err
	}
	if f.maxAuthFailures < 1 {
		return usagef("--max-auth-failures must be at least 1")
	}
	c.maxAuthFailures = f.maxAuthFailures
	if f.backoffInitial <= 0 || f.backoffMax < f.backoffInitial {
		return usagef("--backoff-initial must be positive and at most --backoff-max")
	}
	c.backoffInitial, c.backoffMax = f.backoffInitial, f.backoffMax
	if f.refreshLead < 0 {
		return usagef("--refresh-lead must not be negative")
	}
	c.refreshLead = f.refreshLead
	switch f.renewal {
	case "refresh":
		c.renewal = wsauth.RenewRefresh
	case "rotate":
		c.renewal = wsauth.RenewRotate
	case "reconnect":
		c.renewal = wsauth.RenewReconnect
	case "none":
		c.renewal = wsauth.RenewNone
	default:
		return usagef("--renewal %q: want refresh, rotate, reconnect or none", f.renewal)
	}
	return nil
}

// parseCodes parses --reauth-codes.
func parseCodes(s string) ([]wsauth.StatusCode, error) {
	var out []wsauth.StatusCode
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1000 || n > 4999 {
			return nil, usagef("--reauth-codes: %q is not a close code (1000-4999)", f)
		}
		out = append(out, wsauth.StatusCode(n))
	}
	return out, nil
}

// setOutput takes what the command prints: --events (stderr), --output
// (stdout) and --wait.
func (c *connectConfig) setOutput(f *connectFlags) error {
	switch f.events {
	case eventsText, eventsJSON, eventsNone:
	default:
		return usagef("--events %q: want text, json or none", f.events)
	}
	c.events = f.events
	switch f.output {
	case "text", "json":
	default:
		return usagef("--output %q: want text or json", f.output)
	}
	c.output = f.output
	if f.wait < 0 {
		return usagef("--wait must not be negative")
	}
	c.wait = f.wait
	return nil
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
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

// The --auth modes.
var authModes = []string{"ticket", "query", "first-message", "cookie", "header", "subprotocol", "none"}

// Environment variables that keep secrets off the command line (where ps
// and shell history would show them).
const (
	envToken        = "WSAUTH_TOKEN"
	envClientSecret = "WSAUTH_CLIENT_SECRET"
	envLoginJSON    = "WSAUTH_LOGIN_JSON"
)

// connectFlags are the raw flags of connect.
type connectFlags struct {
	auth string

	token, tokenFile, tokenCommand string
	tokenCommandTimeout            time.Duration
	oauthURL, clientID, secret     string
	scopes                         *listFlag

	ticketURL, loginURL *textFlag
	param               *textFlag
	loginJSON           string

	origin       string
	headers      *listFlag
	subprotocols *listFlag
	bearerPrefix string
	dialect      string
	insecure     bool
	cacert       string

	reauthCodes     string
	maxAuthFailures int
	backoffInitial  time.Duration
	backoffMax      time.Duration
	ping            time.Duration
	refreshLead     time.Duration
	renewal         string

	events string
	output string
	wait   time.Duration
}

func connectCommand() *command {
	return &command{
		name:    "connect",
		summary: "connect to a WebSocket with any credential pattern: stdin lines → messages → stdout",
		usage:   "[flags] URL",
		help: `
Connect to the WebSocket at URL (ws://, wss://) and keep the connection authenticated:
credentials are fetched before every connection attempt, refreshed before the session
ends, and the client reconnects with backoff (fresh credentials after a 1008).

Each line read from stdin is sent as one text message, only once the connection is
authenticated; lines typed while reconnecting wait and go out after the new connection
has authenticated, in order. Each message received is printed on stdout as one line:
text as it is, binary as "base64:" followed by the standard base64 of the payload
(--output json prints {"type":"text"|"binary","data":…} instead, one object a line,
which also keeps text with newlines on one line). State events go to stderr.

End of stdin closes the connection with 1000 (after the first connection, and after
--wait) and exits 0; so do SIGINT and SIGTERM. No credential is ever printed.

Exit codes: 0 clean close, 1 any other failure, 2 usage error,
3 gave up on authentication (the server refused the credentials --max-auth-failures
times in a row, or there was no fresh credential to offer).

Environment: WSAUTH_TOKEN (token when no token flag is given), WSAUTH_CLIENT_SECRET
(OAuth 2.0 client secret), WSAUTH_LOGIN_JSON (cookie login body).`,
		groups: []flagGroup{
			{"Credential pattern", []string{"auth", "ticket-url", "param", "login-url", "login-json", "subprotocol", "bearer-prefix"}},
			{"Token source (one of them)", []string{"token", "token-file", "token-command", "token-command-timeout",
				"oauth2-token-url", "client-id", "client-secret", "scope"}},
			{"Connection", []string{"origin", "header", "dialect", "cacert", "insecure", "ping"}},
			{"Reconnecting and refreshing", []string{"reauth-codes", "max-auth-failures", "backoff-initial", "backoff-max",
				"refresh-lead", "renewal"}},
			{"Output", []string{"events", "output", "wait"}},
		},
		flags: func() (*flag.FlagSet, any) {
			fs := flag.NewFlagSet("connect", flag.ContinueOnError)
			f := &connectFlags{
				scopes:       newListFlag(),
				headers:      newListFlag(),
				subprotocols: newListFlag(),
				ticketURL:    &textFlag{text: "URL's host with path /api/ws-ticket (the reference server's)"},
				loginURL:     &textFlag{text: "URL's host with path /api/login (the reference server's)"},
				param:        &textFlag{text: `"ticket" for --auth ticket, "token" for --auth query`},
			}
			fs.StringVar(&f.auth, "auth", "none", "how the credential travels, `MODE`: "+strings.Join(authModes, "|"))
			fs.StringVar(&f.token, "token", "", "the bearer `TOKEN` (prefer WSAUTH_TOKEN or --token-file: command lines are visible to other users)")
			fs.StringVar(&f.tokenFile, "token-file", "", "read the token from `FILE`, again before every connection attempt and refresh")
			fs.StringVar(&f.tokenCommand, "token-command", "", "run `CMD` with sh -c before every connection attempt and refresh; its stdout, trimmed, is the token")
			fs.DurationVar(&f.tokenCommandTimeout, "token-command-timeout", defaultTokenCommandTimeout, "kill --token-command after `D`")
			fs.StringVar(&f.oauthURL, "oauth2-token-url", "", "get tokens from this OAuth 2.0 token endpoint `URL` (client-credentials grant)")
			fs.StringVar(&f.clientID, "client-id", "", "OAuth 2.0 client `ID`")
			fs.StringVar(&f.secret, "client-secret", "", "OAuth 2.0 client `SECRET` (prefer WSAUTH_CLIENT_SECRET)")
			fs.Var(f.scopes, "scope", "OAuth 2.0 `SCOPE` to ask for; repeatable, or space-separated")
			fs.Var(f.ticketURL, "ticket-url", "ticket endpoint `URL` (--auth ticket)")
			fs.Var(f.param, "param", "query parameter `NAME` of the ticket or token (--auth ticket, query)")
			fs.Var(f.loginURL, "login-url", "login endpoint `URL` (--auth cookie)")
			fs.StringVar(&f.loginJSON, "login-json", "", "`JSON` body POSTed to --login-url, e.g. '{\"username\":\"demo\",\"password\":\"…\"}'; prefer WSAUTH_LOGIN_JSON.\nWithout it, --auth cookie logs in with {\"token\":…} from --token or WSAUTH_TOKEN")
			fs.Var(f.subprotocols, "subprotocol", "application `SUBPROTOCOL` to offer; repeatable, in order of preference")
			fs.StringVar(&f.bearerPrefix, "bearer-prefix", wsauth.KubernetesBearerPrefix, "`PREFIX` of the token's Sec-WebSocket-Protocol entry (--auth subprotocol); Phoenix uses "+wsauth.PhoenixBearerPrefix)
			fs.StringVar(&f.origin, "origin", "", "send `ORIGIN` as the Origin header (cookie-authenticated servers check it)")
			fs.Var(f.headers, "header", "add `'K: V'` to the handshake; repeatable")
			fs.StringVar(&f.dialect, "dialect", defaultDialect, "message shapes of the server's protocol, `NAME`: "+dialectNames())
			fs.StringVar(&f.cacert, "cacert", "", "trust the PEM root certificates in `FILE` (with the system's) for wss:// and https://")
			fs.BoolVar(&f.insecure, "insecure", false, "allow credentials over plain ws:// or http:// to a host that is not loopback (TLS verification is never turned off; see --cacert)")
			fs.DurationVar(&f.ping, "ping", defaultPing, "ping the server every `D` to notice dead connections; 0 turns pings off")
			fs.StringVar(&f.reauthCodes, "reauth-codes", "1008", "close `CODES` (comma-separated) that mean \"get fresh credentials\", e.g. 1008,4401,4403; 1008 always does")
			fs.IntVar(&f.maxAuthFailures, "max-auth-failures", defaultMaxAuthFailures, "give up (exit 3) after `N` consecutive credential rejections")
			fs.DurationVar(&f.backoffInitial, "backoff-initial", defaultBackoffInitial, "first ceiling `D` of the reconnect delay (full jitter: random between 0 and the ceiling, which doubles)")
			fs.DurationVar(&f.backoffMax, "backoff-max", defaultBackoffMax, "largest ceiling `D` of the reconnect delay")
			fs.DurationVar(&f.refreshLead, "refresh-lead", 0, "start renewing the session `D` before it expires; 0: a fifth of its lifetime, at least 2s")
			fs.StringVar(&f.renewal, "renewal", "refresh", "how the session is renewed before it expires: `HOW` = refresh|rotate|reconnect|none")
			fs.StringVar(&f.events, "events", eventsText, "state events on stderr: `FORMAT` = text|json|none")
			fs.StringVar(&f.output, "output", "text", "received messages on stdout: `FORMAT` = text|json")
			fs.DurationVar(&f.wait, "wait", 0, "after end of stdin, keep printing received messages for `D` before closing")
			return fs, f
		},
		run: func(ctx context.Context, cfg any, args []string, s stdio) int {
			cc, err := newConnectConfig(cfg.(*connectFlags), args, s)
			if err != nil {
				return fail(s, "connect", err)
			}
			return runConnect(ctx, cc, s)
		},
	}
}

// The command's defaults: the client's own, spelled out so that the help
// shows them.
const (
	defaultPing            = 25 * time.Second
	defaultMaxAuthFailures = 5
	defaultBackoffInitial  = 500 * time.Millisecond
	defaultBackoffMax      = 30 * time.Second
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

// parseConnect parses connect's command line; for tests.
func parseConnect(args []string, s stdio) (*connectConfig, error) {
	fs, f := connectCommand().flags()
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return newConnectConfig(f.(*connectFlags), pos, s)
}

// newConnectConfig checks the flags and builds the configuration. Every
// error it returns is a usage error except an unreadable --cacert.
func newConnectConfig(f *connectFlags, args []string, s stdio) (*connectConfig, error) {
	getenv := s.getenv
	c := &connectConfig{scrub: &scrubber{}, header: http.Header{}}
	switch len(args) {
	case 0:
		return nil, usagef("missing the WebSocket URL")
	case 1:
	default:
		return nil, usagef("one URL expected, got %d arguments: %q", len(args), args)
	}
	u, err := url.Parse(args[0])
	if err != nil {
		// url.Parse quotes its input, which may hold a token.
		return nil, usagef("the URL does not parse")
	}
	// A token written into the URL is a secret like any other.
	c.scrub.AddURL(u)
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return nil, usagef("URL must start with ws://, wss://, http:// or https://, got %s", c.scrub.URL(u))
	}
	if u.Host == "" {
		return nil, usagef("URL %s has no host", c.scrub.URL(u))
	}
	c.url = u

	if !slices.Contains(authModes, f.auth) {
		return nil, usagef("--auth %q: want one of %s", f.auth, strings.Join(authModes, ", "))
	}
	c.auth = f.auth

	if f.cacert != "" {
		pem, err := os.ReadFile(f.cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", f.cacert)
		}
		c.tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}

	// Token sources: at most one flag; the environment only when no flag
	// chose.
	var chosen []string
	if f.token != "" {
		chosen = append(chosen, "--token")
	}
	if f.tokenFile != "" {
		chosen = append(chosen, "--token-file")
	}
	if f.tokenCommand != "" {
		chosen = append(chosen, "--token-command")
	}
	if f.oauthURL != "" {
		chosen = append(chosen, "--oauth2-token-url")
	}
	if len(chosen) > 1 {
		return nil, usagef("%s: give one token source", strings.Join(chosen, " and "))
	}
	if f.oauthURL == "" && (f.clientID != "" || f.secret != "" || len(f.scopes.vals) > 0) {
		return nil, usagef("--client-id, --client-secret and --scope go with --oauth2-token-url")
	}
	if f.tokenCommandTimeout <= 0 {
		return nil, usagef("--token-command-timeout must be positive")
	}
	envTok := strings.TrimSpace(getenv(envToken))
	needsToken := c.auth != "none" && c.auth != "cookie"
	switch {
	case f.token != "":
		c.source = staticSource("--token", f.token, c.scrub)
	case f.tokenFile != "":
		c.source = fileSource(f.tokenFile, c.scrub)
	case f.tokenCommand != "":
		c.source = commandSource(f.tokenCommand, f.tokenCommandTimeout, s.err, c.scrub)
	case f.oauthURL != "":
		ou, err := url.Parse(f.oauthURL)
		if err != nil || (ou.Scheme != "http" && ou.Scheme != "https") || ou.Host == "" {
			return nil, usagef("--oauth2-token-url %q is not an http(s) URL", f.oauthURL)
		}
		secret := f.secret
		if secret == "" {
			secret = getenv(envClientSecret)
		}
		if f.clientID == "" || secret == "" {
			return nil, usagef("--oauth2-token-url needs --client-id and a secret (--client-secret or %s)", envClientSecret)
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
	case envTok != "" && needsToken:
		c.source = staticSource(envToken, envTok, c.scrub)
	}
	switch {
	case c.auth == "none" && len(chosen) > 0:
		return nil, usagef("%s given with --auth none: choose how the token travels with --auth (%s)", chosen[0], strings.Join(authModes[:6], ", "))
	case needsToken && c.source == nil:
		return nil, usagef("--auth %s needs a token: --token, --token-file, --token-command, --oauth2-token-url or %s", c.auth, envToken)
	}

	// Pattern-specific flags.
	base := *u
	base.RawQuery, base.Fragment, base.User = "", "", nil
	switch base.Scheme {
	case "ws":
		base.Scheme = "http"
	case "wss":
		base.Scheme = "https"
	}
	endpoint := func(flagName, v, path string) (string, error) {
		if v == "" {
			e := base
			e.Path, e.RawPath = path, ""
			return e.String(), nil
		}
		pu, err := url.Parse(v)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return "", usagef("%s %q is not an http(s) URL", flagName, v)
		}
		return v, nil
	}
	if f.ticketURL.val != "" && c.auth != "ticket" {
		return nil, usagef("--ticket-url goes with --auth ticket")
	}
	if f.param.val != "" && c.auth != "ticket" && c.auth != "query" {
		return nil, usagef("--param goes with --auth ticket or --auth query")
	}
	if (f.loginURL.val != "" || f.loginJSON != "") && c.auth != "cookie" {
		return nil, usagef("--login-url and --login-json go with --auth cookie")
	}
	c.param = f.param.val
	switch c.auth {
	case "ticket":
		if c.ticketURL, err = endpoint("--ticket-url", f.ticketURL.val, "/api/ws-ticket"); err != nil {
			return nil, err
		}
	case "cookie":
		if c.loginURL, err = endpoint("--login-url", f.loginURL.val, "/api/login"); err != nil {
			return nil, err
		}
		body := f.loginJSON
		if body == "" {
			body = getenv(envLoginJSON)
		}
		switch {
		case body != "" && len(chosen) > 0:
			return nil, usagef("--auth cookie logs in with a login body or with %s, not both", chosen[0])
		case body != "":
			var obj map[string]any
			if json.Unmarshal([]byte(body), &obj) != nil {
				return nil, usagef("--login-json must be a JSON object")
			}
			for _, v := range obj {
				if s, ok := v.(string); ok {
					c.scrub.Add(s)
				}
			}
			c.loginBody = []byte(body)
		case f.token != "" || (len(chosen) == 0 && envTok != ""):
			// The reference server's login also takes a bearer token.
			tok := f.token
			if tok == "" {
				tok = envTok
			}
			c.scrub.Add(tok)
			c.loginBody, _ = json.Marshal(map[string]string{"token": tok})
		case len(chosen) > 0:
			return nil, usagef("--auth cookie logs in with --login-json, %s, or a fixed --token; %s cannot be used", envLoginJSON, chosen[0])
		default:
			return nil, usagef("--auth cookie needs a login body: --login-json, %s, --token or %s", envLoginJSON, envToken)
		}
		c.source = nil // the cookie jar is the credential
	}
	if f.bearerPrefix == "" {
		return nil, usagef("--bearer-prefix must not be empty")
	}
	c.bearerPrefix = f.bearerPrefix

	c.origin = f.origin
	if f.origin != "" {
		c.header.Set("Origin", f.origin)
	}
	for _, h := range f.headers.vals {
		k, v, ok := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.ContainsAny(k, " \t\r\n") || strings.ContainsAny(v, "\r\n") {
			return nil, usagef("--header %q: want 'Name: value'", h)
		}
		if sensitiveHeader(k) {
			c.scrub.Add(v)
			if _, cred, ok := strings.Cut(v, " "); ok {
				c.scrub.Add(strings.TrimSpace(cred))
			}
		}
		c.header.Add(k, v)
	}
	for _, sp := range f.subprotocols.vals {
		if sp == "" || strings.ContainsAny(sp, " ,\t") {
			return nil, usagef("--subprotocol %q is not a subprotocol name", sp)
		}
		c.subprotocols = append(c.subprotocols, sp)
	}
	d, ok := dialectNamed(f.dialect)
	if !ok {
		return nil, usagef("--dialect %q: want one of %s", f.dialect, dialectNames())
	}
	c.dialect = d
	c.insecure = f.insecure

	if c.reauthCodes, err = parseCodes(f.reauthCodes); err != nil {
		return nil, err
	}
	if f.maxAuthFailures < 1 {
		return nil, usagef("--max-auth-failures must be at least 1")
	}
	c.maxAuthFailures = f.maxAuthFailures
	if f.backoffInitial <= 0 || f.backoffMax < f.backoffInitial {
		return nil, usagef("--backoff-initial must be positive and at most --backoff-max")
	}
	c.backoffInitial, c.backoffMax = f.backoffInitial, f.backoffMax
	if f.ping < 0 {
		return nil, usagef("--ping must not be negative (0 turns pings off)")
	}
	c.ping = f.ping
	if f.refreshLead < 0 {
		return nil, usagef("--refresh-lead must not be negative")
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
		return nil, usagef("--renewal %q: want refresh, rotate, reconnect or none", f.renewal)
	}
	switch f.events {
	case eventsText, eventsJSON, eventsNone:
	default:
		return nil, usagef("--events %q: want text, json or none", f.events)
	}
	c.events = f.events
	switch f.output {
	case "text", "json":
	default:
		return nil, usagef("--output %q: want text or json", f.output)
	}
	c.output = f.output
	if f.wait < 0 {
		return nil, usagef("--wait must not be negative")
	}
	c.wait = f.wait

	return c, nil
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

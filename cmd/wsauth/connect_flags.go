package main

import (
	"context"
	"flag"
	"strings"
	"time"

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
3 gave up on authentication (--max-auth-failures refusals of the credentials with no
connection between them that stayed up 10s or that the server ended as an accepted
session; no fresh credential to offer after a refusal counts as one).

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
			fs.IntVar(&f.maxAuthFailures, "max-auth-failures", defaultMaxAuthFailures, "give up (exit 3) after `N` credential refusals, counted until a connection stays up 10s or the server ends an accepted session")
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

// parseConnect parses connect's command line; for tests.
func parseConnect(args []string, s stdio) (*connectConfig, error) {
	fs, f := connectCommand().flags()
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return newConnectConfig(f.(*connectFlags), pos, s)
}

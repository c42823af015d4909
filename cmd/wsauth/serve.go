package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/internal/redact"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/server/redisstore"
)

// envSecret keeps the HMAC key off the command line.
const envSecret = "WSAUTH_SECRET"

// envRedisURL keeps a Redis URL, which may hold a password, off the command line.
const envRedisURL = "WSAUTH_REDIS_URL"

// redisPingTimeout bounds the check of Redis at start, which only decides what is logged.
const redisPingTimeout = 2 * time.Second

// Demo accounts of serve, documented defaults: a loopback demo server needs
// credentials that a newcomer can type.
const (
	defaultUser   = "demo:demo-password"
	defaultClient = "demo-client:demo-client-secret"
)

const (
	defaultServeAddr  = "127.0.0.1:8080"
	defaultServeSubpr = "chat.v1"
	defaultTokenTTL   = time.Hour
	// The token printed at start when the key is random, and its subject
	// (also `wsauth token`'s default subject).
	printedTokenTTL = 24 * time.Hour
	printedTokenSub = "demo"
	// minSecretLen is server.NewHMACIssuer's minimum key length.
	minSecretLen    = 16
	healthPath      = "/healthz"
	shutdownTimeout = 10 * time.Second
)

type serveFlags struct {
	addr          string
	origins       *listFlag
	subprotocols  *listFlag
	users         *listFlag
	clients       *listFlag
	sessionTTL    time.Duration
	ticketTTL     time.Duration
	tokenTTL      time.Duration
	expiryNotice  time.Duration
	secret        *textFlag
	redis         *textFlag
	tlsCert       string
	tlsKey        string
	testControls  bool
	logFormat     string
	logLevel      string
	noRateLimits  bool
	authTimeout   time.Duration
	maxPreAuthPer int

	trustedProxies  *listFlag
	maxConnsPerIP   int
	maxConns        int
	maxPerPrincipal int
	pingInterval    time.Duration
	pongTimeout     time.Duration
	headerTimeout   time.Duration
	idleTimeout     time.Duration
}

// Connection caps of serve, documented defaults. A cap per principal is
// on here although package server leaves it off by default: a demo server
// reachable by others must not let one token take every socket.
const (
	defaultMaxConnsPerIP   = 100
	defaultMaxConns        = 1000
	defaultMaxPerPrincipal = 100
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "run the reference server: echo application, every credential pattern",
		usage:   "[flags]",
		help: `
Run the reference server (package server) with an echo application: every message a
client sends after authenticating comes back to it. All six patterns are enabled
(header, subprotocol, ticket, query, cookie, first message), with the ticket endpoint
POST /api/ws-ticket, cookie login POST /api/login and logout POST /api/logout, and the
OAuth 2.0 client-credentials endpoint POST /oauth/token. GET /healthz answers 200.

Tokens are HMAC-signed with --secret (or WSAUTH_SECRET); mint them with 'wsauth token'.
Without a secret a random key is generated, never printed, and a token for the user
"demo" (valid 24h) is printed at start instead.

The first line on stdout is "wsauth serve: listening on http(s)://ADDRESS"; --addr with
port 0 picks a free port, and that line says which. Logs go to stderr (log/slog),
without credentials; each connection's end is logged as "connection ended" with the
close code the client sent. SIGINT or SIGTERM closes every WebSocket with 1001 and
exits 0.

Hardening (see package server's NewHTTPServer and ConnLimiter): a connection
has --read-header-timeout for its TLS handshake and headers, and an idle
keep-alive connection is closed after --idle-timeout. At most --max-conns-per-ip
TCP connections per client IP and --max-conns in all, of every kind (idle,
handshaking, waiting for auth, WebSockets); over a cap a connection gets 503
with Retry-After and is closed. Cookie handshakes need an Origin header. A
silent WebSocket is pinged after --ping-interval and closed (1001 "Ping
timeout") when it does not answer within --pong-timeout. Behind a reverse
proxy, list it with --trusted-proxy: its X-Forwarded-For or Forwarded header
then names the client for the limits, and its proto the scheme of the Origin
check.

Several instances: with --redis URL (or WSAUTH_REDIS_URL, better for a URL
with a password) the tickets, cookie sessions, revocations, the rate limits
(per IP and per account) and the per-principal cap live in Redis and are
shared by every serve on it: a ticket minted by one is redeemed on another,
once; a revoke on one closes the sockets on all. --secret (or WSAUTH_SECRET)
is then required, the same on every instance, so that each verifies the
others' tokens. Redis need not be up at start. While it cannot be reached,
ticket and cookie handshakes and the ticket, login and logout endpoints get
503 with Retry-After: 2 (fail closed), established connections go on, and
service resumes by itself when Redis is back. See docs/redis.md.

Not for production: the accounts below are demo defaults, and --test-controls lets
anyone who can reach the server close or revoke connections.`,
		groups: []flagGroup{
			{"Listening", []string{"addr", "tls-cert", "tls-key", "origin", "subprotocol", "trusted-proxy", "max-conns-per-ip", "max-conns", "read-header-timeout", "idle-timeout"}},
			{"Credentials", []string{"secret", "user", "client", "token-ttl"}},
			{"Sessions", []string{"session-ttl", "ticket-ttl", "expiry-notice", "auth-timeout", "no-rate-limits", "max-pre-auth", "max-conns-per-principal", "ping-interval", "pong-timeout"}},
			{"Several instances", []string{"redis"}},
			{"Tests and logs", []string{"test-controls", "log-format", "log-level"}},
		},
		flags: func() (*flag.FlagSet, any) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			f := &serveFlags{
				origins:      newListFlag(),
				subprotocols: newListFlag(defaultServeSubpr),
				users:        newListFlag(defaultUser),
				clients:      newListFlag(defaultClient),
				secret:       &textFlag{text: "WSAUTH_SECRET, else a random key that is never shown, and a demo token is printed"},
				redis:        &textFlag{text: "WSAUTH_REDIS_URL, else none: everything stays in this process"},

				trustedProxies: newListFlag(),
			}
			fs.StringVar(&f.addr, "addr", defaultServeAddr, "listen on `HOST:PORT`; port 0 picks a free one")
			fs.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS (https, wss) with the PEM certificate chain in `FILE`; needs --tls-key")
			fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key `FILE` of --tls-cert")
			fs.Var(f.origins, "origin", "exact browser `ORIGIN` (scheme://host[:port]) allowed besides the server's own; repeatable")
			fs.Var(f.subprotocols, "subprotocol", "application `SUBPROTOCOL` the server may select; repeatable")
			fs.Var(f.secret, "secret", "HMAC key `KEY` of the tokens, at least 16 bytes (prefer WSAUTH_SECRET: command lines are visible to other users)")
			fs.Var(f.redis, "redis", "share tickets, sessions, revocations and limits with the other instances through Redis at `URL` (redis://[:PASSWORD@]HOST:PORT/DB, rediss://…, unix:///PATH); needs --secret (prefer WSAUTH_REDIS_URL for a URL with a password)")
			fs.Var(f.users, "user", "cookie-login account `NAME:PASSWORD`; repeatable")
			fs.Var(f.clients, "client", "OAuth 2.0 client `ID:SECRET` for POST /oauth/token; repeatable")
			fs.DurationVar(&f.tokenTTL, "token-ttl", defaultTokenTTL, "lifetime `D` of tokens from POST /oauth/token")
			fs.DurationVar(&f.sessionTTL, "session-ttl", time.Hour, "lifetime `D` of an authenticated connection unless refreshed; negative: only the token's expiry")
			fs.DurationVar(&f.ticketTTL, "ticket-ttl", 30*time.Second, "lifetime `D` of a ticket")
			fs.DurationVar(&f.expiryNotice, "expiry-notice", 0, "send {\"type\":\"expiring\"} `D` before a session ends; 0: never")
			fs.DurationVar(&f.authTimeout, "auth-timeout", 5*time.Second, "how long an upgraded connection may take to authenticate, `D`, on every pattern (for first-message, to send its auth message); also bounds the ticket and cookie store lookups")
			fs.BoolVar(&f.noRateLimits, "no-rate-limits", false, "turn off the rate limits of handshakes, tickets, logins (per IP and per account) and refreshes (load tests; the connection caps have their own flags)")
			fs.IntVar(&f.maxPreAuthPer, "max-pre-auth", 16, "connections per IP that may wait for their auth message at once, `N`")
			fs.Var(f.trustedProxies, "trusted-proxy", "reverse proxy `CIDR` (or IP) whose X-Forwarded-For/Forwarded names the client; repeatable")
			fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", defaultMaxConnsPerIP, "TCP connections one client IP may hold at once, `N`; -1: no cap")
			fs.IntVar(&f.maxConns, "max-conns", defaultMaxConns, "TCP connections the server holds at once, `N`; -1: no cap")
			fs.IntVar(&f.maxPerPrincipal, "max-conns-per-principal", defaultMaxPerPrincipal, "authenticated connections one subject may hold at once, `N`; -1: no cap")
			fs.DurationVar(&f.pingInterval, "ping-interval", 30*time.Second, "ping a WebSocket silent for `D`; negative: never")
			fs.DurationVar(&f.pongTimeout, "pong-timeout", 15*time.Second, "close a pinged WebSocket that does not answer within `D`")
			fs.DurationVar(&f.headerTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time `D` a connection has for its TLS handshake and request headers")
			fs.DurationVar(&f.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a keep-alive connection idle for `D`")
			fs.BoolVar(&f.testControls, "test-controls", false, "mount the fault hooks under /control/ (close-all, revoke, expire, refuse, pause, going-away); tests only")
			fs.StringVar(&f.logFormat, "log-format", "text", "log `FORMAT` on stderr: text|json")
			fs.StringVar(&f.logLevel, "log-level", "info", "log `LEVEL`: debug|info|warn|error")
			return fs, f
		},
		run: func(ctx context.Context, cfg any, args []string, s stdio) int {
			if len(args) > 0 {
				return fail(s, "serve", usagef("takes no arguments, got %q", args))
			}
			return runServe(ctx, cfg.(*serveFlags), s)
		},
	}
}

// serveSetup is what runServe needs, built and checked from the flags.
type serveSetup struct {
	cfg         server.Config
	issuer      *server.HMACIssuer
	randomKey   bool
	tlsCert     *tls.Certificate
	log         *slog.Logger
	defaultUser bool
	limiter     *server.ConnLimiter

	// redisOpt, with --redis, is the client of the shared stores; redisShown is the URL
	// without its password, for the banner and the log, and redisScrub holds the password
	// in case go-redis ever quotes it.
	redisOpt   *redis.Options
	redisShown string
	redisScrub *redact.Set
}

func newServeSetup(f *serveFlags, s stdio) (*serveSetup, error) {
	st := &serveSetup{}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		st.log = slog.New(slog.NewTextHandler(s.err, opts))
	case "json":
		st.log = slog.New(slog.NewJSONHandler(s.err, opts))
	default:
		return nil, usagef("--log-format %q: want text or json", f.logFormat)
	}

	secret := f.secret.val
	if secret == "" {
		secret = s.getenv(envSecret)
	}
	key := []byte(secret)
	if secret == "" {
		key, st.randomKey = server.RandomKey(), true
	} else if len(key) < minSecretLen {
		return nil, usagef("--secret must be at least %d bytes", minSecretLen)
	}
	iss, err := server.NewHMACIssuer(key)
	if err != nil {
		return nil, usagef("--secret: %v", err)
	}
	st.issuer = iss

	redisURL := f.redis.val
	if redisURL == "" {
		redisURL = s.getenv(envRedisURL)
	}
	if redisURL != "" {
		if st.randomKey {
			return nil, usagef("--redis needs --secret or %s, the same on every instance: each must verify the tokens the others issue", envSecret)
		}
		opt, err := redisstore.ParseURL(redisURL) // its errors never quote the URL
		if err != nil {
			return nil, usagef("--redis or %s: %v", envRedisURL, err)
		}
		st.redisOpt, st.redisShown = opt, shownRedisURL(redisURL)
		st.redisScrub = &redact.Set{}
		st.redisScrub.Add(opt.Password)
	}

	users, err := pairs("--user", f.users.vals)
	if err != nil {
		return nil, err
	}
	st.defaultUser = !f.users.set
	clients, err := pairs("--client", f.clients.vals)
	if err != nil {
		return nil, err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		st.tlsCert = &cert
	}
	if f.ticketTTL <= 0 || f.tokenTTL <= 0 || f.authTimeout <= 0 {
		return nil, usagef("--ticket-ttl, --token-ttl and --auth-timeout must be positive")
	}
	if f.sessionTTL == 0 || f.expiryNotice < 0 {
		return nil, usagef("--session-ttl must not be 0 (negative: only the token's expiry), --expiry-notice not negative")
	}
	if f.maxPreAuthPer < 1 {
		return nil, usagef("--max-pre-auth must be at least 1")
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"--max-conns-per-ip", f.maxConnsPerIP}, {"--max-conns", f.maxConns}, {"--max-conns-per-principal", f.maxPerPrincipal}} {
		if n.v == 0 || n.v < -1 {
			return nil, usagef("%s must be at least 1, or -1 for no cap", n.name)
		}
	}
	if f.pingInterval == 0 || f.pongTimeout <= 0 {
		return nil, usagef("--ping-interval must not be 0 (negative: never), --pong-timeout must be positive")
	}
	if f.headerTimeout <= 0 || f.idleTimeout <= 0 {
		return nil, usagef("--read-header-timeout and --idle-timeout must be positive")
	}
	lim, err := server.NewConnLimiter(server.ConnLimits{
		MaxPerIP:       f.maxConnsPerIP,
		MaxTotal:       f.maxConns,
		TrustedProxies: f.trustedProxies.vals,
	})
	if err != nil {
		return nil, usagef("--trusted-proxy: %v", err)
	}
	st.limiter = lim

	st.cfg = server.Config{
		Verifier:        iss,
		Issuer:          iss,
		Handler:         echoLogged(st.log),
		AllowedOrigins:  f.origins.vals,
		Subprotocols:    f.subprotocols.vals,
		Users:           users,
		Clients:         clients,
		TicketTTL:       f.ticketTTL,
		TokenTTL:        f.tokenTTL,
		SessionTTL:      f.sessionTTL,
		ExpiryNotice:    f.expiryNotice,
		AuthTimeout:     f.authTimeout,
		MaxPreAuthPerIP: f.maxPreAuthPer,
		TestControls:    f.testControls,
		Logger:          st.log,

		TrustedProxies:       f.trustedProxies.vals,
		MaxConnsPerPrincipal: f.maxPerPrincipal,
		PingInterval:         f.pingInterval,
		PongTimeout:          f.pongTimeout,
	}
	if f.noRateLimits {
		st.cfg.HandshakeRate, st.cfg.TicketRate, st.cfg.LoginRate, st.cfg.RefreshRate = -1, -1, -1, -1
		st.cfg.LoginAccountRate = -1
	}
	return st, nil
}

// pairs parses NAME:SECRET flags.
func pairs(flagName string, vals []string) (map[string]string, error) {
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		name, secret, ok := strings.Cut(v, ":")
		if !ok || name == "" || secret == "" {
			return nil, usagef("%s wants NAME:SECRET", flagName)
		}
		m[name] = secret
	}
	return m, nil
}

func runServe(ctx context.Context, f *serveFlags, s stdio) int {
	st, err := newServeSetup(f, s)
	if err != nil {
		return fail(s, "serve", err)
	}
	if st.redisOpt != nil {
		// Closed after srv, on every way out: the server's last calls (slot releases,
		// leaving the cluster) go to Redis.
		rdb := st.connectRedis(ctx)
		defer rdb.Close()
	}
	srv, err := server.New(st.cfg)
	if err != nil {
		return fail(s, "serve", usagef("%v", err))
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		srv.Close()
		return fail(s, "serve", err)
	}
	scheme := "http"
	if st.tlsCert != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*st.tlsCert}, MinVersion: tls.VersionTLS12})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+healthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("/", srv)
	// Timeouts and connection caps: the limiter sees the TCP connection under
	// TLS, so a WebSocket holds its slot until its socket closes.
	hs := server.NewHTTPServer(mux, st.limiter)
	hs.ReadHeaderTimeout, hs.IdleTimeout = f.headerTimeout, f.idleTimeout
	// Failed TLS handshakes and the like, at debug level.
	hs.ErrorLog = slog.NewLogLogger(st.log.Handler(), slog.LevelDebug)
	base := scheme + "://" + ln.Addr().String()
	printBanner(s.out, st, f, base)
	attrs := []any{"addr", ln.Addr().String(), "tls", st.tlsCert != nil,
		"test_controls", f.testControls, "origins", strings.Join(f.origins.vals, ",")}
	if st.redisOpt != nil {
		attrs = append(attrs, "redis", st.redisShown)
	}
	st.log.Info("listening", attrs...)

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err = <-served:
		srv.Close()
		st.log.Error("serving failed", "error", err.Error())
		return exitFailure
	case <-ctx.Done():
	}
	st.log.Info("shutting down")
	// Close the WebSockets first (1001): http.Server.Shutdown does not know
	// hijacked connections and would wait for nothing or forever.
	srv.Close()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		st.log.Warn("shutdown", "error", err.Error())
		hs.Close()
	}
	<-served
	st.log.Info("stopped")
	return exitOK
}

// printBanner tells a human on stdout where everything is. It prints a
// credential only when it is the demo's own: the token of a random key,
// and the default demo password, which is documented anyway.
func printBanner(w io.Writer, st *serveSetup, f *serveFlags, base string) {
	ws := strings.Replace(strings.Replace(base, "https://", "wss://", 1), "http://", "ws://", 1)
	fmt.Fprintf(w, "wsauth serve: listening on %s\n", base)
	fmt.Fprintf(w, "  websocket      %s/ws\n", ws)
	fmt.Fprintf(w, "  ticket         POST %s/api/ws-ticket  (Authorization: Bearer TOKEN)\n", base)
	if st.defaultUser {
		fmt.Fprintf(w, "  cookie login   POST %s/api/login  {\"username\":\"demo\",\"password\":\"demo-password\"}\n", base)
	} else {
		fmt.Fprintf(w, "  cookie login   POST %s/api/login  users: %s\n", base, strings.Join(sortedKeys(st.cfg.Users), ", "))
	}
	fmt.Fprintf(w, "  oauth2 token   POST %s/oauth/token  clients: %s\n", base, strings.Join(sortedKeys(st.cfg.Clients), ", "))
	if st.redisOpt != nil {
		fmt.Fprintf(w, "  redis          %s  (tickets, sessions, revocations and limits shared with the other instances)\n", st.redisShown)
	}
	if f.testControls {
		fmt.Fprintf(w, "  test controls  POST %s/control/{close-all,revoke,unrevoke,expire,refuse,pause,going-away}\n", base)
	}
	if st.randomKey {
		tok, err := st.issuer.Issue(printedTokenSub, printedTokenTTL)
		if err == nil {
			fmt.Fprintf(w, "  demo token     %s\n", tok)
			fmt.Fprintf(w, "                 (subject %q, valid %s; the signing key is random and not shown: use --secret to mint your own)\n", printedTokenSub, printedTokenTTL)
		}
	}
	fmt.Fprintf(w, "  try            wsauth connect --auth ticket --token TOKEN %s/ws\n", ws)
}

// connectRedis makes the Redis client and lets redisstore configure the server with it. An
// unreachable Redis is logged, not fatal: go-redis reconnects by itself, and until then the
// server answers what needs Redis with 503 and Retry-After.
func (st *serveSetup) connectRedis(ctx context.Context) *redis.Client {
	lg := slog.New(scrubHandler{st.log.Handler(), st.redisScrub})
	// go-redis logs failed dials and pool trouble through a global logger, to stderr by
	// default: into the log instead, at debug level (redisstore logs what matters).
	redis.SetLogger(redisLogger{lg})
	rdb := redis.NewClient(st.redisOpt)
	redisstore.New(rdb, &redisstore.Options{Logger: lg}).Configure(&st.cfg)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		lg.Warn("redis unavailable: ticket and cookie handshakes, tickets, logins and logouts get 503 until it answers",
			"redis", st.redisShown, "error", err)
	} else {
		lg.Info("redis connected", "redis", st.redisShown)
	}
	return rdb
}

// shownRedisURL is a Redis URL as the banner and the log show it: its password replaced
// and its query left out. ParseURL has accepted the URL already.
func shownRedisURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(redis)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

// redisLogger is go-redis's global logger, writing to the serve log at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis", "message", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// scrubHandler removes the Redis password from the records of redisstore and go-redis,
// which quote go-redis's errors and messages. None is known to hold the password; the log
// is not where to find out.
type scrubHandler struct {
	h   slog.Handler
	set *redact.Set
}

func (s scrubHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.h.Enabled(ctx, l) }

func (s scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, s.set.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(s.attr(a))
		return true
	})
	return s.h.Handle(ctx, out)
}

func (s scrubHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = s.attr(a)
	}
	return scrubHandler{s.h.WithAttrs(out), s.set}
}

func (s scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{s.h.WithGroup(name), s.set}
}

// attr scrubs the text of a: strings, and anything else printed as text (errors).
func (s scrubHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, s.set.String(v.String()))
	case slog.KindAny:
		return slog.String(a.Key, s.set.String(fmt.Sprint(v.Any())))
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = s.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// echoLogged is the echo application, logging how each connection ended:
// the close code the client sent (or echoed, when the server closed first).
// That line is how a test sees a client's clean 1000.
func echoLogged(lg *slog.Logger) server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		p := c.Principal()
		lg.Info("connection started", "subject", p.Subject, "method", string(p.Method), "remote", c.RemoteAddr(),
			"subprotocol", c.Subprotocol())
		var err error
		for {
			var typ websocket.MessageType
			var data []byte
			// Not ctx: Read with the connection's own end is certain to
			// return the read error, which carries the peer's close code.
			typ, data, err = c.Read(context.Background())
			if err != nil {
				break
			}
			if c.Write(ctx, typ, data) != nil {
				// A failed write closes the connection; the read error
				// that follows says how.
				for err == nil {
					_, _, err = c.Read(context.Background())
				}
				break
			}
		}
		attrs := []any{"subject", p.Subject, "method", string(p.Method), "remote", c.RemoteAddr()}
		if code := websocket.CloseStatus(err); code != -1 {
			attrs = append(attrs, "close_code", int(code))
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Reason != "" {
				attrs = append(attrs, "close_reason", ce.Reason)
			}
		} else {
			attrs = append(attrs, "error", err.Error())
		}
		lg.Info("connection ended", attrs...)
	})
}

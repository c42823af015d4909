package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Method names one of the six ways a client proves who it is on the handshake.
type Method string

// The six authentication patterns, in the order the server looks for them.
const (
	// MethodHeader is "Authorization: Bearer <token>" on the handshake (non-browser clients).
	MethodHeader Method = "header"
	// MethodSubprotocol is a bearer token inside Sec-WebSocket-Protocol (non-browser clients).
	MethodSubprotocol Method = "subprotocol"
	// MethodTicket is a single-use ticket from the ticket endpoint in the query string.
	MethodTicket Method = "ticket"
	// MethodQuery is a bearer token in the query string.
	MethodQuery Method = "query"
	// MethodCookie is the session cookie set by the login endpoint.
	MethodCookie Method = "cookie"
	// MethodFirstMessage is {"type":"auth","token":"…"} as the first message after the upgrade.
	MethodFirstMessage Method = "first-message"
)

// AllMethods returns the six methods in the order the handshake looks for them.
func AllMethods() []Method {
	return []Method{MethodHeader, MethodSubprotocol, MethodTicket, MethodQuery, MethodCookie, MethodFirstMessage}
}

// Stage says which part of the server an AuthEvent comes from.
type Stage string

// The stages that report AuthEvents.
const (
	// StageHandshake is a WebSocket handshake and its authentication.
	StageHandshake Stage = "handshake"
	// StageRefresh is a refresh message on an authenticated connection.
	StageRefresh Stage = "refresh"
	// StageTicket is a request to the ticket endpoint.
	StageTicket Stage = "ticket"
	// StageLogin is a request to the login endpoint.
	StageLogin Stage = "login"
	// StageToken is a request to the OAuth 2.0 token endpoint.
	StageToken Stage = "token"
)

// AuthEvent describes one authentication decision, a success or a refusal. It never carries a
// secret.
type AuthEvent struct {
	// Time is when the decision was made.
	Time time.Time
	// Stage is the part of the server that decided.
	Stage Stage
	// RemoteAddr is the peer's address as the HTTP server saw it (ip:port).
	RemoteAddr string
	// ClientIP is the IP the rate limits and caps counted the request against: the peer's,
	// or the client a trusted proxy forwarded for (Config.TrustedProxies).
	ClientIP string
	// Method is the authentication pattern, when known (handshake and refresh stages).
	Method Method
	// Subject is the principal, when known.
	Subject string
	// OK reports a success.
	OK bool
	// Reason is the close reason sent to the client, or the HTTP status text when the request
	// was answered without an upgrade; for successes a short description.
	Reason string
	// Detail is the server's own view of why, for logs and tests (for example "origin not
	// allowed" behind a 403 "Forbidden"); it never quotes the credential.
	Detail string
	// Status is the HTTP status when the request was refused before an upgrade, else 0.
	Status int
	// Code is the WebSocket close code when the connection was refused after the upgrade,
	// else 0.
	Code websocket.StatusCode
}

// Config configures a Server. Only Verifier and Handler are required; every other field has
// a default, given in its comment.
type Config struct {
	// Verifier checks bearer tokens for every pattern and for refreshes. Required.
	Verifier Verifier
	// Handler serves authenticated connections. Required.
	Handler Handler

	// Methods lists the enabled patterns. Default AllMethods(). A credential of a disabled
	// pattern never authenticates. A handshake that carries no credential of an enabled
	// pattern but something meant as one — any Authorization header, a subprotocol entry
	// mentioning "bearer", a query parameter named like a credential (see ReasonNoCredential)
	// — is refused at once: 401 "no credential" before the upgrade for the first two, close
	// 1008 "No credential" after it for the query. Cookies of a disabled cookie pattern are
	// ignored, since browsers send them unasked.
	Methods []Method
	// AllowedOrigins lists the exact browser origins, "scheme://host[:port]", that may open a
	// WebSocket besides the server's own origin. Wildcards, paths and "null" are refused by
	// New. Default none: only requests without Origin (non-browser clients) and the server's
	// own origin, which is the scheme the request came in with (https over TLS, or what a
	// trusted proxy reports), the Host header and its port. Scheme, host and port must all
	// match; a default port (80 for http, 443 for https) is the same as no port.
	AllowedOrigins []string
	// AllowCookieWithoutOrigin accepts cookie-authenticated handshakes that carry no Origin
	// header. Default false: such a handshake is refused with 403 before the upgrade,
	// because every browser sends Origin on a WebSocket handshake, so a cookie without one
	// comes from a non-browser client that can just as well send the origin it is allowed.
	// Other patterns without Origin are always accepted (non-browser clients).
	AllowCookieWithoutOrigin bool
	// TrustedProxies lists the reverse proxies, as CIDR prefixes ("10.0.0.0/8") or single
	// IPs, whose Forwarded or X-Forwarded-For header names the client. For a request from
	// one of them the client IP of the rate limits and caps is the rightmost forwarded
	// address that is not itself a trusted proxy, and the scheme of the same-origin check is
	// the forwarded proto. Default none: forwarding headers are ignored, since any client can
	// send them.
	TrustedProxies []string
	// Subprotocols lists the application subprotocols the server may select, in order of
	// preference. Default none. Entries may not start with a bearer prefix.
	Subprotocols []string
	// BearerPrefixes lists the Sec-WebSocket-Protocol prefixes that carry a base64url bearer
	// token. Default "base64url.bearer.authorization.k8s.io." and "base64url.bearer.phx.".
	BearerPrefixes []string

	// TicketParam is the query parameter carrying a ticket. Default "ticket".
	TicketParam string
	// TokenParams lists the query parameters that may carry a bearer token, in order of
	// precedence: the first one present is the credential. Default "token" and
	// "access_token" (the name RFC 6750 §2.3 uses). None may equal TicketParam.
	TokenParams []string
	// CookieName is the session cookie's name. Default "wsauth_session".
	CookieName string

	// TicketStore keeps tickets. Default a new MemoryTicketStore.
	TicketStore TicketStore
	// TicketTTL is how long a ticket stays valid. Default 30 seconds.
	TicketTTL time.Duration

	// SessionStore keeps cookie sessions. Default a new MemorySessionStore.
	SessionStore SessionStore
	// LoginTTL is the lifetime of a cookie session from login. Default 24 hours.
	LoginTTL time.Duration
	// CookieSecure marks the session cookie Secure even on plain-HTTP requests (behind a
	// TLS-terminating proxy). Default false; the cookie is always Secure over TLS.
	CookieSecure bool
	// Users maps usernames to passwords for POST /api/login; passwords are compared in
	// constant time. Default nil: password login is disabled, token login still works.
	Users map[string]string

	// Clients maps OAuth 2.0 client ids to secrets for the client-credentials grant at
	// TokenPath; the client id becomes the token's subject. Default nil: the endpoint answers
	// 404.
	Clients map[string]string
	// Issuer mints the tokens of the token endpoint. Required when Clients is set; usually the
	// same issuer is the Verifier.
	Issuer *HMACIssuer
	// TokenTTL is the lifetime of tokens issued by the token endpoint. Default 1 hour.
	TokenTTL time.Duration

	// AuthTimeout bounds authentication on every pattern. An upgraded connection that is not
	// authenticated within AuthTimeout of its upgrade is closed 1008 "Auth timeout"; for the
	// first-message pattern that is the wait for the auth message. Before the upgrade it
	// bounds, separately, the store lookup of a ticket or cookie handshake
	// (TicketStore.Consume, SessionStore.Get): a store that does not answer in time is
	// treated as unavailable, 503 with Retry-After. It also bounds each SessionStore.Get with
	// which the server rechecks its cookie connections on a ClusterSync event. Default 5
	// seconds.
	AuthTimeout time.Duration
	// PreAuthReadLimit is the largest message, in bytes, accepted before authentication;
	// larger ones close the connection with 1009. Default 4096 bytes.
	PreAuthReadLimit int64
	// ReadLimit is the largest message, in bytes, accepted after authentication. Default
	// 1 MiB; -1 disables the limit.
	ReadLimit int64

	// SessionTTL is the lifetime of an authenticated connection; it is closed with 1008
	// "Session expired" unless a refresh extends it. The expiry is min(now+SessionTTL,
	// credential expiry when known); Identity.SessionTTL overrides it per principal.
	// Default 1 hour; negative means no server-imposed lifetime (credential expiry still
	// applies).
	SessionTTL time.Duration
	// ExpiryNotice is how long before a connection's expiry the server sends
	// {"type":"expiring","expires_in":N}. Default 0: never.
	ExpiryNotice time.Duration

	// RefreshRate is the refresh messages allowed per connection per second; over the limit
	// the server answers refresh_failed "rate limited" without verifying. Default 1;
	// negative disables the limit.
	RefreshRate float64
	// RefreshBurst is the burst of RefreshRate. Default 5.
	RefreshBurst int

	// HandshakeRate is the handshakes allowed per client IP per second; over the limit the
	// answer is 429 with Retry-After. Default 10; negative disables the limit.
	HandshakeRate float64
	// HandshakeBurst is the burst of HandshakeRate. Default 20.
	HandshakeBurst int
	// TicketRate is the ticket requests allowed per client IP per second. Default 5;
	// negative disables the limit.
	TicketRate float64
	// TicketBurst is the burst of TicketRate. Default 10.
	TicketBurst int
	// LoginRate is the login requests allowed per client IP per second; the token endpoint
	// has its own buckets with the same rate. Default 1; negative disables the limit.
	LoginRate float64
	// LoginBurst is the burst of LoginRate. Default 5.
	LoginBurst int
	// LoginAccountRate is the failed password logins allowed per username per second, from
	// all IPs together; the token endpoint applies the same limit per client id. A failed
	// attempt uses up a token, a successful one gives its token back. With no token left the
	// answer is 429 with Retry-After, whether the password is right or not and whether the
	// account exists or not. Default 1/60 (one a minute); negative disables the limit.
	LoginAccountRate float64
	// LoginAccountBurst is the burst of LoginAccountRate: the failed attempts an account may
	// take in a row. Default 10. With Config.Limits the budget of an account is one for the
	// whole deployment, not one per instance.
	LoginAccountBurst int
	// MaxPreAuthPerIP caps the connections per client IP that are upgraded but still waiting
	// for their auth message; over the cap the handshake gets 429 before the upgrade.
	// Default 16; negative disables the cap.
	MaxPreAuthPerIP int
	// MaxConnsPerPrincipal caps the authenticated connections one subject may hold at once
	// (counted until their sockets are closed). Over the cap a header or subprotocol
	// handshake gets 429 with Retry-After: 5 before the upgrade; a ticket, query, cookie or
	// first-message connection is closed 1013 "Too many connections" after the upgrade,
	// before auth_ok (a ticket is spent by then). Default 0: no cap, because what is normal
	// depends on the application (one bot, or a thousand load-test clients sharing a
	// token); 100 is a good start for interactive users, and what `wsauth serve` sets.
	// Negative also means no cap. With Config.Limits the cap holds across the deployment:
	// a subject's connections on every instance count together.
	MaxConnsPerPrincipal int

	// PingInterval is how long an authenticated connection may be silent before the server
	// pings it. Silence is judged only while the server is reading the socket: the socket is
	// read at the handler's pace (see Conn.Read), and while the handler has not asked for
	// the next message a pong cannot be seen, so that time never counts against the peer.
	// Any message or pong from the peer ends the silence. Default 30 seconds; negative
	// disables pings.
	PingInterval time.Duration
	// PongTimeout is how long after a ping the server waits for the peer, reading, before it
	// closes the connection with 1001 "Ping timeout". Default 15 seconds.
	PongTimeout time.Duration

	// Cluster carries revocations (Revoke, Unrevoke, logouts) to the other instances of a
	// deployment and theirs to this one; see cluster.go. Default nil: a single instance.
	Cluster Cluster
	// Limits keeps the rate limits and caps that an attacker could multiply by spreading
	// over instances, shared with the other instances: the per-IP limits of handshakes,
	// tickets, logins and tokens, the per-account limits of failed logins and token
	// requests (LoginAccountRate), and the per-principal cap (MaxConnsPerPrincipal); see
	// Limits for their names. Default nil: each instance has its own buckets and counts.
	// The refresh limit (per connection) and the pre-auth cap (MaxPreAuthPerIP, sockets of
	// this instance) stay local either way.
	Limits Limits

	// TestControls mounts the fault hooks under ControlPrefix. Default false. Never enable it
	// on a server reachable by anyone but the tests.
	TestControls bool
	// Logger receives the server's log records. Default nil: silent. Tokens, tickets, cookie
	// values and passwords are never logged.
	Logger *slog.Logger
	// OnAuth, when set, is called synchronously for every authentication decision, from
	// many goroutines at once; keep it fast. Default nil.
	OnAuth func(AuthEvent)

	// WSPath is the WebSocket path. Default "/ws".
	WSPath string
	// TicketPath is the ticket endpoint. Default "/api/ws-ticket".
	TicketPath string
	// LoginPath is the login endpoint. Default "/api/login".
	LoginPath string
	// LogoutPath is the logout endpoint. Default "/api/logout".
	LogoutPath string
	// TokenPath is the OAuth 2.0 token endpoint. Default "/oauth/token".
	TokenPath string
	// ControlPrefix is the path prefix of the fault hooks; it must end with "/".
	// Default "/control/".
	ControlPrefix string
}

// defaultBearerPrefixes are the Sec-WebSocket-Protocol prefixes of Kubernetes and Phoenix.
var defaultBearerPrefixes = []string{"base64url.bearer.authorization.k8s.io.", "base64url.bearer.phx."}

// withDefaults fills the zero fields of cfg and validates the result.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Verifier == nil {
		return cfg, errors.New("wsauth/server: Config.Verifier is required")
	}
	if cfg.Handler == nil {
		return cfg, errors.New("wsauth/server: Config.Handler is required")
	}
	if cfg.Methods == nil {
		cfg.Methods = AllMethods()
	}
	if len(cfg.Methods) == 0 {
		return cfg, errors.New("wsauth/server: Config.Methods is empty; leave it nil for all methods")
	}
	for _, m := range cfg.Methods {
		if !slices.Contains(AllMethods(), m) {
			return cfg, fmt.Errorf("wsauth/server: unknown method %q", m)
		}
	}
	if cfg.BearerPrefixes == nil {
		cfg.BearerPrefixes = slices.Clone(defaultBearerPrefixes)
	}
	for _, p := range cfg.BearerPrefixes {
		if p == "" || strings.ContainsAny(p, ", \t") {
			return cfg, fmt.Errorf("wsauth/server: bearer prefix %q is not a subprotocol token", p)
		}
	}
	for _, sp := range cfg.Subprotocols {
		if sp == "" || strings.ContainsAny(sp, ", \t") {
			return cfg, fmt.Errorf("wsauth/server: subprotocol %q is not a token", sp)
		}
		for _, p := range cfg.BearerPrefixes {
			if strings.HasPrefix(strings.ToLower(sp), strings.ToLower(p)) {
				return cfg, fmt.Errorf("wsauth/server: subprotocol %q starts with bearer prefix %q and would echo a token", sp, p)
			}
		}
	}
	setString(&cfg.TicketParam, "ticket")
	switch {
	case cfg.TokenParams != nil:
		cfg.TokenParams = slices.Clone(cfg.TokenParams)
	default:
		cfg.TokenParams = slices.Clone(defaultTokenParams)
	}
	if len(cfg.TokenParams) == 0 {
		return cfg, errors.New("wsauth/server: Config.TokenParams is empty; leave it nil for the defaults")
	}
	for _, p := range cfg.TokenParams {
		if p == "" {
			return cfg, errors.New("wsauth/server: Config.TokenParams has an empty name")
		}
		if p == cfg.TicketParam {
			return cfg, errors.New("wsauth/server: TicketParam and TokenParams must differ")
		}
	}
	setString(&cfg.CookieName, "wsauth_session")
	setString(&cfg.WSPath, "/ws")
	setString(&cfg.TicketPath, "/api/ws-ticket")
	setString(&cfg.LoginPath, "/api/login")
	setString(&cfg.LogoutPath, "/api/logout")
	setString(&cfg.TokenPath, "/oauth/token")
	setString(&cfg.ControlPrefix, "/control/")
	if !strings.HasSuffix(cfg.ControlPrefix, "/") {
		return cfg, fmt.Errorf("wsauth/server: ControlPrefix %q must end with /", cfg.ControlPrefix)
	}
	if cfg.TicketStore == nil {
		cfg.TicketStore = NewMemoryTicketStore()
	}
	if cfg.SessionStore == nil {
		cfg.SessionStore = NewMemorySessionStore()
	}
	if cfg.Clients != nil && cfg.Issuer == nil {
		return cfg, errors.New("wsauth/server: Config.Issuer is required when Config.Clients is set")
	}
	for _, d := range []struct {
		p    *time.Duration
		def  time.Duration
		name string
	}{
		{&cfg.TicketTTL, 30 * time.Second, "TicketTTL"},
		{&cfg.LoginTTL, 24 * time.Hour, "LoginTTL"},
		{&cfg.TokenTTL, time.Hour, "TokenTTL"},
		{&cfg.AuthTimeout, 5 * time.Second, "AuthTimeout"},
		{&cfg.PongTimeout, 15 * time.Second, "PongTimeout"},
	} {
		if *d.p < 0 {
			return cfg, fmt.Errorf("wsauth/server: %s %v is negative", d.name, *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.ExpiryNotice < 0 {
		return cfg, fmt.Errorf("wsauth/server: ExpiryNotice %v is negative", cfg.ExpiryNotice)
	}
	if cfg.PreAuthReadLimit < 0 {
		return cfg, errors.New("wsauth/server: PreAuthReadLimit is negative; it cannot be disabled")
	}
	if cfg.PreAuthReadLimit == 0 {
		cfg.PreAuthReadLimit = 4096
	}
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = 1 << 20
	}
	if cfg.ReadLimit < -1 {
		return cfg, errors.New("wsauth/server: ReadLimit must be positive, or -1 for none")
	}
	setRate(&cfg.RefreshRate, &cfg.RefreshBurst, 1, 5)
	setRate(&cfg.HandshakeRate, &cfg.HandshakeBurst, 10, 20)
	setRate(&cfg.TicketRate, &cfg.TicketBurst, 5, 10)
	setRate(&cfg.LoginRate, &cfg.LoginBurst, 1, 5)
	setRate(&cfg.LoginAccountRate, &cfg.LoginAccountBurst, 1.0/60, 10)
	if cfg.MaxPreAuthPerIP == 0 {
		cfg.MaxPreAuthPerIP = 16
	}
	return cfg, nil
}

// defaultTokenParams are the query parameters of the query pattern: wsauth's own name and
// RFC 6750's.
var defaultTokenParams = []string{"token", "access_token"}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setRate(r *float64, b *int, defRate float64, defBurst int) {
	if *r == 0 || math.IsNaN(*r) {
		*r = defRate
	}
	if *b <= 0 {
		*b = defBurst
	}
}

// Server is the reference server: an http.Handler serving the WebSocket, the ticket, login,
// logout and token endpoints, and (with Config.TestControls) the fault hooks.
type Server struct {
	cfg        Config
	log        *slog.Logger
	methods    map[Method]bool
	origins    *originPolicy
	acceptOpts websocket.AcceptOptions

	proxies        *proxyPolicy
	handshakeLimit *ipLimiter
	ticketLimit    *ipLimiter
	loginLimit     *ipLimiter
	tokenLimit     *ipLimiter
	preAuth        *slotCounter
	// accountLimit and clientLimit count failed password logins per username and failed
	// token requests per client id, from all IPs together.
	accountLimit *accountLimiter
	clientLimit  *accountLimiter
	// principalSlots caps the connections per subject (Config.MaxConnsPerPrincipal): a
	// slotCounter, or Config.Limits' shared cap; nil without a cap.
	principalSlots SlotLimiter

	stats counters

	mu           sync.Mutex
	closed       bool
	conns        map[*Conn]struct{}
	revoked      map[string]bool
	refuseStatus int
	refuseLeft   int
	pausedUntil  time.Time
	// closeAlls counts CloseAll calls; lastCloseAll is the latest one's
	// frame. A handshake remembers the count it started with, so that a
	// connection upgraded just before a CloseAll but registered just after
	// is closed too: its client has already seen the 101.
	closeAlls    uint64
	lastCloseAll closeFrame
	// wg counts the goroutines serving WebSocket handshakes and connections; Close waits for
	// it. Add happens under mu while !closed, so no Add can race with Close's Wait.
	wg sync.WaitGroup
	// leaveCluster stops the Config.Cluster subscription; nil without one.
	leaveCluster func()
}

type closeFrame struct {
	code   websocket.StatusCode
	reason string
}

type counters struct {
	handshakes, authenticated, refused                atomic.Int64
	ticketsIssued, ticketsConsumed                    atomic.Int64
	refreshes, refreshesRefused, refreshesRateLimited atomic.Int64
	loginsOK, loginsFailed, tokensIssued              atomic.Int64
	pingTimeouts, principalCapped                     atomic.Int64
}

// Stats is a snapshot of the server's counters, for tests and monitoring.
type Stats struct {
	// Handshakes counts requests to the WebSocket path.
	Handshakes int64
	// Authenticated counts connections that passed authentication; the handler was called
	// for each of them and for no other.
	Authenticated int64
	// Refused counts handshakes refused, before or after the upgrade.
	Refused int64
	// Live is the number of authenticated connections open now.
	Live int64
	// Pending is the number of upgraded connections still authenticating.
	Pending int64
	// TicketsIssued counts tickets minted by the ticket endpoint.
	TicketsIssued int64
	// TicketsConsumed counts tickets redeemed by a handshake.
	TicketsConsumed int64
	// Refreshes counts accepted refresh messages.
	Refreshes int64
	// RefreshesRefused counts refresh messages refused (and their connections closed).
	RefreshesRefused int64
	// RefreshesRateLimited counts refresh messages answered refresh_failed "rate limited".
	RefreshesRateLimited int64
	// LoginsOK counts cookie sessions started.
	LoginsOK int64
	// LoginsFailed counts logins refused for bad credentials.
	LoginsFailed int64
	// TokensIssued counts tokens issued by the token endpoint.
	TokensIssued int64
	// PingTimeouts counts connections closed because the peer did not answer a ping.
	PingTimeouts int64
	// PrincipalCapped counts handshakes refused by Config.MaxConnsPerPrincipal.
	PrincipalCapped int64
}

// New validates cfg, fills in its defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	origins, err := newOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	proxies, err := newProxyPolicy(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:            cfg,
		log:            cfg.Logger,
		methods:        make(map[Method]bool),
		origins:        origins,
		proxies:        proxies,
		handshakeLimit: newIPLimiter(cfg.HandshakeRate, cfg.HandshakeBurst),
		ticketLimit:    newIPLimiter(cfg.TicketRate, cfg.TicketBurst),
		loginLimit:     newIPLimiter(cfg.LoginRate, cfg.LoginBurst),
		tokenLimit:     newIPLimiter(cfg.LoginRate, cfg.LoginBurst),
		preAuth:        newSlotCounter(cfg.MaxPreAuthPerIP),
		accountLimit:   newAccountLimiter(cfg.LoginAccountRate, cfg.LoginAccountBurst),
		clientLimit:    newAccountLimiter(cfg.LoginAccountRate, cfg.LoginAccountBurst),
		conns:          make(map[*Conn]struct{}),
		revoked:        make(map[string]bool),
	}
	if cfg.MaxConnsPerPrincipal > 0 {
		s.principalSlots = newSlotCounter(cfg.MaxConnsPerPrincipal)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, m := range cfg.Methods {
		s.methods[m] = true
	}
	if err := s.joinCluster(); err != nil {
		return nil, err
	}
	s.acceptOpts = websocket.AcceptOptions{
		Subprotocols: slices.Clone(cfg.Subprotocols),
		// serveWS has checked Origin already, with scheme, host and port and default
		// ports normalised; coder/websocket's own check compares the host alone and
		// spells ports as sent, so it would refuse "https://h:443" that serveWS allowed.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}
	return s, nil
}

// ServeHTTP routes the WebSocket path, the endpoints and the fault hooks; anything else is
// 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == s.cfg.WSPath:
		s.serveWS(w, r)
	case p == s.cfg.TicketPath:
		s.serveTicket(w, r)
	case p == s.cfg.LoginPath:
		s.serveLogin(w, r)
	case p == s.cfg.LogoutPath:
		s.serveLogout(w, r)
	case p == s.cfg.TokenPath && s.cfg.Clients != nil:
		s.serveToken(w, r)
	case s.cfg.TestControls && strings.HasPrefix(p, s.cfg.ControlPrefix):
		s.serveControl(w, r, strings.TrimPrefix(p, s.cfg.ControlPrefix))
	default:
		http.NotFound(w, r)
	}
}

// Close closes every WebSocket with 1001 "Server shutting down" and waits until their
// goroutines and handlers have returned; http.Server.Shutdown does not do this, because it
// does not track hijacked connections. Later handshakes get 503. Close is idempotent and
// always returns nil.
func (s *Server) Close() error {
	if s.leaveCluster != nil {
		s.leaveCluster()
	}
	s.mu.Lock()
	s.closed = true
	conns := s.snapshotLocked(func(*Conn) bool { return true })
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(websocket.StatusGoingAway, ReasonShuttingDown)
	}
	s.wg.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Handshakes:           s.stats.handshakes.Load(),
		Authenticated:        s.stats.authenticated.Load(),
		Refused:              s.stats.refused.Load(),
		TicketsIssued:        s.stats.ticketsIssued.Load(),
		TicketsConsumed:      s.stats.ticketsConsumed.Load(),
		Refreshes:            s.stats.refreshes.Load(),
		RefreshesRefused:     s.stats.refreshesRefused.Load(),
		RefreshesRateLimited: s.stats.refreshesRateLimited.Load(),
		LoginsOK:             s.stats.loginsOK.Load(),
		LoginsFailed:         s.stats.loginsFailed.Load(),
		TokensIssued:         s.stats.tokensIssued.Load(),
		PingTimeouts:         s.stats.pingTimeouts.Load(),
		PrincipalCapped:      s.stats.principalCapped.Load(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.isAuthenticated() {
			st.Live++
		} else {
			st.Pending++
		}
	}
	return st
}

// snapshotLocked returns the registered connections that match keep. s.mu must be held.
func (s *Server) snapshotLocked(keep func(*Conn) bool) []*Conn {
	var out []*Conn
	for c := range s.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// snapshot is snapshotLocked taking s.mu.
func (s *Server) snapshot(keep func(*Conn) bool) []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(keep)
}

// errRevoked is what verify returns for a valid token of a revoked principal.
var errRevoked = errors.New("principal revoked")

// verify runs the Verifier and the revocation list. The error it returns is safe to log: its
// text is one of a few fixed descriptions, whatever the Verifier's error said, because a
// Verifier written by someone else might quote the token. With errRevoked the identity is
// returned too, so that a refresh can tell "revoked" from "someone else".
func (s *Server) verify(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, errEmptyToken
	}
	id, err := s.cfg.Verifier.Verify(ctx, token)
	if err != nil {
		return Identity{}, safeVerifyError(err)
	}
	if id.Subject == "" {
		return Identity{}, errNoSubject
	}
	if s.isRevoked(id.Subject) {
		return id, errRevoked
	}
	return id, nil
}

// safeVerifyError keeps the issuer's own (token-free) errors and replaces any other.
func safeVerifyError(err error) error {
	for _, known := range []error{errMalformed, errAlgorithm, errSignature, errExpired, errNoSubject, errNoExpiry, errBadExpiry, errEmptyToken} {
		if err == known {
			return err
		}
	}
	if errors.Is(err, ErrInvalidToken) {
		return ErrInvalidToken
	}
	return errors.New("verifier failed")
}

// isRevoked reports whether subject is on the revocation list.
func (s *Server) isRevoked(subject string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked[subject]
}

// expiryFor computes a connection's expiry: min(now+ttl, credential expiry when known), where
// ttl is the principal's own SessionTTL or the configured one. Zero means none.
func (s *Server) expiryFor(now, credExpiry time.Time, ttl time.Duration) time.Time {
	if ttl == 0 {
		ttl = s.cfg.SessionTTL
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	if !credExpiry.IsZero() && (exp.IsZero() || credExpiry.Before(exp)) {
		exp = credExpiry
	}
	return exp
}

// event starts an AuthEvent for request r.
//
// Not inlined: inlined, every call site would keep a copy of the event in the caller's
// frame, and serveWS's handshake is on the stack of every connection's goroutine when it
// grows.
//
//go:noinline
func (s *Server) event(r *http.Request, stage Stage, m Method) AuthEvent {
	return AuthEvent{Stage: stage, RemoteAddr: r.RemoteAddr, ClientIP: s.clientIP(r), Method: m}
}

// refuseHTTP answers r without an upgrade and reports the refusal. A positive retry sets
// Retry-After in whole seconds (at least one).
//
// Not inlined: inlined, every call site would keep a copy of the event in the caller's
// frame, and serveWS's handshake is on the stack of every connection's goroutine when it
// grows.
//
//go:noinline
func (s *Server) refuseHTTP(w http.ResponseWriter, ev AuthEvent, status int, retry time.Duration, detail string) {
	s.refuseHTTPText(w, ev, status, retry, detail, "")
}

// refuseHTTPText is refuseHTTP with a fixed explanation after the status text in the body
// ("Unauthorized: no credential"); it must never quote the request.
func (s *Server) refuseHTTPText(w http.ResponseWriter, ev AuthEvent, status int, retry time.Duration, detail, explain string) {
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfterValue(retry))
	}
	ev.Status = status
	ev.Reason = http.StatusText(status)
	ev.Detail = detail
	s.report(ev)
	w.Header().Set("Cache-Control", "no-store")
	body := http.StatusText(status)
	if explain != "" {
		body += ": " + explain
	}
	http.Error(w, body, status)
}

// maxRetryAfter caps the Retry-After the server sends: a day, longer than any pause or
// limit it imposes.
const maxRetryAfter = 24 * time.Hour

// retryAfterValue renders d as a Retry-After value: whole seconds, rounded up, at least one
// and at most a day.
func retryAfterValue(d time.Duration) string {
	d = min(max(d, time.Second), maxRetryAfter)
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// refuseWS reports a refusal after the upgrade; the caller closes the connection.
//
// Not inlined: inlined, every call site would keep a copy of the event in the caller's
// frame, and serveWS's handshake is on the stack of every connection's goroutine when it
// grows.
//
//go:noinline
func (s *Server) refuseWS(ev AuthEvent, code websocket.StatusCode, reason, detail string) {
	ev.Code = code
	ev.Reason = reason
	ev.Detail = detail
	s.report(ev)
}

// accept reports a success.
func (s *Server) accept(ev AuthEvent, reason string) {
	ev.OK = true
	ev.Reason = reason
	s.report(ev)
}

// report counts, logs and forwards an AuthEvent. Everything in an AuthEvent is free of
// secrets by construction, so it may be logged whole.
func (s *Server) report(ev AuthEvent) {
	ev.Time = time.Now()
	if ev.Stage == StageHandshake && !ev.OK {
		s.stats.refused.Add(1)
	}
	attrs := []any{
		"stage", string(ev.Stage), "remote", ev.RemoteAddr, "ok", ev.OK, "reason", ev.Reason,
	}
	if ev.ClientIP != "" && ev.ClientIP != hostOf(ev.RemoteAddr) {
		attrs = append(attrs, "client_ip", ev.ClientIP)
	}
	if ev.Method != "" {
		attrs = append(attrs, "method", string(ev.Method))
	}
	if ev.Subject != "" {
		attrs = append(attrs, "subject", ev.Subject)
	}
	if ev.Detail != "" {
		attrs = append(attrs, "detail", ev.Detail)
	}
	if ev.Status != 0 {
		attrs = append(attrs, "status", ev.Status)
	}
	if ev.Code != 0 {
		attrs = append(attrs, "code", int(ev.Code))
	}
	if ev.OK {
		s.log.Info("auth accepted", attrs...)
	} else {
		s.log.Warn("auth refused", attrs...)
	}
	if s.cfg.OnAuth != nil {
		s.cfg.OnAuth(ev)
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// writeJSON answers with v as JSON; answers carrying credentials must not be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
}

// seconds renders d as the protocol's expires_in: seconds, with millisecond precision.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

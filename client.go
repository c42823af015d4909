package wsauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"golang.org/x/oauth2"
)

// Options configures a Client. The zero value of every field is a usable
// default, stated on the field; the policies of one concern are grouped.
// New refuses options that make no sense (a negative timeout, say) with
// an error naming the field.
type Options struct {
	// Auth supplies credentials before every connection attempt. Nil means
	// the connection carries none.
	Auth Authenticator
	// Dialect is the server's authentication protocol. Default
	// DefaultDialect.
	Dialect Dialect

	// HTTPClient makes the handshake and the providers' REST calls. Its
	// Jar is ignored (CookieAuth brings its own), and its CheckRedirect
	// runs after the client's own rules: the handshake follows no
	// redirect, REST calls only those within their origin (see
	// RedirectPolicy). Default: a transport shared by the clients that
	// have neither an HTTPClient nor a TLSConfig (a clone of
	// http.DefaultTransport), or one of the client's own with TLSConfig;
	// Close releases idle connections either way.
	HTTPClient *http.Client
	// TLSConfig is used by the default HTTPClient, for example to trust a
	// private root CA (RootCAs). Default: the system roots.
	TLSConfig *tls.Config
	// Header is added to every handshake. Default none.
	Header http.Header
	// Subprotocols are offered on every handshake after the dialect's.
	// Default none.
	Subprotocols []string
	// AllowInsecure lets credentials travel over plain ws:// or http:// to
	// hosts other than loopback. Default false: such an attempt stops the
	// client with an error wrapping ErrInsecureTransport.
	AllowInsecure bool

	// OnConnect runs after every successful authentication, before queued
	// sends are written; Session.Send writes ahead of the queue. Use it to
	// subscribe again or resend what the server may have missed. Its
	// context ends when the connection does or the client is closed; Close
	// may be called from inside it. An error ends that connection (retry
	// with backoff). Default none.
	OnConnect func(ctx context.Context, s *Session) error
	// OnEvent receives every state change, in order, on a goroutine of its
	// own. It may call any method of the client, Close included. Default
	// none.
	OnEvent func(Event)
	// Logger receives the same events as log records, credentials
	// redacted. Default: silent.
	Logger *slog.Logger

	// Timeouts bound each step of a connection attempt.
	Timeouts Timeouts
	// Limits bound what the client holds in memory.
	Limits Limits
	// Liveness detects a dead connection.
	Liveness Liveness
	// Reconnect is the reconnect policy: backoff, budgets, classification.
	Reconnect ReconnectPolicy
	// Renewal keeps a session alive past its expiry.
	Renewal RenewalPolicy
}

// Timeouts bound the steps of a connection attempt. Zero means the
// default; negative values are refused, except where a field says what
// negative means.
type Timeouts struct {
	// Dial bounds the provider's work plus the handshake. Default 15s.
	Dial time.Duration
	// Auth bounds the in-band exchange after the upgrade, and the wait for
	// a verdict a server announced. Default 10s.
	Auth time.Duration
	// Verdict is how long a credential the server can still refuse after
	// the upgrade (ticket, query, cookie, an in-band token) waits for a
	// verdict when the dialect has none of its own: the connection counts
	// as authenticated at the server's first confirmation or application
	// message, or once the window passes without a close. A close inside
	// the window is a refusal; so is a close within Auth of the upgrade,
	// before any application message, on a connection the window let
	// through (a late refusal). A server that announces an explicit
	// verdict (the reference server does) is waited for instead, up to
	// Auth. Negative: no window, wait for a confirmation or a first message
	// up to Auth. Default 250ms.
	Verdict time.Duration
	// Write bounds each frame written. Default 10s.
	Write time.Duration
}

// Limits bound what a client holds. Zero means the default; negative
// values are refused.
type Limits struct {
	// ReadLimit is the largest message accepted, in bytes, counted after
	// decompression; a larger one ends the connection (close 1009), which
	// counts as a protocol error. Default 1 MiB.
	ReadLimit int64
	// SendQueue is how many sends may wait for a connection; Send fails at
	// once with ErrQueueFull beyond it. Default 256.
	SendQueue int
	// ReceiveBuffer is how many received messages wait for Receive before
	// the client stops reading from the socket. Default 16.
	ReceiveBuffer int
	// KeepUnconfirmed is how many plain sends the client keeps copies of
	// until the server confirms them, so that EventUnconfirmed can list
	// them when a connection ends first; at the limit, a send waits for a
	// confirmation before it is written. Default 0: no copies, and
	// EventUnconfirmed gives only the count.
	KeepUnconfirmed int
}

// Liveness is how a dead connection is noticed: a ping after PingInterval
// without traffic, and PongTimeout for its answer.
type Liveness struct {
	// PingInterval is the time between liveness pings; negative disables
	// them. Default 25s.
	PingInterval time.Duration
	// PongTimeout is how long a ping may wait for its pong before the
	// connection counts as dead. Default 10s.
	PongTimeout time.Duration
}

// config is Options resolved: defaults applied and validated, flat for the
// engine.
type config struct {
	Auth          Authenticator
	Dialect       Dialect
	HTTPClient    *http.Client
	TLSConfig     *tls.Config
	Header        http.Header
	Subprotocols  []string
	AllowInsecure bool
	OnConnect     func(ctx context.Context, s *Session) error
	OnEvent       func(Event)
	Logger        *slog.Logger

	DialTimeout, AuthTimeout, VerdictWindow, WriteTimeout time.Duration
	ReadLimit                                             int64
	SendQueue, ReceiveBuffer, KeepUnconfirmed             int
	PingInterval, PongTimeout                             time.Duration

	Backoff                            backoff.BackOff
	StableAfter, InitialJitter         time.Duration
	MaxRetryAfter                      time.Duration
	MaxAuthFailures, MaxProtocolErrors int
	Classify                           func(Ending) Action

	Renewal                                   Renewal
	RefreshLead, RefreshTimeout, DrainTimeout time.Duration
	TokenSource                               oauth2.TokenSource
}

// Client owns one logical, authenticated connection across many physical
// ones. It connects, authenticates, keeps the session alive, and reconnects
// with fresh credentials when it must. Send and Receive work across
// reconnects; every method is safe for concurrent use.
type Client struct {
	url      *url.URL
	o        config
	auth     Authenticator
	dialect  Dialect
	hc       *http.Client // REST calls: same-origin redirects only
	wsHC     *http.Client // the handshake: no redirects
	ownHC    bool         // hc's transport is the client's own: Close empties its pool
	onShared bool         // hc is the shared one: Close counts the client off
	tokens   *TokenCache
	log      *slog.Logger
	bo       backoff.BackOff
	ownBO    FullJitter // bo when the options name no backoff

	queue  sendQueue
	inbox  chan message
	events dispatcher

	// reading is the connection whose messages flow to the application
	// now; readingChanged, made when a receiver waits, is closed when it
	// changes (watch, announce).
	reading        atomic.Pointer[physConn]
	readingMu      sync.Mutex
	readingChanged chan struct{}

	ctx    context.Context // ends when the client is told to stop
	cancel context.CancelFunc

	mu          sync.Mutex
	state       State
	cur         *physConn
	err         error
	closeCode   StatusCode
	closeReason string
	closeCause  error
	lastErr     error

	// changed, made when WaitConnected waits, is closed at the next state
	// change.
	changed chan struct{}
	done    chan struct{}
}

// Dial starts a client and waits until its first connection is
// authenticated. ctx bounds only that wait: the client lives on until
// Close. If ctx ends first, or the client stops (for example after
// repeated credential rejections), Dial closes it and returns the error.
func Dial(ctx context.Context, rawURL string, opts *Options) (*Client, error) {
	c, err := New(rawURL, opts)
	if err != nil {
		return nil, err
	}
	if err := c.WaitConnected(ctx); err != nil {
		c.closeWith(StatusNormalClosure, "", context.Cause(ctx))
		return nil, err
	}
	return c, nil
}

// New starts a client that connects in the background; sends queue until
// the first connection is authenticated. It fails only on a bad URL or
// options.
func New(rawURL string, opts *Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes its input, which may hold a token.
		return nil, errors.New("wsauth: the URL does not parse")
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "wss", "http", "https":
	default:
		return nil, fmt.Errorf("wsauth: URL scheme %q is not ws, wss, http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("wsauth: URL has no host")
	}
	var given Options
	if opts != nil {
		given = *opts
	}
	o, err := given.resolve()
	if err != nil {
		return nil, err
	}
	if o.Auth != nil {
		if err := checkTransport(u, o.AllowInsecure); err != nil {
			return nil, err
		}
	}

	c := &Client{
		url:     u,
		o:       o,
		auth:    o.Auth,
		dialect: o.Dialect,
		bo:      o.Backoff,
		queue:   sendQueue{limit: o.SendQueue},
		inbox:   make(chan message, o.ReceiveBuffer),
		log:     o.Logger,
		done:    make(chan struct{}),
	}
	if c.bo == nil {
		c.ownBO = FullJitter{Initial: defaultBackoffInitial, Multiplier: defaultBackoffMultiplier, Max: defaultBackoffMax}
		c.bo = &c.ownBO
	}
	if c.log == nil {
		c.log = discardLogger
	}
	c.events.start(o.OnEvent)
	switch {
	case o.HTTPClient != nil:
		c.hc = restClient(o.HTTPClient)
		c.hc.Jar = nil
		c.wsHC = handshakeClient(c.hc)
	case o.TLSConfig != nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLSConfig.Clone()
		c.hc = restClient(&http.Client{Transport: tr})
		c.wsHC = handshakeClient(c.hc)
		c.ownHC = true
	default:
		c.hc, c.wsHC = shared.join()
		c.onShared = true
	}
	c.tokens = asTokenCache(o.TokenSource)
	if c.tokens == nil {
		if ts, ok := o.Auth.(TokenSourcer); ok {
			c.tokens = asTokenCache(ts.TokenSource())
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state = StateConnecting
	go c.run()
	return c, nil
}

// The defaults, each documented on its field.
const (
	defaultDialTimeout       = 15 * time.Second
	defaultAuthTimeout       = 10 * time.Second
	defaultVerdictWindow     = 250 * time.Millisecond
	defaultWriteTimeout      = 10 * time.Second
	defaultReadLimit         = 1 << 20
	defaultSendQueue         = 256
	defaultReceiveBuffer     = 16
	defaultPingInterval      = 25 * time.Second
	defaultPongTimeout       = 10 * time.Second
	defaultStableAfter       = 10 * time.Second
	defaultMaxAuthFailures   = 5
	defaultMaxProtocolErrors = 5
	defaultMaxRetryAfter     = 5 * time.Minute
	defaultRefreshTimeout    = 10 * time.Second
	defaultDrainTimeout      = 5 * time.Second
)

// resolve checks o and applies the defaults.
func (o *Options) resolve() (config, error) {
	var v validator
	cfg := config{
		Auth: o.Auth, Dialect: o.Dialect, HTTPClient: o.HTTPClient, TLSConfig: o.TLSConfig,
		Header: o.Header, Subprotocols: o.Subprotocols, AllowInsecure: o.AllowInsecure,
		OnConnect: o.OnConnect, OnEvent: o.OnEvent, Logger: o.Logger,

		DialTimeout:     v.duration("Timeouts.Dial", o.Timeouts.Dial, defaultDialTimeout),
		AuthTimeout:     v.duration("Timeouts.Auth", o.Timeouts.Auth, defaultAuthTimeout),
		VerdictWindow:   v.switchable(o.Timeouts.Verdict, defaultVerdictWindow),
		WriteTimeout:    v.duration("Timeouts.Write", o.Timeouts.Write, defaultWriteTimeout),
		ReadLimit:       int64(v.count("Limits.ReadLimit", int(o.Limits.ReadLimit), defaultReadLimit)),
		SendQueue:       v.count("Limits.SendQueue", o.Limits.SendQueue, defaultSendQueue),
		ReceiveBuffer:   v.count("Limits.ReceiveBuffer", o.Limits.ReceiveBuffer, defaultReceiveBuffer),
		KeepUnconfirmed: v.count("Limits.KeepUnconfirmed", o.Limits.KeepUnconfirmed, 0),
		PingInterval:    v.switchable(o.Liveness.PingInterval, defaultPingInterval),
		PongTimeout:     v.duration("Liveness.PongTimeout", o.Liveness.PongTimeout, defaultPongTimeout),

		Backoff:           o.Reconnect.Backoff,
		StableAfter:       v.duration("Reconnect.StableAfter", o.Reconnect.StableAfter, defaultStableAfter),
		InitialJitter:     v.duration("Reconnect.InitialJitter", o.Reconnect.InitialJitter, 0),
		MaxRetryAfter:     v.duration("Reconnect.MaxRetryAfter", o.Reconnect.MaxRetryAfter, defaultMaxRetryAfter),
		MaxAuthFailures:   v.count("Reconnect.MaxAuthFailures", o.Reconnect.MaxAuthFailures, defaultMaxAuthFailures),
		MaxProtocolErrors: v.count("Reconnect.MaxProtocolErrors", o.Reconnect.MaxProtocolErrors, defaultMaxProtocolErrors),
		Classify:          o.Reconnect.Classify,

		Renewal:        o.Renewal.Strategy,
		RefreshLead:    v.duration("Renewal.Lead", o.Renewal.Lead, 0),
		RefreshTimeout: v.duration("Renewal.Timeout", o.Renewal.Timeout, defaultRefreshTimeout),
		DrainTimeout:   v.duration("Renewal.Drain", o.Renewal.Drain, defaultDrainTimeout),
		TokenSource:    o.Renewal.Tokens,
	}
	if o.Renewal.Strategy < RenewRefresh || o.Renewal.Strategy > RenewNone {
		v.fail("Renewal.Strategy", fmt.Sprintf("is %d, not one of the Renew constants", int(o.Renewal.Strategy)))
	}
	if v.err != nil {
		return config{}, v.err
	}
	if cfg.Dialect == nil {
		cfg.Dialect = DefaultDialect
	}
	return cfg, nil
}

// validator collects the first invalid field of Options.
type validator struct{ err error }

func (v *validator) fail(field, why string) {
	if v.err == nil {
		v.err = fmt.Errorf("wsauth: Options.%s %s", field, why)
	}
}

// duration is d, or def when d is zero; negative is refused.
func (v *validator) duration(field string, d, def time.Duration) time.Duration {
	switch {
	case d < 0:
		v.fail(field, fmt.Sprintf("is negative (%s); zero means the default", d))
	case d == 0:
		return def
	}
	return d
}

// switchable is d, or def when d is zero; negative switches it off and is
// kept as it is.
func (v *validator) switchable(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// count is n, or def when n is zero; negative is refused.
func (v *validator) count(field string, n, def int) int {
	switch {
	case n < 0:
		v.fail(field, fmt.Sprintf("is negative (%d); zero means the default", n))
	case n == 0:
		return def
	}
	return n
}

// discardLogger is the logger of every client without one.
var discardLogger = slog.New(slog.DiscardHandler)

// shared is the transport of every client without an HTTPClient or a
// TLSConfig of its own: one pool of connections to ticket, login and token
// endpoints instead of one per client, and no HTTP clients built per
// client. The last client to close empties the pool, so that a program
// (or a test checking for leaked goroutines) whose clients are all closed
// holds no idle connections.
var shared sharedClients

type sharedClients struct {
	mu       sync.Mutex
	rest, hs *http.Client
	users    int
}

// join counts one more client on the shared transport and returns its
// REST and handshake clients.
func (s *sharedClients) join() (rest, hs *http.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rest == nil {
		s.rest = restClient(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
		s.hs = handshakeClient(s.rest)
	}
	s.users++
	return s.rest, s.hs
}

// leave counts a client off; the last one closes the idle connections.
func (s *sharedClients) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users--; s.users == 0 {
		s.rest.CloseIdleConnections()
	}
}

// WaitConnected waits until the client is connected and authenticated,
// or has stopped, or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		changed := watch(&c.changed)
		state, err := c.state, c.err
		c.mu.Unlock()
		switch state {
		case StateConnected:
			return nil
		case StateClosed:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			c.mu.Lock()
			last := c.lastErr
			c.mu.Unlock()
			if last != nil {
				return fmt.Errorf("wsauth: not connected: %w (last attempt: %v)", ctx.Err(), last)
			}
			return fmt.Errorf("wsauth: not connected: %w", ctx.Err())
		}
	}
}

// Send queues one message and waits until it is written to an
// authenticated connection, or fails. It returns:
//   - nil: the whole frame was handed to the operating system on a live,
//     authenticated connection. Like any socket write, it can still be lost
//     if that connection dies before the server reads it;
//   - ErrQueueFull at once when Limits.SendQueue sends are waiting;
//   - ctx's error if ctx ended while the message was still queued: it was
//     removed from the queue and will never be written;
//   - an error wrapping ErrDeliveryUnknown if the connection failed while
//     the frame was being written;
//   - the stop cause (ErrClosed after Close, a GaveUpError, …) if the
//     client stopped first.
//
// Sends are written in the order Send was called. While the client is
// reconnecting they wait, and are written only after the new connection has
// authenticated. data must not be modified until Send returns.
func (c *Client) Send(ctx context.Context, typ MessageType, data []byte) error {
	_, _, err := c.send(ctx, typ, data, false)
	return err
}

// SendConfirmed is Send that returns only once the server has read the
// message: after writing it the client pings, and the pong comes back only
// after the server's WebSocket layer has read everything written before
// the ping (several SendConfirmed calls share one ping). It returns:
//   - nil: the server read the message;
//   - an error wrapping ErrUnconfirmed: the message was written, but the
//     connection ended before the server confirmed it; it may or may not
//     have been read. The client never resends it on its own;
//   - ctx's error when ctx ends first: still queued, the message was never
//     written; once written, it may or may not be read;
//   - whatever Send returns otherwise.
//
// A confirmation costs a round trip; use it for the messages that matter,
// and Send for the rest.
func (c *Client) SendConfirmed(ctx context.Context, typ MessageType, data []byte) error {
	pc, seq, err := c.send(ctx, typ, data, true)
	if err != nil {
		return err
	}
	return pc.confirm(ctx, seq)
}

// send writes through the queue; it returns the connection it wrote on and
// the send's sequence number there.
func (c *Client) send(ctx context.Context, typ MessageType, data []byte, confirmed bool) (*physConn, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if pc := c.queue.fast(); pc != nil {
		seq, err := pc.writeQueued(typ, data, confirmed)
		return pc, seq, err
	}
	it, err := c.queue.enqueue()
	if err != nil {
		return nil, 0, err
	}
	defer c.queue.release(it)
	for {
		pc, err := c.queue.turn(it)
		if err != nil {
			return nil, 0, err
		}
		if pc != nil {
			// Once writing, the frame is finished whatever ctx does
			// (bounded by Timeouts.Write): a half-written frame would kill
			// the connection.
			seq, err := pc.writeQueued(typ, data, confirmed)
			return pc, seq, err
		}
		select {
		case <-it.wake:
		case <-ctx.Done():
			c.queue.cancel(it)
			return nil, 0, ctx.Err()
		}
	}
}

// SendText is Send with a text message.
func (c *Client) SendText(ctx context.Context, text string) error {
	return c.Send(ctx, MessageText, []byte(text))
}

// Receive returns the next application message, across reconnects, in a
// slice of its own. Refresh answers, keepalives and other protocol
// messages of the dialect never show up here. After the client stops,
// Receive returns what was already received and then the stop cause. A
// Receive whose ctx ends returns ctx's error and leaves the connection
// alone. With a ctx that cannot end (context.Background), Receive reads
// the socket itself instead of waiting for the client's reader to hand it
// a message: the fast path of a receive loop.
func (c *Client) Receive(ctx context.Context) (MessageType, []byte, error) {
	return c.receive(ctx, nil, true)
}

// ReceiveInto is Receive that reads the message into buf, reusing its
// capacity and growing it when the message is larger, and returns the
// filled slice. Called in a loop with the slice it returned, it receives
// without allocating.
func (c *Client) ReceiveInto(ctx context.Context, buf []byte) (MessageType, []byte, error) {
	return c.receive(ctx, buf, false)
}

func (c *Client) receive(ctx context.Context, buf []byte, own bool) (MessageType, []byte, error) {
	select {
	case m := <-c.inbox:
		return c.take(m, buf, own)
	default:
	}
	if ctx.Done() == nil {
		return c.receiveDirect(buf, own)
	}
	for {
		// The background reader may be leaving the role to receivers that
		// read on their own; this one cannot, so it asks for it.
		if pc := c.reading.Load(); pc != nil {
			pc.nudge()
		}
		c.readingMu.Lock()
		changed := watch(&c.readingChanged)
		c.readingMu.Unlock()
		select {
		case m := <-c.inbox:
			return c.take(m, buf, own)
		case <-changed:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-c.done:
			return c.final(buf, own)
		}
	}
}

// receiveDirect receives for a caller whose context cannot end: it takes
// the reader's role of the current connection and reads the socket
// itself, or takes what the background reader delivered meanwhile.
func (c *Client) receiveDirect(buf []byte, own bool) (MessageType, []byte, error) {
	for {
		c.readingMu.Lock()
		changed := watch(&c.readingChanged)
		c.readingMu.Unlock()
		pc := c.reading.Load()
		var role, dead chan struct{}
		if pc != nil {
			role, dead = pc.rtok, pc.dead
			pc.direct.Add(1)
		}
		select {
		case m := <-c.inbox:
			if pc != nil {
				pc.direct.Add(-1)
				pc.lastDirect.Store(time.Now().UnixNano())
			}
			return c.take(m, buf, own)
		case <-role:
			pc.direct.Add(-1)
			// What the background reader delivered before it gave the role
			// back comes first.
			select {
			case m := <-c.inbox:
				pc.lastDirect.Store(time.Now().UnixNano())
				pc.rtok <- struct{}{}
				return c.take(m, buf, own)
			default:
			}
			if typ, data, ok := pc.readDirect(buf, own); ok {
				return typ, data, nil
			}
		case <-dead:
			pc.direct.Add(-1)
			// Wait for the next connection, or the end.
			select {
			case m := <-c.inbox:
				return c.take(m, buf, own)
			case <-changed:
			case <-c.done:
				return c.final(buf, own)
			}
		case <-changed:
			if pc != nil {
				pc.direct.Add(-1)
			}
		case <-c.done:
			if pc != nil {
				pc.direct.Add(-1)
			}
			return c.final(buf, own)
		}
	}
}

// take returns a delivered message, in buf or a slice of its own, and its
// buffer to the pool.
func (c *Client) take(m message, buf []byte, own bool) (MessageType, []byte, error) {
	var data []byte
	if own {
		data = append([]byte(nil), *m.buf...)
	} else {
		data = append(buf[:0], *m.buf...)
	}
	putBuf(m.buf)
	return m.typ, data, nil
}

// final is what a receive returns once the client has stopped: what was
// already delivered, then the stop cause.
func (c *Client) final(buf []byte, own bool) (MessageType, []byte, error) {
	select {
	case m := <-c.inbox:
		return c.take(m, buf, own)
	default:
		return 0, nil, c.Err()
	}
}

// setReading makes pc the connection the application's receivers read.
func (c *Client) setReading(pc *physConn) {
	c.readingMu.Lock()
	c.reading.Store(pc)
	announce(&c.readingChanged)
	c.readingMu.Unlock()
}

// State returns the current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Err returns the stop cause once the client has stopped, nil before.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// Subprotocol returns the subprotocol of the current connection, "" when
// there is none or the client is not connected.
func (c *Client) Subprotocol() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.ws.Subprotocol()
}

// Close closes the connection with 1000 (normal closure) and stops the
// client. See CloseWith.
func (c *Client) Close() error { return c.CloseWith(StatusNormalClosure, "") }

// CloseWith closes the current connection with code and reason, stops
// reconnecting, fails every queued send with ErrClosed, cancels the
// context of a callback that is running, and returns once every goroutine
// of the client has ended and every event has been delivered. A send
// being written when Close is called finishes first. Called from inside
// OnConnect or OnEvent, it does all that but returns at once, without
// waiting for the callback it is called from. Calling it again, or after
// the client stopped on its own, does nothing more.
func (c *Client) CloseWith(code StatusCode, reason string) error {
	c.closeWith(code, reason, ErrClosed)
	return nil
}

func (c *Client) closeWith(code StatusCode, reason string, cause error) {
	c.mu.Lock()
	if c.closeCause == nil {
		if cause == nil {
			cause = ErrClosed
		}
		c.closeCode, c.closeReason, c.closeCause = code, reason, cause
	}
	c.mu.Unlock()
	c.cancel()
	if inCallback() {
		// The engine, or the event goroutine, is waiting for this callback
		// to return: waiting for them here would wait for ourselves. Both
		// end on their own once it returns.
		return
	}
	<-c.done
	<-c.events.done
}

// enter moves the client to state s and reports e, stamped at the change:
// a caller woken by the change (WaitConnected) never acts before the
// event's time.
func (c *Client) enter(s State, e Event) {
	e.Time = time.Now()
	c.mu.Lock()
	c.setStateLocked(s)
	c.mu.Unlock()
	c.emit(e)
}

func (c *Client) setStateLocked(s State) {
	if c.state == s {
		return
	}
	c.state = s
	announce(&c.changed)
}

// watch returns the channel that the next change will close, making it if
// nobody is watching yet; the lock guarding *ch is held. Most changes have
// no watcher, and then cost nothing.
func watch(ch *chan struct{}) chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
	}
	return *ch
}

// announce wakes the watchers of a change; the lock guarding *ch is held.
func announce(ch *chan struct{}) {
	if *ch != nil {
		close(*ch)
		*ch = nil
	}
}

func (c *Client) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if lvl := e.level(); c.log.Enabled(context.Background(), lvl) {
		c.log.LogAttrs(context.Background(), lvl, "wsauth "+e.Kind.String(), e.attrs()...)
	}
	c.events.emit(e)
}

func closeStatus(err error) StatusCode { return websocket.CloseStatus(err) }

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

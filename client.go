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

// MessageType is the type of a WebSocket data message.
type MessageType = websocket.MessageType

// Message types.
const (
	MessageText   = websocket.MessageText
	MessageBinary = websocket.MessageBinary
)

// StatusCode is a WebSocket close code.
type StatusCode = websocket.StatusCode

// Close codes the client treats specially.
const (
	StatusNormalClosure   = websocket.StatusNormalClosure
	StatusGoingAway       = websocket.StatusGoingAway
	StatusPolicyViolation = websocket.StatusPolicyViolation
)

// Defaults of Options.
const (
	DefaultSendQueue         = 256
	DefaultReceiveBuffer     = 64
	DefaultReadLimit         = 1 << 20
	DefaultDialTimeout       = 15 * time.Second
	DefaultAuthTimeout       = 10 * time.Second
	DefaultVerdictWindow     = 250 * time.Millisecond
	DefaultWriteTimeout      = 10 * time.Second
	DefaultPingInterval      = 25 * time.Second
	DefaultPongTimeout       = 10 * time.Second
	DefaultStableAfter       = 10 * time.Second
	DefaultMaxAuthFailures   = 5
	DefaultMaxProtocolErrors = 5
	DefaultMaxRetryAfter     = 5 * time.Minute
	DefaultRefreshTimeout    = 10 * time.Second
	DefaultDrainTimeout      = 5 * time.Second
)

// Options configures a Client. The zero value of every field is a usable
// default, documented on the field. Durations that can be switched off
// say so; a negative value switches them off.
type Options struct {
	// Auth supplies credentials before every connection attempt. Nil means
	// the connection carries none.
	Auth Authenticator
	// Dialect is the message and close-code vocabulary of the server.
	// Default DefaultDialect.
	Dialect Dialect

	// HTTPClient makes the handshake and the providers' REST calls. Its
	// Jar is ignored (CookieAuth brings its own), and its CheckRedirect
	// runs after the client's own rules: the handshake follows no
	// redirect, REST calls only those within their origin (see
	// RedirectPolicy). Default: a client of its
	// own with a clone of http.DefaultTransport and TLSConfig, whose idle
	// connections Close releases.
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
	// ReadLimit is the largest message accepted, in bytes, counted after
	// decompression; larger ones end the connection (close 1009). Default
	// 1 MiB.
	ReadLimit int64

	// SendQueue is how many sends may wait for a connection. Default 256.
	// Send fails at once with ErrQueueFull beyond it.
	SendQueue int
	// ReceiveBuffer is how many received messages wait for Receive before
	// the client stops reading from the socket. Default 64.
	ReceiveBuffer int
	// OnConnect runs after every successful authentication, before queued
	// sends are written; Session.Send writes ahead of the queue. Use it to
	// subscribe again or resend what the server may have missed. An error
	// ends that connection (retry with backoff). Default none.
	OnConnect func(ctx context.Context, s *Session) error

	// DialTimeout bounds the provider's work plus the handshake. Default
	// 15s.
	DialTimeout time.Duration
	// AuthTimeout bounds the in-band exchange after the upgrade. Default
	// 10s.
	AuthTimeout time.Duration
	// VerdictWindow is how long a credential the server can still refuse
	// after the upgrade (ticket, query, cookie, an in-band token) waits for
	// a verdict when the dialect has none of its own: the connection counts
	// as authenticated at the server's first confirmation or application
	// message, or once the window passes without a close. A close inside
	// the window is a refusal; so is a close within AuthTimeout of the
	// upgrade, before any application message, on a connection the window
	// let through (a late refusal). A server that announces an explicit
	// verdict (the reference server does) is waited for instead, up to
	// AuthTimeout. Negative: no window, wait for a confirmation or a first
	// message up to AuthTimeout. Default 250ms.
	VerdictWindow time.Duration
	// WriteTimeout bounds each frame written. Default 10s.
	WriteTimeout time.Duration
	// PingInterval is the time between liveness pings; negative disables
	// them. Default 25s.
	PingInterval time.Duration
	// PongTimeout is how long a ping may wait for its pong before the
	// connection counts as dead. Default 10s.
	PongTimeout time.Duration

	// Backoff paces reconnects. Default NewFullJitter() (500ms initial,
	// ×2, 30s cap, no attempt limit). backoff.ExponentialBackOff works too.
	// One value serves one client.
	Backoff backoff.BackOff
	// StableAfter is how long a connection must stay up for the backoff and
	// the failure counters to reset. Default 10s.
	StableAfter time.Duration
	// InitialJitter delays the first attempt by a random time up to this,
	// so that a fleet started together does not dial together. Default 0.
	InitialJitter time.Duration
	// MaxAuthFailures is how many consecutive credential rejections stop
	// the client with a GaveUpError. Default 5.
	MaxAuthFailures int
	// MaxProtocolErrors is how many consecutive protocol-error closes
	// (1002, 1003, 1007, 1009, 1010) stop the client. Default 5.
	MaxProtocolErrors int
	// MaxRetryAfter caps the server's Retry-After. Default 5m.
	MaxRetryAfter time.Duration
	// ReauthCodes are close codes that, like 1008, mean "get fresh
	// credentials" (for example 4401, 4403, 3005). Default none.
	ReauthCodes []StatusCode
	// Classify overrides the reconnect table; returning ActionDefault
	// falls back to the dialect and then to DefaultClassify. Default none.
	Classify func(Ending) Action

	// Renewal picks how the session is kept alive past its expiry. Default
	// RenewRefresh.
	Renewal Renewal
	// TokenSource supplies the tokens of refresh messages. Default: the
	// provider's token source when it has one (every built-in provider but
	// CookieAuth).
	TokenSource oauth2.TokenSource
	// RefreshLead is how long before expiry the refresh starts, before
	// jitter. Default: a fifth of the session's lifetime, at least 2s and
	// at most half the lifetime.
	RefreshLead time.Duration
	// RefreshTimeout bounds the wait for the refresh answer; it is cut
	// shorter when the session would expire first. Default 10s.
	RefreshTimeout time.Duration
	// DrainTimeout bounds how long a connection the client closes on
	// purpose (a rotation, a reconnect ahead of expiry) waits for the
	// server's last messages on it. Default 5s.
	DrainTimeout time.Duration

	// OnEvent receives every state change, in order, on a goroutine of its
	// own. It may call any method of the client. Default none.
	OnEvent func(Event)
	// Logger receives the same events as log records, credentials
	// redacted. Default: silent.
	Logger *slog.Logger
}

// Client owns one logical, authenticated connection across many physical
// ones. It connects, authenticates, keeps the session alive, and reconnects
// with fresh credentials when it must. Send and Receive work across
// reconnects; every method is safe for concurrent use.
type Client struct {
	url     *url.URL
	o       Options
	auth    Authenticator
	dialect Dialect
	hc      *http.Client // REST calls: same-origin redirects only
	wsHC    *http.Client // the handshake: no redirects
	ownHC   bool
	tokens  *TokenCache
	log     *slog.Logger
	bo      backoff.BackOff

	queue  *sendQueue
	inbox  chan inbound
	events *dispatcher

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
	connects    int

	// live counts physical connections; maxLive is its high-water mark,
	// which tests hold to one (two during a rotation).
	live, maxLive atomic.Int32

	// changed is closed and replaced at every state change, for
	// WaitConnected.
	changed chan struct{}
	done    chan struct{}
}

type inbound struct {
	typ  MessageType
	data []byte
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
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
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
		queue:   newSendQueue(o.SendQueue),
		inbox:   make(chan inbound, o.ReceiveBuffer),
		events:  newDispatcher(o.OnEvent),
		log:     o.Logger,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	hc, own := o.HTTPClient, false
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.TLSConfig != nil {
			tr.TLSClientConfig = o.TLSConfig.Clone()
		}
		hc, own = &http.Client{Transport: tr}, true
	}
	c.hc, c.ownHC = restClient(hc), own
	c.hc.Jar = nil
	c.wsHC = handshakeClient(c.hc)
	c.tokens = asTokenCache(o.TokenSource)
	if c.tokens == nil {
		if ts, ok := o.Auth.(tokenSourcer); ok {
			c.tokens = ts.tokenCache()
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.state = StateConnecting
	go c.run()
	return c, nil
}

func (o *Options) setDefaults() {
	if o.Dialect == nil {
		o.Dialect = DefaultDialect
	}
	setInt(&o.SendQueue, DefaultSendQueue)
	setInt(&o.ReceiveBuffer, DefaultReceiveBuffer)
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	setDur(&o.DialTimeout, DefaultDialTimeout)
	setDur(&o.AuthTimeout, DefaultAuthTimeout)
	setDur(&o.VerdictWindow, DefaultVerdictWindow)
	setDur(&o.WriteTimeout, DefaultWriteTimeout)
	setDur(&o.PingInterval, DefaultPingInterval)
	setDur(&o.PongTimeout, DefaultPongTimeout)
	setDur(&o.StableAfter, DefaultStableAfter)
	setDur(&o.MaxRetryAfter, DefaultMaxRetryAfter)
	setDur(&o.RefreshTimeout, DefaultRefreshTimeout)
	setDur(&o.DrainTimeout, DefaultDrainTimeout)
	setInt(&o.MaxAuthFailures, DefaultMaxAuthFailures)
	setInt(&o.MaxProtocolErrors, DefaultMaxProtocolErrors)
	if o.Backoff == nil {
		o.Backoff = NewFullJitter()
	}
}

func setInt(p *int, def int) {
	if *p <= 0 {
		*p = def
	}
}

func setDur(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}

// WaitConnected waits until the client is connected and authenticated,
// or has stopped, or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		changed := c.changed
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
//   - ErrQueueFull at once when Options.SendQueue sends are waiting;
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
	if err := ctx.Err(); err != nil {
		return err
	}
	it, err := c.queue.enqueue()
	if err != nil {
		return err
	}
	for {
		pc, err := c.queue.turn(it)
		if err != nil {
			return err
		}
		if pc != nil {
			// Once writing, the frame is finished whatever ctx does
			// (bounded by WriteTimeout): a half-written frame would kill
			// the connection.
			return pc.writeQueued(typ, data)
		}
		select {
		case <-it.wake:
		case <-ctx.Done():
			c.queue.cancel(it)
			return ctx.Err()
		}
	}
}

// SendText is Send with a text message.
func (c *Client) SendText(ctx context.Context, text string) error {
	return c.Send(ctx, MessageText, []byte(text))
}

// Receive returns the next application message, across reconnects. Refresh
// answers, keepalives and other protocol messages of the dialect never show
// up here. After the client stops, Receive returns what was already
// received and then the stop cause. A Receive whose ctx ends returns ctx's
// error and leaves the connection alone.
func (c *Client) Receive(ctx context.Context) (MessageType, []byte, error) {
	select {
	case m := <-c.inbox:
		return m.typ, m.data, nil
	default:
	}
	select {
	case m := <-c.inbox:
		return m.typ, m.data, nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-c.done:
		select {
		case m := <-c.inbox:
			return m.typ, m.data, nil
		default:
			return 0, nil, c.Err()
		}
	}
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
// reconnecting, fails every queued send with ErrClosed, and returns once
// every goroutine of the client has ended. A send being written when Close
// is called finishes first. Calling it again, or after the client stopped
// on its own, does nothing more.
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
	<-c.done
	// The dispatcher delivers what is pending and exits; a Close called
	// from the event callback must not wait for itself.
	if !c.events.onDispatcher() {
		<-c.events.done
	}
}

func (c *Client) connUp() {
	n := c.live.Add(1)
	for {
		m := c.maxLive.Load()
		if n <= m || c.maxLive.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *Client) connDown() { c.live.Add(-1) }

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
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	c.log.LogAttrs(context.Background(), e.level(), "wsauth "+e.Kind.String(), e.attrs()...)
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

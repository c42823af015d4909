package wsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// connectAside is connect on a goroutine of its own, which the caller
// waits for. A dial grows its goroutine's stack (HTTP, TLS, the dialect's
// JSON) well past what the supervisor needs while it waits on a live
// connection, and the runtime shrinks a stack only while a quarter of it is
// in use: dialed on the supervisor's goroutine, every idle client would keep
// the dial's stack.
func (c *Client) connectAside(ctx context.Context, why Reason, attempt int, rotating bool) (*physConn, Ending) {
	a := &aside{}
	a.wg.Add(1)
	go a.connect(c, ctx, why, attempt, rotating)
	a.wg.Wait()
	return a.pc, a.end
}

// aside carries connectAside's result back.
type aside struct {
	wg  sync.WaitGroup
	pc  *physConn
	end Ending
}

func (a *aside) connect(c *Client, ctx context.Context, why Reason, attempt int, rotating bool) {
	defer a.wg.Done()
	a.pc, a.end = c.connect(ctx, why, attempt, rotating)
}

// connect makes one physical connection: credentials, handshake, in-band
// exchange. On failure the Ending says how far it got.
func (c *Client) connect(ctx context.Context, why Reason, attempt int, rotating bool) (*physConn, Ending) {
	// The connection is allocated up front, for its redactor: the secrets
	// the attempt registers are the connection's.
	a, pc := &connAttempt{}, &physConn{}
	red, hs := &pc.redSet, &a.hs
	// A token the user wrote into the URL is as secret as the provider's.
	red.AddURL(c.url)
	*hs = Handshake{
		URL:           a.cloneURL(c.url),
		Header:        c.o.Header.Clone(),
		Subprotocols:  append(dialectSubprotocols(c.dialect), c.o.Subprotocols...),
		HTTPClient:    c.hc,
		allowInsecure: c.o.AllowInsecure,
		red:           red,
	}
	if hs.Header == nil {
		hs.Header = http.Header{}
	}
	dctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
	defer cancel()

	var proof Proof
	if c.auth != nil {
		var err error
		proof, err = c.auth.Prepare(dctx, why, hs)
		if err != nil {
			return nil, c.failed(ctx, PhaseCredentials, red, err)
		}
		if err := checkTransport(hs.URL, c.o.AllowInsecure); err != nil {
			return nil, c.failed(ctx, PhaseCredentials, red, err)
		}
	}

	hc := c.wsHC
	if hs.Jar != nil {
		withJar := *c.wsHC
		withJar.Jar = hs.Jar
		hc = &withJar
	}
	ws, resp, err := websocket.Dial(dctx, hs.URL.String(), &websocket.DialOptions{
		HTTPClient:   hc,
		HTTPHeader:   hs.Header,
		Subprotocols: hs.Subprotocols,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != 0 {
			return nil, c.failed(ctx, PhaseHandshake, red, httpErrorFrom("handshake", resp, red))
		}
		return nil, c.failed(ctx, PhaseHandshake, red, dialError(red, hs.URL, err))
	}
	ws.SetReadLimit(c.o.ReadLimit)
	if sp := ws.Subprotocol(); sp != "" && red.String(sp) != sp {
		ws.CloseNow()
		return nil, c.failed(ctx, PhaseHandshake, red, ErrEchoedCredential)
	}

	if !rotating {
		c.enter(StateAuthenticating, Event{Kind: EventAuthenticating, Attempt: attempt})
	}
	actx := a.authDeadline(ctx, c.o.AuthTimeout)
	defer actx.stop()
	a.conn = wsConn{c: ws}
	conn := &a.conn
	opened, err := c.dialect.Open(actx, conn, proof)
	if err == nil && proof.Exchange != nil {
		err = proof.Exchange(actx, conn)
	}
	if err != nil {
		ws.CloseNow()
		if ctx.Err() == nil && actx.Err() != nil {
			err = fmt.Errorf("wsauth: no verdict within the auth timeout (%s): %w", c.o.AuthTimeout, actx.Err())
		}
		return nil, c.failed(ctx, PhaseAuth, red, err)
	}

	// Without a verdict of the dialect's own, a credential the server can
	// still refuse after the upgrade waits for one (see VerdictPending).
	verdict := opened.Verdict
	await := verdict == VerdictPending && (proof.Provisional || proof.InBand != "")
	if verdict == VerdictPending && !await {
		verdict = VerdictHandshake
	}
	now := time.Now()
	expiry := proof.Expiry
	if opened.ExpiresIn > 0 {
		expiry = earliest(expiry, now.Add(opened.ExpiresIn))
	}
	pc.start(c, ws, now, expiry, !rotating, await, opened.Pending)
	if await {
		announced := resp != nil && resp.Header.Get(verdictHeader) == verdictAuthOK
		s, end := c.awaitVerdict(ctx, actx, pc, announced)
		if s.verdict == VerdictPending {
			return nil, end
		}
		verdict = s.verdict
		if s.expiresIn > 0 {
			pc.expiry = earliest(proof.Expiry, time.Now().Add(s.expiresIn))
		}
	}
	pc.verdict = verdict
	pc.weak = verdict == VerdictWindow || (verdict == VerdictHandshake && (proof.Provisional || c.auth == nil))
	return pc, Ending{}
}

// connAttempt is what one connection attempt allocates, in one piece, and
// drops once connected: the handshake the provider fills in, its URL, the
// auth deadline.
type connAttempt struct {
	hs   Handshake
	url  url.URL
	auth lazyContext
	conn wsConn
}

// authDeadline returns the attempt's auth deadline, timeout from now
// within parent.
func (a *connAttempt) authDeadline(parent context.Context, timeout time.Duration) *lazyContext {
	a.auth = lazyContext{parent: parent, deadline: time.Now().Add(timeout)}
	return &a.auth
}

// lazyContext is a context, with a deadline when deadline is set, whose
// timer and channel are made only when something uses it: with header,
// query, ticket or cookie auth and a dialect that exchanges nothing,
// nothing waits on the auth deadline, and a short connection may never
// use its own context; they do not pay for them.
type lazyContext struct {
	parent   context.Context
	deadline time.Time // none when zero

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	stopped bool
}

func (l *lazyContext) get() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil {
		if l.deadline.IsZero() {
			l.ctx, l.cancel = context.WithCancel(l.parent)
		} else {
			l.ctx, l.cancel = context.WithDeadline(l.parent, l.deadline)
		}
		if l.stopped {
			l.cancel()
		}
	}
	return l.ctx
}

// stop cancels the context, like its CancelFunc.
func (l *lazyContext) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.cancel != nil {
		l.cancel()
	}
}

func (l *lazyContext) Deadline() (time.Time, bool) { return l.get().Deadline() }
func (l *lazyContext) Done() <-chan struct{}       { return l.get().Done() }
func (l *lazyContext) Err() error                  { return l.get().Err() }
func (l *lazyContext) Value(key any) any           { return l.get().Value(key) }

// verdictHeader, on the 101, announces a server that ends every
// authentication with an explicit verdict (the reference server's auth_ok)
// or a close: the client waits for that instead of the verdict window.
const (
	verdictHeader = "Wsauth-Verdict"
	verdictAuthOK = "auth_ok"
)

// awaitVerdict waits for the server's verdict on pc: the reader's
// settlement (a confirmation, or the first application message), the
// verdict window passing without a close, or a refusal. A settlement of
// VerdictPending means pc was refused or the wait failed; the Ending says
// how, and pc is shut down.
func (c *Client) awaitVerdict(ctx context.Context, actx *lazyContext, pc *physConn, announced bool) (settlement, Ending) {
	var window <-chan time.Time
	if w := c.o.VerdictWindow; w > 0 && !announced && w < c.o.AuthTimeout {
		t := time.NewTimer(w)
		defer t.Stop()
		window = t.C
	}
	select {
	case s := <-pc.settled:
		return s, Ending{}
	case <-window:
		if actx.Err() != nil {
			// The auth deadline came too: the exchange had no verdict.
			pc.shutdown(0, "")
			return settlement{}, c.failed(ctx, PhaseAuth, pc.red, fmt.Errorf("wsauth: no verdict within the auth timeout (%s): %w", c.o.AuthTimeout, actx.Err()))
		}
		if pc.awaiting.CompareAndSwap(true, false) {
			return settlement{verdict: VerdictWindow}, Ending{}
		}
		return <-pc.settled, Ending{}
	case <-pc.dead:
		select {
		case s := <-pc.settled:
			// The first message came before the close: the session was
			// established, and the supervisor sees it end.
			return s, Ending{}
		default:
		}
		pc.shutdown(0, "")
		e := pc.ending(pc.connectedAt)
		e.Phase, e.Uptime = PhaseAuth, 0
		if ctx.Err() != nil {
			e.Local = true
		}
		return settlement{}, e
	case <-actx.Done():
		pc.shutdown(0, "")
		err := fmt.Errorf("wsauth: no verdict within the auth timeout (%s): %w", c.o.AuthTimeout, actx.Err())
		return settlement{}, c.failed(ctx, PhaseAuth, pc.red, err)
	}
}

// dialectSubprotocols are the subprotocols the dialect needs offered.
func dialectSubprotocols(d Dialect) []string {
	if sp, ok := d.(SubprotocolProvider); ok {
		return slices.Clone(sp.Subprotocols())
	}
	return nil
}

// failed builds the Ending of an attempt that did not get through.
func (c *Client) failed(ctx context.Context, phase Phase, red *redactor, err error) Ending {
	e := c.describe(phase, red, err)
	e.Local = ctx.Err() != nil
	return e
}

// describe is the one conversion from how an attempt or a connection
// ended to the Ending the policy classifies: the server's close frame and
// what the dialect says it means, the status and Retry-After of a refused
// HTTP request, an unverifiable certificate, and the cause scrubbed of the
// attempt's secrets.
func (c *Client) describe(phase Phase, red *redactor, err error) Ending {
	if badCertificate(err) {
		err = fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	e := Ending{Phase: phase, Err: scrubError(red, err)}
	var ce *CloseError
	switch {
	case closeStatus(err) != -1:
		e.Code, e.Reason = closeStatus(err), red.String(closeReason(err))
		e.Err = &CloseError{Code: e.Code, Reason: e.Reason}
	case errors.As(err, &ce):
		// The reason itself, not only the error's quoted text, is scrubbed:
		// quoting changes how a secret with quotes or backslashes looks.
		e.Code, e.Reason = ce.Code, red.String(ce.Reason)
		e.Err = &CloseError{Code: e.Code, Reason: e.Reason}
	}
	var he *HTTPError
	if errors.As(e.Err, &he) {
		e.HTTPStatus, e.RetryAfter = he.StatusCode, he.RetryAfter
	}
	if cc, ok := c.dialect.(CloseClassifier); ok && e.Code != 0 {
		e.CloseMeaning = cc.ClassifyClose(e.Code, e.Reason)
	}
	return e
}

// badCertificate reports a TLS certificate the client could not verify.
func badCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// dialError turns a failed dial into an error that carries no credential:
// coder/websocket wraps Go's *url.Error, whose text is the full URL with
// its query string.
func dialError(red *redactor, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("wsauth: dial %s: %w", red.URL(u), scrubError(red, ue.Err))
	}
	return fmt.Errorf("wsauth: dial %s: %w", red.URL(u), scrubError(red, err))
}

// cloneURL copies u into the attempt, for the provider to change.
func (a *connAttempt) cloneURL(u *url.URL) *url.URL {
	a.url = *u
	if u.User != nil {
		user := *u.User
		a.url.User = &user
	}
	return &a.url
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}

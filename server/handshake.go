package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// credential is what the handshake carries to prove who the client is. value is a token,
// a ticket or a session id: a secret, never logged.
type credential struct {
	method Method
	value  string
	// releasePreAuth gives back the pre-auth slot of a first-message handshake.
	releasePreAuth func()
	// stored is the store's answer for a ticket or cookie, asked before the upgrade.
	stored storedCredential
	// unrecognised says where the handshake carries something that looks like a credential
	// although no enabled pattern accepts it (method is then ""): "header", "subprotocol"
	// or "query". It is refused at once, rather than left waiting for an auth message that
	// will not come.
	unrecognised string
}

// serveWS runs a WebSocket handshake through the checks of docs/protocol.md, in order: rate
// limit, test faults, a well-formed upgrade, Origin, then the credential. Everything that can
// be refused with an HTTP status is refused before the upgrade; ticket, query and cookie
// failures are refused after it with a close code, because browsers cannot see the status.
//
// The handler runs on a goroutine of its own, started once the connection is authenticated,
// and net/http's goroutine returns (the connection is hijacked). The handshake's checks,
// the upgrade and the verification grow a goroutine's stack past 8 KiB, and a stack does not
// shrink below a quarter of what it holds: run on that goroutine, every idle connection
// would keep a 16 KiB stack, where a fresh goroutine blocked in Read needs a few.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if c := s.handshake(w, r); c != nil {
		go s.serveConn(c)
	}
}

// serveConn runs the handler on an authenticated connection, then closes the connection.
func (s *Server) serveConn(c *Conn) {
	defer s.finish(c)
	s.cfg.Handler.ServeWS(c.ctx, c)
	c.returned = true
}

// refuseClosed answers a handshake that comes after Close with 503.
func (s *Server) refuseClosed(w http.ResponseWriter, r *http.Request) {
	s.refuseHTTP(w, s.event(r, StageHandshake, ""), http.StatusServiceUnavailable, time.Second, "server closed")
}

// handshake runs the checks, the upgrade and the authentication of serveWS. It returns the
// authenticated, registered connection, or nil when it refused the handshake (and has
// cleaned up after it).
func (s *Server) handshake(w http.ResponseWriter, r *http.Request) *Conn {
	s.stats.handshakes.Add(1)
	if !s.enter() {
		s.refuseClosed(w, r)
		return nil
	}
	c := s.upgrade(w, r)
	if c == nil {
		s.wg.Done()
	}
	return c
}

// upgrade is handshake once the server has counted the connection in (Server.Close waits
// for it).
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) *Conn {
	ev := s.event(r, StageHandshake, "")
	ip := ev.ClientIP
	if ok, wait := s.handshakeLimit.allow(ip); !ok {
		s.refuseHTTP(w, ev, http.StatusTooManyRequests, wait, "rate limited")
		return nil
	}
	if status, retry, detail := s.fault(); status != 0 {
		s.refuseHTTP(w, ev, status, retry, detail)
		return nil
	}
	// A request that is not a valid upgrade must be refused before any credential is
	// looked at: a ticket is consumed only by a handshake that goes through.
	if status, detail := checkUpgrade(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
		}
		s.refuseHTTP(w, ev, status, 0, detail)
		return nil
	}
	origin := s.origins.check(r, s.requestScheme(r))
	if origin == originRefused {
		s.refuseHTTP(w, ev, http.StatusForbidden, 0, "origin not allowed")
		return nil
	}

	cred := s.findCredential(r)
	ev.Method = cred.method
	var id Identity
	var slot func() // the per-principal slot of a header or subprotocol handshake
	switch cred.method {
	case "":
		if cred.unrecognised == "query" {
			break // refused after the upgrade, where a browser can read the reason
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		detail := "no credential"
		if cred.unrecognised != "" {
			detail = "no credential the server recognises in the " + cred.unrecognised
		}
		s.refuseHTTPText(w, ev, http.StatusUnauthorized, 0, detail, "no credential")
		return nil
	case MethodHeader, MethodSubprotocol:
		var err error
		if id, err = s.verify(r.Context(), cred.value); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, err.Error())
			return nil
		}
		ev.Subject = id.Subject
		// Taken before the upgrade, so that over the cap the answer is a status with
		// Retry-After; the connection holds it once registered.
		var ok bool
		if slot, ok = s.acquireSlot(r.Context(), id.Subject); !ok {
			s.stats.principalCapped.Add(1)
			s.refuseHTTPText(w, ev, http.StatusTooManyRequests, principalRetryAfter, "too many connections for the principal", "too many connections")
			return nil
		}
		defer func() {
			if slot != nil { // not handed to a connection
				slot()
			}
		}()
	case MethodCookie:
		// Every browser sends Origin on a WebSocket handshake; a cookie without one comes
		// from a client that could send its allowed origin, or from a page of a context
		// that strips Origin, which must not ride the session.
		if origin == originAbsent && !s.cfg.AllowCookieWithoutOrigin {
			s.refuseHTTPText(w, ev, http.StatusForbidden, 0, "cookie handshake without Origin", "cookie authentication needs an Origin header")
			return nil
		}
		if !s.lookupStored(w, r, &cred, ev) {
			return nil
		}
	case MethodTicket:
		if !s.lookupStored(w, r, &cred, ev) {
			return nil
		}
	case MethodFirstMessage:
		release, ok := s.preAuth.Acquire(r.Context(), ip)
		if !ok {
			s.refuseHTTP(w, ev, http.StatusTooManyRequests, time.Second, "too many connections waiting for auth")
			return nil
		}
		// The slot is given back as soon as the auth message has been dealt with.
		defer release()
		cred.releasePreAuth = release
	}

	closeAlls := s.closeAllCount()
	// Every pattern ends with auth_ok or a close; the header tells a client
	// to wait for that verdict rather than guess one (docs/protocol.md).
	w.Header().Set(verdictHeader, verdictAuthOK)
	rec := &statusRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(rec, r, &s.acceptOpts)
	if err != nil {
		ev.Status = rec.status
		ev.Reason = http.StatusText(rec.status)
		ev.Detail = "upgrade failed"
		s.report(ev)
		return nil
	}
	ws.SetReadLimit(s.cfg.PreAuthReadLimit)

	c := newConn(s, ws, r)
	c.netConn = rec.conn
	// Every pattern gets the auth deadline, not only first-message: a ticket or session
	// store that hangs must not keep an unauthenticated socket open either.
	c.deadline, c.deadlineReason = time.Now().Add(s.cfg.AuthTimeout), ReasonAuthTimeout
	if !s.register(c, closeAlls) {
		s.refuseWS(ev, websocket.StatusGoingAway, ReasonShuttingDown, "server closed")
		_ = ws.Close(websocket.StatusGoingAway, ReasonShuttingDown)
		c.cancel()
		return nil
	}
	c.slot, slot = slot, nil
	c.startClock()

	if !s.authenticateConn(c, cred, id, ev) {
		<-c.superDone
		s.unregister(c)
		return nil
	}
	return c
}

// finish closes a connection whose handler has returned, with 1000, or panicked, with 1011,
// waits for its goroutines and unregisters it. A panic is recovered and logged with its
// stack, as net/http does for a handler of its own, so that one connection's bug does not
// end the process; http.ErrAbortHandler is not logged.
func (s *Server) finish(c *Conn) {
	defer s.wg.Done()
	code := websocket.StatusNormalClosure
	if !c.returned {
		code = websocket.StatusInternalError
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			if s.cfg.Logger != nil {
				s.log.Error("wsauth/server: handler panic", "remote", c.remoteAddr, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			} else {
				// Without a Logger a panic still must not vanish: net/http writes its
				// handlers' panics to the standard logger too.
				log.Printf("wsauth/server: panic serving %s: %v\n%s", c.remoteAddr, p, debug.Stack())
			}
		}
	}
	c.shutdown(code, "")
	<-c.superDone
	c.settleReader()
	<-c.readerDone
	c.pings.Wait() // the socket is closed: a ping still waiting returns now
	s.unregister(c)
}

// authenticateConn finishes authentication after the upgrade and reports the decision.
// On failure it has asked the connection to close with the pattern's code and reason.
func (s *Server) authenticateConn(c *Conn, cred credential, id Identity, ev AuthEvent) bool {
	refusal := ReasonUnauthorized
	switch cred.method {
	case MethodTicket:
		refusal = ReasonInvalidTicket
	case "":
		refusal = ReasonNoCredential
	}
	refuse := func(code websocket.StatusCode, reason, detail string) bool {
		// If the connection is already closing (auth timeout, Server.Close), that close is
		// what the client sees, so that is what is reported.
		if ccode, creason, closing := c.closeStatus(); closing {
			code, reason = ccode, creason
		}
		s.refuseWS(ev, code, reason, detail)
		c.shutdown(code, reason)
		return false
	}

	var credExpiry time.Time
	var ttl time.Duration
	var sessionID string
	switch cred.method {
	case "":
		return refuse(websocket.StatusPolicyViolation, refusal, "no credential the server recognises in the query")
	case MethodHeader, MethodSubprotocol:
		credExpiry, ttl = id.Expiry, id.SessionTTL
	case MethodTicket:
		d, err := cred.stored.ticket, cred.stored.err
		if err != nil {
			detail := "ticket unknown, used or expired"
			if !errors.Is(err, ErrTicketInvalid) {
				detail = "ticket store failed" // its error may quote the ticket
			}
			return refuse(websocket.StatusPolicyViolation, refusal, detail)
		}
		s.stats.ticketsConsumed.Add(1)
		id = Identity{Subject: d.Subject, Expiry: d.TokenExpiry, SessionTTL: d.SessionTTL}
		credExpiry, ttl = d.TokenExpiry, d.SessionTTL
	case MethodQuery:
		var err error
		if id, err = s.verify(c.ctx, cred.value); err != nil {
			return refuse(websocket.StatusPolicyViolation, refusal, err.Error())
		}
		credExpiry, ttl = id.Expiry, id.SessionTTL
	case MethodCookie:
		d, err := cred.stored.session, cred.stored.err
		if err != nil {
			detail := "no such session"
			if !errors.Is(err, ErrNoSession) {
				detail = "session store failed"
			}
			return refuse(websocket.StatusPolicyViolation, refusal, detail)
		}
		if !time.Now().Before(d.Expires) {
			return refuse(websocket.StatusPolicyViolation, refusal, "session expired")
		}
		id = Identity{Subject: d.Subject, Expiry: d.Expires}
		credExpiry, sessionID = d.Expires, cred.value
	case MethodFirstMessage:
		token, code, reason, detail := s.readAuthMessage(c)
		cred.releasePreAuth()
		if code != 0 {
			return refuse(code, reason, detail)
		}
		var err error
		if id, err = s.verify(c.ctx, token); err != nil {
			return refuse(websocket.StatusPolicyViolation, refusal, err.Error())
		}
		credExpiry, ttl = id.Expiry, id.SessionTTL
	}
	ev.Subject = id.Subject

	if c.slot == nil {
		slot, ok := s.acquireSlot(c.ctx, id.Subject)
		if !ok {
			s.stats.principalCapped.Add(1)
			return refuse(websocket.StatusTryAgainLater, ReasonTooManyConnections, errTooManyConns.Error())
		}
		c.slot = slot
	}
	exp, err := s.authenticate(c, Principal{Subject: id.Subject, Method: cred.method}, credExpiry, ttl, sessionID)
	if err != nil {
		c.releaseSlot()
		return refuse(websocket.StatusPolicyViolation, refusal, err.Error())
	}
	// Every pattern ends with auth_ok: a client that authenticated on the
	// handshake learns the session's lifetime too (it may be shorter than
	// its credential's), and a browser learns that the refusal it could
	// still have received did not come.
	if err := c.send(serverMessage{Type: typeAuthOK, ExpiresIn: expiresIn(exp, time.Now())}); err != nil {
		return refuse(websocket.StatusGoingAway, "", "auth_ok not delivered")
	}
	c.ws.SetReadLimit(s.cfg.ReadLimit)
	c.mu.Lock()
	c.live = true
	c.heardAt = time.Now()
	c.readerAt = c.heardAt.Add(readerGrace)
	c.mu.Unlock()
	c.setDeadline(exp, ReasonSessionExpired) // wakes the clock for the expiry notice and pings
	s.stats.authenticated.Add(1)
	s.accept(ev, "authenticated")
	return true
}

// readAuthMessage waits for the first message of the first-message pattern. The session clock
// enforces the deadline by closing the socket, which ends the read. A non-zero code means
// refused.
func (s *Server) readAuthMessage(c *Conn) (token string, code websocket.StatusCode, reason, detail string) {
	typ, data, err := c.ws.Read(context.Background())
	if err != nil {
		switch {
		case errors.Is(err, websocket.ErrMessageTooBig):
			// coder/websocket has already sent 1009.
			return "", websocket.StatusMessageTooBig, "", "auth message over the pre-auth read limit"
		default:
			// Either the clock closed the socket at the deadline (authenticateConn then
			// reports that close) or the peer went away; echo the peer's code if it sent one.
			code := websocket.StatusProtocolError
			if cs := websocket.CloseStatus(err); cs != -1 {
				code = cs
			}
			return "", code, "", "connection ended before auth"
		}
	}
	msgType, token, ok := parseClientMessage(typ, data)
	if !ok || msgType != typeAuth {
		return "", websocket.StatusPolicyViolation, ReasonExpectedAuth, "first message is not an auth message"
	}
	return token, 0, "", ""
}

// authenticate makes c an authenticated connection of p and returns its expiry. It checks
// the revocation list and the server's state under the same lock that Revoke and Close take,
// so a connection is either seen by them or refused here, never neither.
func (s *Server) authenticate(c *Conn, p Principal, credExpiry time.Time, ttl time.Duration, sessionID string) (time.Time, error) {
	p.ExpiresAt = s.expiryFor(time.Now(), credExpiry, ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return time.Time{}, errors.New("server closed")
	}
	if s.revoked[p.Subject] {
		return time.Time{}, errRevoked
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return time.Time{}, errors.New("connection closing")
	}
	c.principal = p
	c.authenticated = true
	c.sessionID = sessionID
	// The auth deadline no longer applies; until the clock is woken it simply waits.
	c.deadline, c.deadlineReason = p.ExpiresAt, ReasonSessionExpired
	return p.ExpiresAt, nil
}

// findCredential looks for a credential in the order of docs/protocol.md; the first enabled
// pattern present wins. The zero credential means none and first-message auth disabled.
func (s *Server) findCredential(r *http.Request) credential {
	if s.methods[MethodHeader] {
		if token, ok := bearerToken(r); ok {
			return credential{method: MethodHeader, value: token}
		}
	}
	if s.methods[MethodSubprotocol] {
		if token, ok := s.subprotocolToken(r); ok {
			return credential{method: MethodSubprotocol, value: token}
		}
	}
	q := r.URL.Query()
	if s.methods[MethodTicket] && q.Has(s.cfg.TicketParam) {
		return credential{method: MethodTicket, value: q.Get(s.cfg.TicketParam)}
	}
	if s.methods[MethodQuery] {
		for _, p := range s.cfg.TokenParams {
			if q.Has(p) {
				return credential{method: MethodQuery, value: q.Get(p)}
			}
		}
	}
	if s.methods[MethodCookie] {
		if ck, err := r.Cookie(s.cfg.CookieName); err == nil && ck.Value != "" {
			return credential{method: MethodCookie, value: ck.Value}
		}
	}
	// Cookies are left out: a browser sends them unasked, also to a first-message socket.
	if where := s.unrecognisedCredential(r, q); where != "" {
		return credential{unrecognised: where}
	}
	if s.methods[MethodFirstMessage] {
		return credential{method: MethodFirstMessage}
	}
	return credential{}
}

// unrecognisedCredential says where a handshake without a usable credential carries
// something meant as one: an Authorization header of any scheme (or of a disabled
// pattern), a Sec-WebSocket-Protocol entry that mentions a bearer token, or a query
// parameter with a credential's name (see credentialParam). "" for none.
func (s *Server) unrecognisedCredential(r *http.Request, q url.Values) string {
	if strings.TrimSpace(r.Header.Get("Authorization")) != "" {
		return "header"
	}
	for _, line := range r.Header.Values("Sec-WebSocket-Protocol") {
		if strings.Contains(strings.ToLower(line), "bearer") {
			return "subprotocol"
		}
	}
	for name := range q {
		if s.credentialParam(name) {
			return "query"
		}
	}
	return ""
}

// credentialParam reports whether a query parameter's name says it carries a credential:
// the configured ticket and token parameters, or a name containing "token", "ticket",
// "jwt", "bearer", "apikey", "api_key", "api-key", "password" or "secret", or equal to
// "auth" or "authorization" (case-insensitive).
func (s *Server) credentialParam(name string) bool {
	if name == s.cfg.TicketParam || slices.Contains(s.cfg.TokenParams, name) {
		return true
	}
	n := strings.ToLower(name)
	if n == "auth" || n == "authorization" {
		return true
	}
	for _, w := range []string{"token", "ticket", "jwt", "bearer", "apikey", "api_key", "api-key", "password", "secret"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// principalRetryAfter is the Retry-After of a handshake refused by the per-principal cap.
const principalRetryAfter = 5 * time.Second

// errTooManyConns is the refusal of a principal at Config.MaxConnsPerPrincipal.
var errTooManyConns = errors.New("too many connections for the principal")

// acquireSlot takes one of subject's Config.MaxConnsPerPrincipal slots, on this instance or
// (Config.Limits) the deployment's, or reports false when subject holds them all. Without a
// cap it succeeds with a release that does nothing.
func (s *Server) acquireSlot(ctx context.Context, subject string) (release func(), ok bool) {
	if s.principalSlots == nil {
		return func() {}, true
	}
	release, ok = s.principalSlots.Acquire(ctx, subject)
	if !ok {
		return nil, false
	}
	return sync.OnceFunc(release), true
}

// subprotocolToken finds a bearer entry among the offered subprotocols and decodes it. An
// entry that does not decode still counts as present, with an empty token that verify
// refuses: the client meant to authenticate this way.
func (s *Server) subprotocolToken(r *http.Request) (string, bool) {
	for _, line := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, entry := range strings.Split(line, ",") {
			entry = strings.TrimSpace(entry)
			for _, prefix := range s.cfg.BearerPrefixes {
				if len(entry) < len(prefix) || !strings.EqualFold(entry[:len(prefix)], prefix) {
					continue
				}
				raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(entry[len(prefix):], "="))
				if err != nil {
					return "", true
				}
				return string(raw), true
			}
		}
	}
	return "", false
}

// checkUpgrade is coder/websocket's own validation of an upgrade request, done early so that
// nothing is consumed for a request Accept would refuse.
func checkUpgrade(r *http.Request) (status int, detail string) {
	switch {
	case !r.ProtoAtLeast(1, 1):
		return http.StatusUpgradeRequired, "not HTTP/1.1"
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return http.StatusUpgradeRequired, "not an upgrade"
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return http.StatusUpgradeRequired, "not a websocket upgrade"
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "method is not GET"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusBadRequest, "unsupported websocket version"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, "need exactly one Sec-WebSocket-Key"
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, "bad Sec-WebSocket-Key"
	}
	return 0, ""
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// statusRecorder remembers the status Accept answered with; Unwrap lets Accept reach the
// Hijacker underneath.
type statusRecorder struct {
	http.ResponseWriter
	status int
	conn   net.Conn // the hijacked connection
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack hijacks the connection underneath and remembers it, so that a peer that stopped
// answering can be dropped without waiting out coder/websocket's close handshake.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.conn = nc
	}
	return nc, brw, err
}

// enter admits a handshake unless the server is closed; the caller must call s.wg.Done.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// register adds c to the live connections, unless the server is closed. closeAlls is the CloseAll count
// when its handshake began: a CloseAll since then found c missing from the
// snapshot, so c is closed the same way now.
func (s *Server) register(c *Conn, closeAlls uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	if s.closeAlls != closeAlls {
		c.shutdown(s.lastCloseAll.code, s.lastCloseAll.reason)
	}
	return true
}

func (s *Server) closeAllCount() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeAlls
}

// unregister removes c from the live connections once its socket is closed, and gives back
// its per-principal slot first: once Stats no longer counts c, its slot is free.
func (s *Server) unregister(c *Conn) {
	c.releaseSlot()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// This file holds what several instances of the server need to act as one: the Cluster that
// carries revocations between them, the Limits that let them share rate limits and
// connection caps, and the handling of a shared store that cannot be reached. package
// server/redisstore implements all of it on Redis; without Config.Cluster and Config.Limits
// an instance is on its own.

// ErrStoreUnavailable is wrapped by the errors of a TicketStore, SessionStore or Cluster
// whose backend cannot be reached (connection refused, timeout, a Redis that is loading).
// The server fails closed on it: the ticket and login endpoints, the logout endpoint and
// ticket and cookie handshakes answer 503 Service Unavailable with Retry-After, and nothing
// is authenticated. A store that does not answer within Config.AuthTimeout during a
// handshake is treated the same way.
var ErrStoreUnavailable = errors.New("wsauth/server: store unavailable")

// storeRetryAfter is the Retry-After of a 503 caused by an unavailable store: long enough for
// a restarted Redis to be reconnected to, short enough not to keep clients away needlessly.
const storeRetryAfter = 2 * time.Second

// clusterPublishTimeout bounds a Cluster.Publish made by Revoke, Unrevoke or a logout.
const clusterPublishTimeout = 5 * time.Second

// SecretHash returns the hex SHA-256 of a bearer secret (a ticket, a session id): the only
// form in which such a secret may leave the process. Cluster events name cookie sessions by
// it, and a store shared between instances should key its entries by it, so that neither a
// message nor a key in the store can be replayed as the credential. The secrets the server
// makes are 256 random bits, so the hash needs no salt.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ClusterEventKind says what a ClusterEvent asks every instance to do.
type ClusterEventKind string

// The kinds of ClusterEvent.
const (
	// ClusterRevoke revokes Subject, as Server.Revoke: its live connections are closed with
	// 1008 "Revoked" and its credentials refused.
	ClusterRevoke ClusterEventKind = "revoke"
	// ClusterUnrevoke lifts the revocation of Subject, as Server.Unrevoke.
	ClusterUnrevoke ClusterEventKind = "unrevoke"
	// ClusterEndSession ends the cookie session whose SecretHash is Session: its live
	// connections are closed with 1008 "Logged out".
	ClusterEndSession ClusterEventKind = "end-session"
	// ClusterSync carries in Revoked the complete list of revoked subjects; it replaces the
	// instance's own list. A Cluster delivers it whenever it has (re)connected, because
	// events may have been missed meanwhile. The server then also closes the cookie
	// connections whose sessions the SessionStore no longer knows.
	ClusterSync ClusterEventKind = "sync"
)

// ClusterEvent is one change that every instance of a deployment must apply. It never
// carries a secret: a session is named by its SecretHash.
type ClusterEvent struct {
	// Kind says what to do.
	Kind ClusterEventKind
	// Subject is the principal of ClusterRevoke and ClusterUnrevoke.
	Subject string
	// Session is the SecretHash of the session id of ClusterEndSession.
	Session string
	// Revoked is the complete revocation list of ClusterSync.
	Revoked []string
}

// Cluster carries revocations between the instances of a deployment, so that Revoke,
// Unrevoke and a logout on one instance take effect on all. Each Server needs its own
// Cluster value. Implementations must be safe for concurrent use.
type Cluster interface {
	// Publish hands an event made on this instance to the other instances; the server
	// applies it locally once Publish has returned, so that a ClusterSync read before the
	// publish cannot undo it. An error (wrapping ErrStoreUnavailable when the backend is
	// down) is logged and the event applied locally all the same; the implementation
	// should deliver it once it can.
	Publish(ctx context.Context, ev ClusterEvent) error
	// Subscribe starts delivering the events of the other instances to apply, one at a time,
	// and returns stop, which ends the delivery and returns once apply has returned for the
	// last time. New calls Subscribe once; Close calls stop.
	Subscribe(apply func(ClusterEvent)) (stop func(), err error)
}

// Limits makes the server's rate limiters and connection caps. With Config.Limits nil every
// instance keeps its own buckets and counts, so N instances give a client N times the
// budget; a shared implementation (redisstore) keeps one budget for the whole deployment.
// Implementations must be safe for concurrent use.
type Limits interface {
	// RateLimiter returns the limiter called name: a token bucket per key refilled at
	// perSecond tokens a second (zero: never refilled) up to burst. The names and keys:
	// "handshake", "ticket", "login" and "token", keyed by client IP; "login-account",
	// keyed by the username of a password login, and "token-client", keyed by the client
	// id of a token request, which count failed attempts only (see RateRefunder). It is
	// called only for enabled limits, once per limit, by New. A nil result keeps that
	// limit in the instance.
	RateLimiter(name string, perSecond float64, burst int) RateLimiter
	// SlotLimiter returns the cap called name: at most max connections held at once per key,
	// across the deployment. The server asks for "principal", keyed by subject, when
	// Config.MaxConnsPerPrincipal is positive. A nil result keeps the cap in the instance.
	SlotLimiter(name string, max int) SlotLimiter
}

// RateLimiter is one family of rate limits, a token bucket per key.
type RateLimiter interface {
	// Allow takes one token from key's bucket. When there is none it reports false and how
	// long until there will be one, at least a second, for Retry-After. An implementation
	// whose backend is down decides itself what to do (redisstore falls back to buckets in
	// the process); it cannot make the server fail open.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration)
}

// RateRefunder is what a RateLimiter implements, besides Allow, to count failures only. The
// per-account limits ("login-account", "token-client") take a token before they check a
// password, so that concurrent guesses cannot overdraw the bucket, and give it back with
// Refund when the password was right. A shared RateLimiter without Refund counts every
// attempt, successful ones too.
type RateRefunder interface {
	// Refund gives back one token of key's bucket, never above its burst.
	Refund(ctx context.Context, key string)
}

// SlotLimiter caps the connections held at once per key.
type SlotLimiter interface {
	// Acquire takes a slot of key, or reports false when key holds max slots already. The
	// caller must call release exactly once when the connection ends.
	Acquire(ctx context.Context, key string) (release func(), ok bool)
}

// storedCredential is what the ticket or session store said about a handshake's credential.
// The store is asked before the upgrade, so that an unavailable store is answered 503 with
// Retry-After, which a client retries, rather than with a close that blames the credential.
type storedCredential struct {
	ticket  TicketData
	session SessionData
	err     error
}

// lookupStored consumes the ticket or looks up the cookie session of cred before the
// upgrade. It answers 503 itself and returns false when the store is unavailable or does not
// answer within AuthTimeout; any other outcome, a refusal included, is left in cred.stored
// for authenticateConn, which refuses after the upgrade as the browser patterns must.
func (s *Server) lookupStored(w http.ResponseWriter, r *http.Request, cred *credential, ev AuthEvent) bool {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.AuthTimeout)
	defer cancel()
	var err error
	detail := "ticket store unavailable"
	switch cred.method {
	case MethodTicket:
		cred.stored.ticket, err = s.cfg.TicketStore.Consume(ctx, cred.value)
	case MethodCookie:
		cred.stored.session, err = s.cfg.SessionStore.Get(ctx, cred.value)
		detail = "session store unavailable"
	}
	if err != nil && (errors.Is(err, ErrStoreUnavailable) || ctx.Err() != nil) {
		s.refuseHTTP(w, ev, http.StatusServiceUnavailable, storeRetryAfter, detail)
		return false
	}
	cred.stored.err = err
	return true
}

// refuseStore answers an endpoint request whose store call failed: 503 with Retry-After when
// the store is unavailable, 500 otherwise. The store's error is not quoted: it may name the
// key.
func (s *Server) refuseStore(w http.ResponseWriter, ev AuthEvent, err error, detail string) {
	if errors.Is(err, ErrStoreUnavailable) {
		s.refuseHTTP(w, ev, http.StatusServiceUnavailable, storeRetryAfter, detail+": unavailable")
		return
	}
	s.refuseHTTP(w, ev, http.StatusInternalServerError, 0, detail)
}

// writeStoreError is refuseStore for the logout endpoint, which reports no AuthEvent.
func writeStoreError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, ErrStoreUnavailable) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(int(storeRetryAfter/time.Second)))
	}
	http.Error(w, http.StatusText(status), status)
}

// joinCluster wires Config.Limits and Config.Cluster into a new server.
func (s *Server) joinCluster() error {
	if lim := s.cfg.Limits; lim != nil {
		for _, l := range []struct {
			shared *RateLimiter
			name   string
			rate   float64
			burst  int
		}{
			{&s.handshakeLimit.shared, "handshake", s.cfg.HandshakeRate, s.cfg.HandshakeBurst},
			{&s.ticketLimit.shared, "ticket", s.cfg.TicketRate, s.cfg.TicketBurst},
			{&s.loginLimit.shared, "login", s.cfg.LoginRate, s.cfg.LoginBurst},
			{&s.tokenLimit.shared, "token", s.cfg.LoginRate, s.cfg.LoginBurst},
			{&s.accountLimit.shared, "login-account", s.cfg.LoginAccountRate, s.cfg.LoginAccountBurst},
			{&s.clientLimit.shared, "token-client", s.cfg.LoginAccountRate, s.cfg.LoginAccountBurst},
		} {
			if l.rate >= 0 {
				*l.shared = lim.RateLimiter(l.name, l.rate, l.burst)
			}
		}
		if s.principalSlots != nil {
			if slots := lim.SlotLimiter("principal", s.cfg.MaxConnsPerPrincipal); slots != nil {
				s.principalSlots = slots
			}
		}
	}
	if s.cfg.Cluster == nil {
		return nil
	}
	stop, err := s.cfg.Cluster.Subscribe(s.applyClusterEvent)
	if err != nil {
		return fmt.Errorf("wsauth/server: joining the cluster: %w", err)
	}
	s.leaveCluster = sync.OnceFunc(stop)
	return nil
}

// publish hands an event applied here to the other instances, if there are any.
func (s *Server) publish(ev ClusterEvent) {
	if s.cfg.Cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterPublishTimeout)
	defer cancel()
	if err := s.cfg.Cluster.Publish(ctx, ev); err != nil {
		s.log.Error("cluster publish failed: other instances learn of it only when the cluster recovers",
			"kind", string(ev.Kind), "subject", ev.Subject, "error", err)
	}
}

// applyClusterEvent applies an event of another instance, without publishing it again.
func (s *Server) applyClusterEvent(ev ClusterEvent) {
	switch ev.Kind {
	case ClusterRevoke:
		if ev.Subject != "" {
			s.revokeLocal(ev.Subject)
		}
	case ClusterUnrevoke:
		s.unrevokeLocal(ev.Subject)
	case ClusterEndSession:
		if ev.Session != "" {
			s.closeSessionHash(ev.Session)
		}
	case ClusterSync:
		s.syncRevoked(ev.Revoked)
	default:
		s.log.Warn("unknown cluster event ignored", "kind", string(ev.Kind))
	}
}

// revokeLocal is Revoke on this instance only.
func (s *Server) revokeLocal(subject string) int {
	s.mu.Lock()
	s.revoked[subject] = true
	conns := s.snapshotLocked(func(c *Conn) bool { return c.isAuthenticated() && c.Principal().Subject == subject })
	s.mu.Unlock()
	return shutdownAll(conns, websocket.StatusPolicyViolation, ReasonRevoked)
}

// unrevokeLocal is Unrevoke on this instance only.
func (s *Server) unrevokeLocal(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.revoked, subject)
}

// closeSessionHash closes the connections authenticated by the cookie session whose
// SecretHash is h with 1008 "Logged out".
func (s *Server) closeSessionHash(h string) int {
	conns := s.snapshot(func(c *Conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sessionID != "" && SecretHash(c.sessionID) == h
	})
	return shutdownAll(conns, websocket.StatusPolicyViolation, ReasonLoggedOut)
}

// syncRevoked replaces the revocation list with the cluster's and closes what it revokes;
// then it closes the cookie connections whose session has ended while events may have been
// missed. A session store that cannot answer closes nothing.
func (s *Server) syncRevoked(subjects []string) {
	set := make(map[string]bool, len(subjects))
	for _, sub := range subjects {
		set[sub] = true
	}
	s.mu.Lock()
	s.revoked = set
	revoked := s.snapshotLocked(func(c *Conn) bool { return c.isAuthenticated() && set[c.Principal().Subject] })
	cookies := s.snapshotLocked(func(c *Conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sessionID != ""
	})
	s.mu.Unlock()
	shutdownAll(revoked, websocket.StatusPolicyViolation, ReasonRevoked)
	for _, c := range cookies {
		c.mu.Lock()
		id := c.sessionID
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AuthTimeout)
		_, err := s.cfg.SessionStore.Get(ctx, id)
		cancel()
		if errors.Is(err, ErrNoSession) {
			c.shutdown(websocket.StatusPolicyViolation, ReasonLoggedOut)
		}
	}
}

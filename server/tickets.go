package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// TicketData is what a ticket stands for: the principal of the bearer token that minted it.
type TicketData struct {
	// Subject is the principal the ticket authenticates.
	Subject string
	// TokenExpiry is the expiry of the token that minted the ticket (zero = none); a
	// connection opened with the ticket never outlives it.
	TokenExpiry time.Time
	// IssuedAt is when the ticket was minted.
	IssuedAt time.Time
	// SessionTTL carries Identity.SessionTTL of the minting token (0 = Config.SessionTTL).
	SessionTTL time.Duration
}

// TicketStore keeps single-use tickets between the ticket endpoint and the handshake. An
// implementation shared by several server instances (Redis, a database) makes tickets usable
// on any of them. Implementations must be safe for concurrent use.
type TicketStore interface {
	// Put stores d under ticket for ttl; a ttl that is zero or negative stores a ticket that
	// is already expired.
	Put(ctx context.Context, ticket string, d TicketData, ttl time.Duration) error
	// Consume atomically removes and returns the ticket; ErrTicketInvalid if unknown, already
	// used, or expired.
	Consume(ctx context.Context, ticket string) (TicketData, error)
}

// ErrTicketInvalid is returned by TicketStore.Consume for a ticket that is unknown, already
// used or expired.
var ErrTicketInvalid = errors.New("wsauth/server: invalid or expired ticket")

// sweepInterval is how often at most the memory stores look for expired entries.
const sweepInterval = time.Minute

// MemoryTicketStore is the in-memory TicketStore, for a single server instance. Expired
// tickets are swept lazily by Put, at most once per minute; there is no background goroutine.
type MemoryTicketStore struct {
	mu        sync.Mutex
	tickets   map[string]ticketEntry
	lastSweep time.Time
}

type ticketEntry struct {
	data    TicketData
	expires time.Time
}

// NewMemoryTicketStore returns an empty MemoryTicketStore.
func NewMemoryTicketStore() *MemoryTicketStore {
	return &MemoryTicketStore{tickets: make(map[string]ticketEntry)}
}

// Put stores the ticket; see TicketStore.
func (m *MemoryTicketStore) Put(_ context.Context, ticket string, d TicketData, ttl time.Duration) error {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepInterval {
		m.lastSweep = now
		for k, e := range m.tickets {
			if !now.Before(e.expires) {
				delete(m.tickets, k)
			}
		}
	}
	m.tickets[ticket] = ticketEntry{data: d, expires: now.Add(ttl)}
	return nil
}

// Consume removes the ticket and returns its data; see TicketStore. The removal and the
// lookup happen under one lock, so of many concurrent callers exactly one wins.
func (m *MemoryTicketStore) Consume(_ context.Context, ticket string) (TicketData, error) {
	now := time.Now()
	m.mu.Lock()
	e, ok := m.tickets[ticket]
	delete(m.tickets, ticket)
	m.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return TicketData{}, ErrTicketInvalid
	}
	return e.data, nil
}

// Len reports how many tickets are stored, expired ones not yet swept included.
func (m *MemoryTicketStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tickets)
}

// ticketResponse is the body of a successful POST to the ticket endpoint.
type ticketResponse struct {
	Ticket    string  `json:"ticket"`
	ExpiresIn float64 `json:"expires_in"`
}

// serveTicket mints a ticket for the principal of the request's bearer token.
func (s *Server) serveTicket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	ev := s.event(r, StageTicket, "")
	if ok, wait := s.ticketLimit.allow(ev.ClientIP); !ok {
		s.refuseHTTP(w, ev, http.StatusTooManyRequests, wait, "rate limited")
		return
	}
	token, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, "no bearer token")
		return
	}
	id, err := s.verify(r.Context(), token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, err.Error())
		return
	}
	ev.Subject = id.Subject

	ticket := randomID()
	now := time.Now()
	data := TicketData{Subject: id.Subject, TokenExpiry: id.Expiry, IssuedAt: now, SessionTTL: id.SessionTTL}
	if err := s.cfg.TicketStore.Put(r.Context(), ticket, data, s.cfg.TicketTTL); err != nil {
		// The store's error may quote the key, which is the ticket: do not log it.
		s.refuseStore(w, ev, err, "ticket store failed")
		return
	}
	s.stats.ticketsIssued.Add(1)
	s.accept(ev, "ticket issued")
	writeJSON(w, http.StatusOK, ticketResponse{Ticket: ticket, ExpiresIn: seconds(s.cfg.TicketTTL)})
}

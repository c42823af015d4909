package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"sync"
	"time"
)

// SessionData is a cookie session: who logged in and until when.
type SessionData struct {
	// Subject is the principal of the session.
	Subject string
	// Created is when the session started.
	Created time.Time
	// Expires is when the session ends; connections it authenticates never outlive it.
	Expires time.Time
}

// SessionStore keeps cookie sessions. Implementations must be safe for concurrent use.
type SessionStore interface {
	// Create stores d under a new unguessable id and returns the id.
	Create(ctx context.Context, d SessionData) (id string, err error)
	// Get returns the session; ErrNoSession if the id is unknown or the session expired.
	Get(ctx context.Context, id string) (SessionData, error)
	// Delete removes the session; deleting an unknown id is not an error.
	Delete(ctx context.Context, id string) error
}

// ErrNoSession is returned by SessionStore.Get for an unknown or expired session.
var ErrNoSession = errors.New("wsauth/server: no such session")

// MemorySessionStore is the in-memory SessionStore, for a single server instance. Session ids
// are 256 random bits, base64url. Expired sessions are swept lazily by Create, at most once
// per minute; there is no background goroutine.
type MemorySessionStore struct {
	mu        sync.Mutex
	sessions  map[string]SessionData
	lastSweep time.Time
}

// NewMemorySessionStore returns an empty MemorySessionStore.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{sessions: make(map[string]SessionData)}
}

// Create stores d under a new random id; see SessionStore.
func (m *MemorySessionStore) Create(_ context.Context, d SessionData) (string, error) {
	id := randomID()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepInterval {
		m.lastSweep = now
		for k, s := range m.sessions {
			if !now.Before(s.Expires) {
				delete(m.sessions, k)
			}
		}
	}
	m.sessions[id] = d
	return id, nil
}

// Get returns the session; see SessionStore.
func (m *MemorySessionStore) Get(_ context.Context, id string) (SessionData, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.sessions[id]
	if !ok {
		return SessionData{}, ErrNoSession
	}
	if !time.Now().Before(d.Expires) {
		delete(m.sessions, id)
		return SessionData{}, ErrNoSession
	}
	return d, nil
}

// Delete removes the session; see SessionStore.
func (m *MemorySessionStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

// Len reports how many sessions are stored, expired ones not yet swept included.
func (m *MemorySessionStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// maxLoginBody bounds the login request body.
const maxLoginBody = 16 << 10

// loginRequest is the body of POST /api/login: a username and password, or a bearer token.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Token    string `json:"token"`
}

// serveLogin starts a cookie session for a user with the right password or a valid token.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	ev := s.event(r, StageLogin, "")
	if ok, wait := s.loginLimit.allow(ev.ClientIP); !ok {
		s.refuseHTTP(w, ev, http.StatusTooManyRequests, wait, "rate limited")
		return
	}
	// Requiring a JSON content type keeps a cross-site HTML form from logging a victim in
	// (a form cannot send application/json without a CORS preflight).
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.refuseHTTP(w, ev, http.StatusBadRequest, 0, "content type is not application/json")
		return
	}
	var req loginRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err := dec.Decode(&req); err != nil {
		s.refuseHTTP(w, ev, http.StatusBadRequest, 0, "malformed body")
		return
	}

	var subject string
	switch {
	case req.Token != "" && req.Username == "" && req.Password == "":
		id, err := s.verify(r.Context(), req.Token)
		if err != nil {
			s.stats.loginsFailed.Add(1)
			s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, err.Error())
			return
		}
		subject = id.Subject
	case req.Token == "" && req.Username != "":
		// Per account, from all IPs together: the per-IP limit alone lets a botnet guess
		// one password from many addresses. The answer is the same for unknown names.
		if ok, wait := s.accountLimit.take(req.Username); !ok {
			s.refuseHTTPText(w, ev, http.StatusTooManyRequests, wait, "account rate limited", "too many failed logins for this account")
			return
		}
		if !s.checkPassword(req.Username, req.Password) {
			s.stats.loginsFailed.Add(1)
			s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, "bad username or password")
			return
		}
		s.accountLimit.refund(req.Username)
		subject = req.Username
		if s.isRevoked(subject) {
			s.stats.loginsFailed.Add(1)
			s.refuseHTTP(w, ev, http.StatusUnauthorized, 0, errRevoked.Error())
			return
		}
	default:
		s.refuseHTTP(w, ev, http.StatusBadRequest, 0, "need username and password, or token")
		return
	}
	ev.Subject = subject

	now := time.Now()
	id, err := s.cfg.SessionStore.Create(r.Context(), SessionData{Subject: subject, Created: now, Expires: now.Add(s.cfg.LoginTTL)})
	if err != nil {
		s.refuseStore(w, ev, err, "session store failed")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     s.cfg.CookieName,
		Value:    id,
		Path:     "/",
		MaxAge:   int(s.cfg.LoginTTL / time.Second),
		HttpOnly: true,
		Secure:   s.requestScheme(r) == "https" || s.cfg.CookieSecure,
		SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	s.stats.loginsOK.Add(1)
	s.accept(ev, "logged in")
	w.WriteHeader(http.StatusNoContent)
}

// checkPassword reports whether password is user's.
func (s *Server) checkPassword(user, password string) bool {
	return checkSecret(s.cfg.Users, user, password)
}

// checkSecret reports whether secret is the one stored under name. It compares hashes in
// constant time and spends the same work on unknown names, so that neither the secret nor
// the existence of the name leaks through timing.
func checkSecret(secrets map[string]string, name, secret string) bool {
	want, known := secrets[name]
	if !known {
		want = "\x00wsauth: unknown name"
	}
	got := sha256.Sum256([]byte(secret))
	exp := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(got[:], exp[:]) == 1 && known
}

// serveLogout ends the session of the request's cookie and closes the connections it
// authenticated with 1008 "Logged out". It answers 204 whether or not there was a session.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	if ck, err := r.Cookie(s.cfg.CookieName); err == nil && ck.Value != "" {
		if err := s.cfg.SessionStore.Delete(r.Context(), ck.Value); err != nil {
			s.log.Warn("session store delete failed", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeStoreError(w, err)
			return
		}
		s.closeSession(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     s.cfg.CookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   s.requestScheme(r) == "https" || s.cfg.CookieSecure,
		SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

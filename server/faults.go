package server

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// This file holds the fault hooks: what a test does to the server to see how a client copes
// (closes, revocation, expiry, refused and paused handshakes, going-away notices), callable
// directly or, with Config.TestControls, over HTTP under Config.ControlPrefix.

// CloseAll closes every open WebSocket, authenticated or still authenticating, with code and
// reason, and returns how many it closed. It does not wait for the close handshakes.
func (s *Server) CloseAll(code websocket.StatusCode, reason string) int {
	s.mu.Lock()
	s.closeAlls++
	s.lastCloseAll = closeFrame{code, reason}
	conns := s.snapshotLocked(func(*Conn) bool { return true })
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.shutdown(code, reason) {
			n++
		}
	}
	return n
}

// Revoke closes the live connections of subject with 1008 "Revoked" and refuses its
// credentials (tokens, tickets, cookie sessions, refreshes, password logins) until Unrevoke.
// With Config.Cluster every instance does the same. It returns how many connections it
// closed on this instance.
func (s *Server) Revoke(subject string) int {
	s.publish(ClusterEvent{Kind: ClusterRevoke, Subject: subject})
	return s.revokeLocal(subject)
}

// Unrevoke lifts Revoke, on every instance with Config.Cluster: the subject's credentials
// are accepted again.
func (s *Server) Unrevoke(subject string) {
	s.publish(ClusterEvent{Kind: ClusterUnrevoke, Subject: subject})
	s.unrevokeLocal(subject)
}

// ExpireSessions makes the sessions of subject ("" for everyone) expire now: their
// connections close with 1008 "Session expired". It returns how many.
func (s *Server) ExpireSessions(subject string) int {
	conns := s.snapshot(func(c *Conn) bool {
		return c.isAuthenticated() && (subject == "" || c.Principal().Subject == subject)
	})
	return shutdownAll(conns, websocket.StatusPolicyViolation, ReasonSessionExpired)
}

// closeSession closes the connections authenticated by cookie session id with 1008
// "Logged out", on every instance with Config.Cluster.
func (s *Server) closeSession(id string) int {
	h := SecretHash(id)
	n := s.closeSessionHash(h)
	s.publish(ClusterEvent{Kind: ClusterEndSession, Session: h})
	return n
}

func shutdownAll(conns []*Conn, code websocket.StatusCode, reason string) int {
	n := 0
	for _, c := range conns {
		if c.shutdown(code, reason) {
			n++
		}
	}
	return n
}

// RefuseHandshakes makes the next n handshakes fail with status (after the rate limit,
// before anything else); 429 and 503 carry Retry-After: 1. n <= 0 cancels an earlier call.
func (s *Server) RefuseHandshakes(status int, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseStatus, s.refuseLeft = status, max(0, n)
}

// Pause answers every handshake with 503 and Retry-After until d has passed; d <= 0 ends a
// pause.
func (s *Server) Pause(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pausedUntil = time.Now().Add(d)
}

// fault returns the status a test fault imposes on this handshake, if any.
func (s *Server) fault() (status int, retry time.Duration, detail string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuseLeft > 0 && s.refuseStatus != 0 {
		s.refuseLeft--
		status = s.refuseStatus
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			retry = time.Second
		}
		return status, retry, "refused by test fault"
	}
	if now.Before(s.pausedUntil) {
		return http.StatusServiceUnavailable, s.pausedUntil.Sub(now), "paused by test fault"
	}
	return 0, 0, ""
}

// GoingAway sends {"type":"going_away","reason":…} on every authenticated connection and
// returns on how many it was delivered. The connections stay open: it is the client's cue to
// move to a new one.
func (s *Server) GoingAway(reason string) int {
	conns := s.snapshot(func(c *Conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.live && !c.closing
	})
	var wg sync.WaitGroup
	var n atomic.Int64
	for _, c := range conns {
		wg.Go(func() {
			if c.send(serverMessage{Type: typeGoingAway, Reason: reason}) == nil {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// controlRequest is the union of the control endpoints' JSON bodies.
type controlRequest struct {
	Code    int     `json:"code"`
	Reason  string  `json:"reason"`
	Subject string  `json:"subject"`
	Status  int     `json:"status"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
}

// serveControl serves POST <ControlPrefix><name>; it answers {"affected":N}.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request, name string) {
	switch name {
	case "close-all", "revoke", "unrevoke", "expire", "refuse", "pause", "going-away":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	var req controlRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "malformed JSON body", http.StatusBadRequest)
			return
		}
	}
	var n int
	switch name {
	case "close-all":
		code := websocket.StatusCode(req.Code)
		if req.Code == 0 {
			code = websocket.StatusNormalClosure
		}
		if !validCloseCode(code) || len(req.Reason) > 123 {
			http.Error(w, "code must be 1000-1014 (not 1004-1006) or 3000-4999, reason at most 123 bytes", http.StatusBadRequest)
			return
		}
		n = s.CloseAll(code, req.Reason)
	case "revoke", "unrevoke":
		if req.Subject == "" {
			http.Error(w, "subject is required", http.StatusBadRequest)
			return
		}
		if name == "revoke" {
			n = s.Revoke(req.Subject)
		} else {
			s.Unrevoke(req.Subject)
		}
	case "expire":
		n = s.ExpireSessions(req.Subject)
	case "refuse":
		if req.Status < 400 || req.Status > 599 {
			http.Error(w, "status must be 4xx or 5xx", http.StatusBadRequest)
			return
		}
		s.RefuseHandshakes(req.Status, req.Count)
	case "pause":
		s.Pause(time.Duration(min(req.Seconds, 24*60*60) * float64(time.Second)))
	case "going-away":
		if len(req.Reason) > 1024 {
			http.Error(w, "reason too long", http.StatusBadRequest)
			return
		}
		n = s.GoingAway(req.Reason)
	}
	writeJSON(w, http.StatusOK, map[string]int{"affected": n})
}

// validCloseCode reports whether code may be sent in a close frame.
func validCloseCode(code websocket.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

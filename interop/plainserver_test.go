package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The ticket, query-token and cookie servers of this module are written
// the way applications write them on net/http and github.com/coder/websocket:
// no wsauth code. They accept the upgrade, check the credential, and then
// either serve or close 1008 at once; none of them sends an auth_ok. What
// they share is below: the application after authentication (an echo that
// also speaks the common refresh messages and ends sessions whose token
// expired), and the hooks a test pulls (an administrator's close, an
// outage).

// plainServer is the part of an application the three servers share.
type plainServer struct {
	idp *idp
	srv *httptest.Server
	mux *http.ServeMux
	// greet makes the server say hello first, as many do.
	greet bool

	// running counts request handlers and the goroutines they start.
	running sync.WaitGroup

	mu         sync.Mutex
	live       map[*websocket.Conn]*grant
	outage     int // requests still to answer 503
	retryAfter int // seconds
	accepted   int // authenticated connections
	refused    int // connections closed at once for a bad credential
	received   []string
	refreshes  []string // the tokens of accepted refreshes
}

// grant is what a connection was authenticated as, and until when.
type grant struct {
	sub string

	mu      sync.Mutex
	exp     time.Time
	revoked bool
}

func (g *grant) expiry() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exp
}

func (g *grant) extend(exp time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exp = exp
}

func newPlainServer(t *testing.T, p *idp) *plainServer {
	t.Helper()
	s := &plainServer{idp: p, mux: http.NewServeMux(), live: map[*websocket.Conn]*grant{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(func() {
		// httptest does not wait for hijacked connections: end them, then
		// wait for their handlers.
		s.mu.Lock()
		for c := range s.live {
			c.CloseNow()
		}
		s.mu.Unlock()
		s.srv.Close()
		waitGroupWithin(t, "a handler of the plain server", &s.running)
	})
	return s
}

func (s *plainServer) url(path string) string { return s.srv.URL + path }

func (s *plainServer) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(s.srv.URL, "http") + path
}

// serveHTTP is the front door: a load balancer that answers 503 during an
// outage, then the application's routes.
func (s *plainServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.running.Add(1)
	defer s.running.Done()
	s.mu.Lock()
	down := s.outage > 0
	if down {
		s.outage--
	}
	retry := s.retryAfter
	s.mu.Unlock()
	if down {
		w.Header().Set("Retry-After", fmt.Sprint(retry))
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// startOutage answers the next n requests, whatever they are, with 503 and
// Retry-After.
func (s *plainServer) startOutage(n, retryAfterSeconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage, s.retryAfter = n, retryAfterSeconds
}

// closeSessions is the administrator closing every live connection.
func (s *plainServer) closeSessions(code websocket.StatusCode, reason string) {
	s.closeWhere(code, reason, func(*grant) bool { return true })
}

func (s *plainServer) closeWhere(code websocket.StatusCode, reason string, match func(*grant) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, g := range s.live {
		if match(g) {
			s.goRun(func() { c.Close(code, reason) })
		}
	}
}

// goRun runs f on a goroutine the cleanup waits for.
func (s *plainServer) goRun(f func()) {
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		f()
	}()
}

func (s *plainServer) refuse(c *websocket.Conn, reason string) {
	s.mu.Lock()
	s.refused++
	s.mu.Unlock()
	c.Close(websocket.StatusPolicyViolation, reason)
}

type plainStats struct {
	accepted, refused int
	received          []string
	refreshes         []string
}

func (s *plainServer) stats() plainStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return plainStats{accepted: s.accepted, refused: s.refused,
		received: append([]string(nil), s.received...), refreshes: append([]string(nil), s.refreshes...)}
}

// serve is the application on an authenticated connection: an echo. It
// also answers {"type":"refresh","token":…} with refresh_ok (and the new
// token's lifetime) or refresh_failed, and closes 1008 "Session expired"
// when the session outlives its token.
func (s *plainServer) serve(ctx context.Context, c *websocket.Conn, g *grant) {
	s.mu.Lock()
	s.accepted++
	s.live[c] = g
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.live, c)
		s.mu.Unlock()
	}()
	done := make(chan struct{})
	defer close(done)
	s.goRun(func() { s.expire(c, g, done) })

	if s.greet {
		hello, _ := json.Marshal(map[string]string{"type": "welcome", "user": g.sub})
		if c.Write(ctx, websocket.MessageText, hello) != nil {
			return
		}
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			Type  string `json:"type"`
			Token string `json:"token"`
		}
		if typ == websocket.MessageText && json.Unmarshal(data, &m) == nil && m.Type == "refresh" {
			if c.Write(ctx, websocket.MessageText, s.refresh(g, m.Token)) != nil {
				return
			}
			continue
		}
		s.mu.Lock()
		s.received = append(s.received, string(data))
		s.mu.Unlock()
		if c.Write(ctx, typ, data) != nil {
			return
		}
	}
}

func (s *plainServer) refresh(g *grant, token string) []byte {
	sub, exp, err := s.idp.verify(token)
	if err != nil || sub != g.sub {
		return []byte(`{"type":"refresh_failed"}`)
	}
	g.extend(exp)
	s.mu.Lock()
	s.refreshes = append(s.refreshes, token)
	s.mu.Unlock()
	return fmt.Appendf(nil, `{"type":"refresh_ok","expires_in":%d}`, int(time.Until(exp)/time.Second))
}

// expire closes the connection once its grant has expired.
func (s *plainServer) expire(c *websocket.Conn, g *grant, done <-chan struct{}) {
	t := time.NewTimer(time.Until(g.expiry()))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if left := time.Until(g.expiry()); left > 0 {
			t.Reset(left)
			continue
		}
		c.Close(websocket.StatusPolicyViolation, "Session expired")
		return
	}
}

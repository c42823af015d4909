package dialecttest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Slack is Slack Socket Mode (https://api.slack.com/apis/socket-mode):
//
//	POST /api/apps.connections.open   Authorization: Bearer <app token>
//	  → {"ok":true,"url":"ws://…/link/?ticket=…&app_id=…"}
//	  or {"ok":false,"error":"invalid_auth"} (still HTTP 200, as Slack's Web API does)
//	GET /link/?ticket=…               the WebSocket; each ticket works once
//	server  {"type":"hello","num_connections":N,"debug_info":{…},"connection_info":{"app_id":…}}
//	server  {"type":"disconnect","reason":…}   (Disconnect)
//	server  event envelopes                    (Send)
//	client  {"envelope_id":…}                  acknowledgements (Acks)
//
// A ticket that is unknown or used is refused before the upgrade with 401.
// Tokens records the bearer tokens presented to the endpoint.
type Slack struct {
	base
	allowList

	// URLBase, when set, replaces "ws://127.0.0.1:port/link/" in the URLs
	// the endpoint hands out. Set before the first call.
	URLBase string

	smu        sync.Mutex
	tickets    map[string]bool // issued and unused
	issued     []string
	opens      int
	failOpen   []string
	refuseDial int
	acks       []string
	last       *peer
}

// NewSlack starts a server whose endpoint accepts the app tokens passed to
// Allow.
func NewSlack(t testing.TB) *Slack {
	s := &Slack{tickets: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/apps.connections.open", s.open)
	mux.HandleFunc("/link/", s.serve)
	s.start(t, mux)
	return s
}

// OpenURL is the apps.connections.open endpoint.
func (s *Slack) OpenURL() string { return s.HTTPURL() + "/api/apps.connections.open" }

// Placeholder is a WebSocket URL on the server without a ticket: what a
// client dials before it has asked the endpoint.
func (s *Slack) Placeholder() string { return s.wsURL("/link/") }

// Opens counts the calls to apps.connections.open.
func (s *Slack) Opens() int {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.opens
}

// FailOpen makes the next calls to the endpoint answer
// {"ok":false,"error":e}, one per error.
func (s *Slack) FailOpen(errs ...string) {
	s.smu.Lock()
	s.failOpen = append(s.failOpen, errs...)
	s.smu.Unlock()
}

// RefuseDials makes the next n WebSocket handshakes fail with 401 even
// with a valid ticket (which they consume), as for a URL that expired.
func (s *Slack) RefuseDials(n int) {
	s.smu.Lock()
	s.refuseDial += n
	s.smu.Unlock()
}

// Issued returns every ticket the endpoint handed out, in order.
func (s *Slack) Issued() []string {
	s.smu.Lock()
	defer s.smu.Unlock()
	return append([]string(nil), s.issued...)
}

// Acks returns the envelope ids the clients acknowledged.
func (s *Slack) Acks() []string {
	s.smu.Lock()
	defer s.smu.Unlock()
	return append([]string(nil), s.acks...)
}

func (s *Slack) open(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.presented(tok)
	s.smu.Lock()
	s.opens++
	var fail string
	if len(s.failOpen) > 0 {
		fail, s.failOpen = s.failOpen[0], s.failOpen[1:]
	}
	s.smu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case fail != "":
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": fail})
		return
	case tok == "":
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "not_authed"})
		return
	case !s.ok(tok):
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	ticket := base64.RawURLEncoding.EncodeToString(raw[:])
	s.smu.Lock()
	s.tickets[ticket] = true
	s.issued = append(s.issued, ticket)
	s.smu.Unlock()
	base := s.URLBase
	if base == "" {
		base = s.Placeholder()
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": base + "?ticket=" + ticket + "&app_id=A0DIALECT"})
}

func (s *Slack) serve(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.smu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	refuse := s.refuseDial > 0
	if refuse {
		s.refuseDial--
	}
	s.smu.Unlock()
	if !valid || refuse {
		http.Error(w, "invalid_ticket", http.StatusUnauthorized)
		return
	}
	p, ok := s.accept(w, r, nil)
	if !ok {
		return
	}
	defer s.drop(p)
	hello, _ := json.Marshal(map[string]any{
		"type":            "hello",
		"num_connections": s.Live(),
		"debug_info":      map[string]any{"host": "applink-dialecttest", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": "A0DIALECT"},
	})
	// The connection is counted and becomes the one Send writes to before
	// hello is written, so that a client that has read hello finds the
	// server ready; hello still goes first, as wmu is held until it is
	// written and every other write waits for it.
	p.wmu.Lock()
	s.authenticated(p, ticket)
	s.smu.Lock()
	s.last = p
	s.smu.Unlock()
	err := p.writeLocked(s.ctx, hello)
	p.wmu.Unlock()
	if err != nil {
		return
	}
	for {
		_, data, err := p.ws.Read(s.ctx)
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(data, &ack) == nil && ack.EnvelopeID != "" {
			s.smu.Lock()
			s.acks = append(s.acks, ack.EnvelopeID)
			s.smu.Unlock()
			s.update(func() {})
		}
	}
}

// Disconnect sends {"type":"disconnect","reason":reason} to every
// connection and returns how many it was sent to.
func (s *Slack) Disconnect(reason string) int {
	msg, _ := json.Marshal(map[string]any{"type": "disconnect", "reason": reason,
		"debug_info": map[string]any{"host": "applink-dialecttest"}})
	n := 0
	for _, p := range s.authedPeers() {
		if p.write(s.ctx, msg) == nil {
			n++
		}
	}
	return n
}

// Send delivers an events_api envelope with id and a message event of
// text to the newest connection; false when there is none.
func (s *Slack) Send(id, text string) bool {
	s.smu.Lock()
	p := s.last
	s.smu.Unlock()
	if p == nil {
		return false
	}
	msg, _ := json.Marshal(map[string]any{
		"envelope_id": id, "type": "events_api", "accepts_response_payload": false,
		"payload": map[string]any{"event": map[string]any{"type": "message", "text": text}},
	})
	return p.write(s.ctx, msg) == nil
}

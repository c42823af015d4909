package dialecttest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// HomeAssistant is the authentication phase and a sliver of the command
// phase of the Home Assistant WebSocket API
// (https://developers.home-assistant.io/docs/api/websocket), at
// /api/websocket:
//
//	server  {"type":"auth_required","ha_version":…}
//	client  {"type":"auth","access_token":…}
//	server  {"type":"auth_ok","ha_version":…}
//	    or  {"type":"auth_invalid","message":…}, then a close (1000)
//
// After auth_ok it answers the command {"id":N,"type":"ping"} with
// {"id":N,"type":"pong"} and every other command with an unknown_command
// result, as Home Assistant does.
type HomeAssistant struct {
	base
	allowList

	// Version is the ha_version sent. Set before the first connection.
	Version string
	// AuthTimeout closes a connection that sends no auth message in time.
	// Default 10s, like Home Assistant. Set before the first connection.
	AuthTimeout time.Duration
}

// NewHomeAssistant starts a server that accepts the tokens passed to Allow.
func NewHomeAssistant(t testing.TB) *HomeAssistant {
	s := &HomeAssistant{Version: "2026.4.0", AuthTimeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/websocket", s.serve)
	s.start(t, mux)
	return s
}

// URL is the WebSocket API's URL.
func (s *HomeAssistant) URL() string { return s.wsURL("/api/websocket") }

type haMsg struct {
	ID          int64  `json:"id,omitempty"`
	Type        string `json:"type"`
	AccessToken string `json:"access_token,omitempty"`
	HAVersion   string `json:"ha_version,omitempty"`
	Message     string `json:"message,omitempty"`
}

func (s *HomeAssistant) serve(w http.ResponseWriter, r *http.Request) {
	p, ok := s.accept(w, r, nil)
	if !ok {
		return
	}
	defer s.drop(p)
	ctx := s.ctx
	if s.send(p, haMsg{Type: "auth_required", HAVersion: s.Version}) != nil {
		return
	}
	_, data, err := readWithin(ctx, p.ws, s.AuthTimeout, websocket.StatusNormalClosure, "")
	if err != nil {
		return
	}
	var m haMsg
	if json.Unmarshal(data, &m) != nil || m.Type != "auth" {
		_ = s.send(p, haMsg{Type: "auth_invalid", Message: "Auth message incorrectly formatted"})
		_ = p.ws.Close(websocket.StatusNormalClosure, "")
		return
	}
	s.presented(m.AccessToken)
	if !s.ok(m.AccessToken) {
		_ = s.send(p, haMsg{Type: "auth_invalid", Message: "Invalid access token or password"})
		_ = p.ws.Close(websocket.StatusNormalClosure, "")
		return
	}
	s.authenticated(p, m.AccessToken)
	if s.send(p, haMsg{Type: "auth_ok", HAVersion: s.Version}) != nil {
		return
	}
	for {
		_, data, err := p.ws.Read(ctx)
		if err != nil {
			return
		}
		var cmd haMsg
		if json.Unmarshal(data, &cmd) != nil {
			continue
		}
		var reply any
		if cmd.Type == "ping" {
			reply = haMsg{ID: cmd.ID, Type: "pong"}
		} else {
			reply = map[string]any{"id": cmd.ID, "type": "result", "success": false,
				"error": map[string]string{"code": "unknown_command", "message": "Unknown command."}}
		}
		if s.send(p, reply) != nil {
			return
		}
	}
}

func (s *HomeAssistant) send(p *peer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.write(s.ctx, b)
}

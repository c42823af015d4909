package dialecttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Centrifugo is the bidirectional JSON client protocol of Centrifugo v5+
// (https://centrifugal.dev/docs/transports/client_protocol, codes from
// https://centrifugal.dev/docs/server/codes), at /connection/websocket:
//
//	client  {"id":N,"connect":{"token":…}}
//	server  {"id":N,"connect":{"client":…,"version":…,"expires":true,"ttl":S,"ping":25,"pong":true}}
//	client  {"id":M,"refresh":{"token":…}}
//	server  {"id":M,"refresh":{"client":…,"version":…,"expires":true,"ttl":S}}
//	server  {}        a ping; the client answers {}
//
// An unknown token is refused with disconnect 3500 "invalid token", an
// expired one (Expire) with the error reply 109 "token expired". A session
// with a TTL that is not refreshed in time is closed with 3005 "connection
// expired". Several commands may share a frame, one a line, and with Batch
// the server puts several replies and pushes in one frame too. An rpc
// {"id":N,"rpc":{"method":…,"data":D}} is answered {"id":N,"rpc":{"data":D}}.
type Centrifugo struct {
	base
	allowList

	// TTL is the session lifetime the connect and refresh replies report;
	// zero means sessions do not expire. Set before the first connection.
	TTL time.Duration
	// Batch makes the server join messages in one frame: the connect reply
	// with a publication, each ping with a publication. Set before the
	// first connection.
	Batch bool

	cmu         sync.Mutex
	expired     map[string]bool
	refreshes   int
	failRefresh []uint32
	clientSeq   int
}

// NewCentrifugo starts a server that accepts the tokens passed to Allow.
func NewCentrifugo(t testing.TB) *Centrifugo {
	s := &Centrifugo{expired: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/connection/websocket", s.serve)
	s.start(t, mux)
	return s
}

// URL is the WebSocket endpoint.
func (s *Centrifugo) URL() string { return s.wsURL("/connection/websocket") }

// Expire makes token expired: connect and refresh with it get the error
// reply 109.
func (s *Centrifugo) Expire(token string) {
	s.cmu.Lock()
	s.expired[token] = true
	s.cmu.Unlock()
}

// FailRefreshes makes the next refresh commands get error replies with
// these codes, one each, whatever their token.
func (s *Centrifugo) FailRefreshes(codes ...uint32) {
	s.cmu.Lock()
	s.failRefresh = append(s.failRefresh, codes...)
	s.cmu.Unlock()
}

// Refreshes counts the refresh commands accepted.
func (s *Centrifugo) Refreshes() int {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.refreshes
}

type centCmd struct {
	ID      uint32          `json:"id"`
	Connect *centTokenReq   `json:"connect"`
	Refresh *centTokenReq   `json:"refresh"`
	RPC     json.RawMessage `json:"rpc"`
}

type centTokenReq struct {
	Token string `json:"token"`
}

// centConn is the state of one connection.
type centConn struct {
	p      *peer
	client string
	expiry *time.Timer
	connMu sync.Mutex
}

func (s *Centrifugo) serve(w http.ResponseWriter, r *http.Request) {
	p, ok := s.accept(w, r, nil)
	if !ok {
		return
	}
	defer s.drop(p)
	s.cmu.Lock()
	s.clientSeq++
	c := &centConn{p: p, client: fmt.Sprintf("client-%d", s.clientSeq)}
	s.cmu.Unlock()
	defer func() {
		c.connMu.Lock()
		if c.expiry != nil {
			c.expiry.Stop()
		}
		c.connMu.Unlock()
	}()
	for {
		_, data, err := p.ws.Read(s.ctx)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if !s.command(c, line) {
				return
			}
		}
	}
}

// command handles one command; false ends the connection.
func (s *Centrifugo) command(c *centConn, line []byte) bool {
	p := c.p
	if bytes.Equal(line, []byte("{}")) {
		s.ponged()
		return true
	}
	var cmd centCmd
	if json.Unmarshal(line, &cmd) != nil {
		_ = p.ws.Close(3501, "bad request")
		return false
	}
	switch {
	case cmd.Connect != nil:
		if p.isAuthed() {
			return s.reply(c, cmd.ID, "error", map[string]any{"code": 105, "message": "already subscribed"}) == nil
		}
		tok := cmd.Connect.Token
		s.presented(tok)
		if s.isExpired(tok) {
			return s.reply(c, cmd.ID, "error", map[string]any{"code": 109, "message": "token expired"}) == nil
		}
		if !s.ok(tok) {
			_ = p.ws.Close(3500, "invalid token")
			return false
		}
		result := s.result(c)
		result["ping"], result["pong"] = 25, true
		msg, _ := json.Marshal(map[string]any{"id": cmd.ID, "connect": result})
		if s.Batch {
			msg = append(append(msg, '\n'), publication("connected")...)
		}
		// Authenticated before the reply goes out: a test that saw the
		// client connect finds the connection in Ping and CloseAll.
		s.authenticated(p, tok)
		s.armExpiry(c)
		if p.write(s.ctx, msg) != nil {
			return false
		}
	case !p.isAuthed():
		_ = p.ws.Close(3501, "bad request")
		return false
	case cmd.Refresh != nil:
		tok := cmd.Refresh.Token
		s.presented(tok)
		s.cmu.Lock()
		var fail uint32
		if len(s.failRefresh) > 0 {
			fail, s.failRefresh = s.failRefresh[0], s.failRefresh[1:]
		}
		s.cmu.Unlock()
		switch {
		case fail != 0:
			return s.reply(c, cmd.ID, "error", map[string]any{"code": fail, "message": "refresh refused"}) == nil
		case s.isExpired(tok):
			return s.reply(c, cmd.ID, "error", map[string]any{"code": 109, "message": "token expired"}) == nil
		case !s.ok(tok):
			_ = p.ws.Close(3500, "invalid token")
			return false
		}
		s.armExpiry(c)
		s.cmu.Lock()
		s.refreshes++
		s.cmu.Unlock()
		s.update(func() {})
		return s.reply(c, cmd.ID, "refresh", s.result(c)) == nil
	case cmd.RPC != nil:
		var rpc struct {
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(cmd.RPC, &rpc)
		return s.reply(c, cmd.ID, "rpc", map[string]any{"data": rpc.Data}) == nil
	default:
		return s.reply(c, cmd.ID, "error", map[string]any{"code": 104, "message": "method not found"}) == nil
	}
	return true
}

func (s *Centrifugo) isExpired(tok string) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.expired[tok]
}

func (s *Centrifugo) result(c *centConn) map[string]any {
	r := map[string]any{"client": c.client, "version": "6.0.0-dialecttest"}
	if s.TTL > 0 {
		r["expires"] = true
		r["ttl"] = uint32(math.Ceil(s.TTL.Seconds()))
	}
	return r
}

func (s *Centrifugo) reply(c *centConn, id uint32, field string, v any) error {
	msg, err := json.Marshal(map[string]any{"id": id, field: v})
	if err != nil {
		return err
	}
	return c.p.write(s.ctx, msg)
}

// armExpiry (re)starts the session clock: at expiry the connection is
// closed with 3005.
func (s *Centrifugo) armExpiry(c *centConn) {
	if s.TTL <= 0 {
		return
	}
	ttl := time.Duration(math.Ceil(s.TTL.Seconds())) * time.Second
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.expiry = time.AfterFunc(ttl, func() {
		s.spawn(func() { _ = c.p.ws.Close(3005, "connection expired") })
	})
}

func publication(text string) []byte {
	b, _ := json.Marshal(map[string]any{"push": map[string]any{"channel": "news",
		"pub": map[string]any{"data": map[string]string{"text": text}}}})
	return b
}

// Publish sends a publication push with text to every connected client.
func (s *Centrifugo) Publish(text string) int {
	n := 0
	for _, p := range s.authedPeers() {
		if p.write(s.ctx, publication(text)) == nil {
			n++
		}
	}
	return n
}

// Ping sends the protocol's ping, {}, to every connected client (with
// Batch, in one frame with a publication "ping") and returns how many it
// was sent to; Pongs counts the answers.
func (s *Centrifugo) Ping() int {
	msg := []byte("{}")
	if s.Batch {
		msg = append(append(publication("before-ping"), '\n'), msg...)
		msg = append(append(msg, '\n'), publication("after-ping")...)
	}
	n := 0
	for _, p := range s.authedPeers() {
		if p.write(s.ctx, msg) == nil {
			n++
		}
	}
	return n
}

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/graphqlws"
)

// graphqlServer is gqlgen's WebSocket transport (graphql-transport-ws)
// over the tick schema. Its InitFunc checks the token in connection_init's
// payload ({"Authorization":"Bearer …"}). What gqlgen does with an InitFunc
// error is its own: it closes with the code and reason the returned
// context carries (transport.WithWebsocketCloseCode,
// transport.AppendCloseReason), and without them with 1000 "terminated".
// On an established connection gqlgen has no close code of its own to
// offer (a cancelled context closes 1000 "terminated"), so an application
// that wants graphql-ws's 4401/4403 there closes the transport's
// connection itself; the test does that through the WebsocketImplementation
// it hands to the transport, which also counts the pings gqlgen sends
// (PingPongInterval) and the pongs it gets.
type graphqlServer struct {
	srv *httptest.Server
	idp *idp
	// refuseCode is the close code of a refused connection_init: 4403 as
	// graphql-ws prescribes, or 0 for gqlgen's default.
	refuseCode int

	running sync.WaitGroup

	mu           sync.Mutex
	conns        map[*trackedConn]bool
	inits        []string // the token of every connection_init
	accepted     int
	pings, pongs int
	changed      chan struct{}
}

func newGraphQLServer(t *testing.T, p *idp, refuseCode int) *graphqlServer {
	t.Helper()
	s := &graphqlServer{idp: p, refuseCode: refuseCode, conns: map[*trackedConn]bool{}, changed: make(chan struct{})}
	h := handler.New(newTickSchema(100 * time.Millisecond))
	h.AddTransport(transport.Websocket{
		Implementation: trackingImplementation{s},
		InitFunc:       s.init,
		// A pong must come within twice this, or gqlgen drops the
		// connection.
		PingPongInterval: time.Second,
	})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.running.Add(1)
		defer s.running.Done()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.mu.Lock()
		for c := range s.conns {
			c.WebsocketConn.Close()
		}
		s.mu.Unlock()
		s.srv.Close()
		waitGroupWithin(t, "a handler of the gqlgen server", &s.running)
	})
	return s
}

func (s *graphqlServer) wsURL() string {
	return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/graphql"
}

func (s *graphqlServer) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *graphqlServer) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("the gqlgen server saw no %s within %s", what, waitLong)
		}
	}
}

func (s *graphqlServer) init(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	token, _ := strings.CutPrefix(p.Authorization(), "Bearer ")
	s.update(func() { s.inits = append(s.inits, token) })
	sub, _, err := s.idp.verify(token)
	if err != nil {
		if s.refuseCode != 0 {
			ctx = transport.WithWebsocketCloseCode(ctx, s.refuseCode)
			ctx = transport.AppendCloseReason(ctx, "Forbidden")
		}
		return ctx, nil, errors.New("invalid token")
	}
	s.update(func() { s.accepted++ })
	return context.WithValue(ctx, subjectKey{}, sub), nil, nil
}

// closeAll closes every connection with code and reason, as an
// application does when a token is revoked mid-session.
func (s *graphqlServer) closeAll(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.WebsocketConn.WriteClose(code, reason)
	}
}

func (s *graphqlServer) initTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.inits...)
}

// trackingImplementation is gqlgen's coder/websocket adapter with every
// connection recorded.
type trackingImplementation struct{ s *graphqlServer }

func (ti trackingImplementation) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := transport.CoderWebsocketImplementation{}.Accept(w, r, o)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{WebsocketConn: c, s: ti.s}
	ti.s.update(func() { ti.s.conns[tc] = true })
	return tc, nil
}

// trackedConn passes everything to gqlgen's adapter, including the
// optional read limit and read deadline (without which gqlgen could not
// drop a connection that stops answering pings).
type trackedConn struct {
	transport.WebsocketConn
	s *graphqlServer
}

var (
	_ transport.WebsocketReadLimiter   = (*trackedConn)(nil)
	_ transport.WebsocketReadDeadliner = (*trackedConn)(nil)
)

func (c *trackedConn) WriteJSON(v any) error {
	if b, err := json.Marshal(v); err == nil && gqlType(b) == "ping" {
		c.s.update(func() { c.s.pings++ })
	}
	return c.WebsocketConn.WriteJSON(v)
}

func (c *trackedConn) NextReader() (int, io.Reader, error) {
	typ, r, err := c.WebsocketConn.NextReader()
	if err != nil {
		return typ, r, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return typ, nil, err
	}
	if gqlType(b) == "pong" {
		c.s.update(func() { c.s.pongs++ })
	}
	return typ, bytes.NewReader(b), nil
}

func (c *trackedConn) Close() error {
	c.s.update(func() { delete(c.s.conns, c) })
	return c.WebsocketConn.Close()
}

func (c *trackedConn) SetReadLimit(n int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(n)
	}
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

func gqlType(b []byte) string {
	var m struct {
		Type string `json:"type"`
	}
	json.Unmarshal(b, &m)
	return m.Type
}

// graphqlDialect is where the client's graphql-ws dialect comes from.
func graphqlDialect() wsauth.Dialect { return graphqlws.Dialect{} }

// graphqlSpec initialises connections with client-credentials tokens.
func graphqlSpec(s *graphqlServer, p *idp) spec {
	return spec{
		url: s.wsURL(),
		options: func() *wsauth.Options {
			return &wsauth.Options{Dialect: graphqlDialect(),
				Auth: &wsauth.FirstMessageAuth{Tokens: wsauth.TokenFunc(p.config().Token)}}
		},
		args: []string{"--auth", "first-message", "--dialect", "graphql-ws",
			"--oauth2-token-url", p.tokenURL(), "--client-id", botID},
		env: []string{"WSAUTH_CLIENT_SECRET=" + botSecret},
	}
}

func graphqlStaticSpec(s *graphqlServer, token string) spec {
	return spec{
		url: s.wsURL(),
		options: func() *wsauth.Options {
			return &wsauth.Options{
				Dialect:   graphqlDialect(),
				Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(token)},
				Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 2},
			}
		},
		args: []string{"--auth", "first-message", "--dialect", "graphql-ws", "--max-auth-failures", "2"},
		env:  []string{"WSAUTH_TOKEN=" + token},
	}
}

// gqlMessage is a graphql-transport-ws message.
type gqlMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func subscribe(t *testing.T, c client, id, query string) {
	t.Helper()
	payload, _ := json.Marshal(map[string]string{"query": query})
	msg, _ := json.Marshal(gqlMessage{ID: id, Type: "subscribe", Payload: payload})
	c.send(t, string(msg))
}

// recvFor returns the next message of operation id, passing over the
// rest of a stream that was completed or belonged to a closed connection.
func recvFor(t *testing.T, c client, id string) gqlMessage {
	t.Helper()
	for range 200 {
		raw := c.recv(t)
		var m gqlMessage
		require.NoError(t, json.Unmarshal([]byte(raw), &m), "a graphql-ws message: %s", raw)
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no message of operation %q among 200", id)
	return gqlMessage{}
}

// nextTick receives the next tick of operation id.
func nextTick(t *testing.T, c client, id string) int {
	t.Helper()
	m := recvFor(t, c, id)
	require.Equal(t, "next", m.Type, "payload %s", m.Payload)
	var p struct {
		Data struct {
			Ticks int `json:"ticks"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	return p.Data.Ticks
}

// A subscription streams on a connection initialised with a token; a
// query on the same connection sees who the InitFunc let in.
func TestGraphQLSubscriptionStreams(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlSpec(s, p))
		c.events().next(t, "connected", is("connected"))
		subscribe(t, c, "1", "subscription { ticks }")
		for want := 1; want <= 3; want++ {
			require.Equal(t, want, nextTick(t, c, "1"))
		}
		c.send(t, `{"id":"1","type":"complete"}`)
		subscribe(t, c, "2", "query { whoami }")
		who := recvFor(t, c, "2")
		require.Equal(t, "next", who.Type)
		require.JSONEq(t, `{"data":{"whoami":"`+botID+`"}}`, string(who.Payload))
		require.Equal(t, "complete", recvFor(t, c, "2").Type)
		c.stop(t)
		require.Len(t, s.initTokens(), 1)
	})
}

// An InitFunc that refuses with 4403 "Forbidden" (graphql-ws's code for a
// refused connection_init): the fixed token is never sent again and the
// client gives up on authentication.
func TestGraphQLBadTokenForbidden4403(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlStaticSpec(s, p.forged(botID)))
		refused := c.events().next(t, "reconnecting after the refusal", is("reconnecting"))
		require.Equal(t, 4403, refused.Code)
		require.Equal(t, "Forbidden", refused.Reason)
		require.Equal(t, "reauth", refused.Action)
		require.Equal(t, "authentication", c.waitStopped(t).gaveUp)
		require.Len(t, s.initTokens(), 1, "the refused token was sent once")
	})
}

// An InitFunc error with nothing in its context: gqlgen closes with 1000
// "terminated" before connection_ack. A close before the dialect's
// explicit verdict is a refusal, so the client gives up on the fixed token
// instead of retrying it forever.
func TestGraphQLBadTokenDefaultClose(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 0)
		c := start(graphqlStaticSpec(s, p.forged(botID)))
		refused := c.events().next(t, "reconnecting after the refusal", is("reconnecting"))
		require.Equal(t, 1000, refused.Code, "gqlgen's close for a refused connection_init")
		require.Equal(t, "terminated", refused.Reason)
		require.Equal(t, "reauth", refused.Action, "a close before connection_ack is a refusal")
		require.Equal(t, "authentication", c.waitStopped(t).gaveUp)
		require.LessOrEqual(t, len(s.initTokens()), 2)
	})
}

// An expired token is refused at connection_init with 4403; the client
// comes back with a fresh one and subscribes.
func TestGraphQLReauthAtInit4403(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		p.expireNext.Store(1)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlSpec(s, p))
		refused := c.events().next(t, "reconnecting after the refusal", is("reconnecting"))
		require.Equal(t, 4403, refused.Code)
		require.Equal(t, "reauth", refused.Action)
		c.events().next(t, "connected", is("connected"))
		subscribe(t, c, "1", "subscription { ticks }")
		require.Equal(t, 1, nextTick(t, c, "1"))
		c.stop(t)
		tokens := s.initTokens()
		require.Len(t, tokens, 2)
		require.NotEqual(t, tokens[0], tokens[1])
	})
}

// The server closes a streaming connection with 4401 Unauthorized, then
// with 4403 Forbidden: each time the client initialises a new connection
// with a fresh token, and the application subscribes again.
func TestGraphQLReauthMidSession(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlSpec(s, p))
		c.events().next(t, "connected", is("connected"))
		for i, code := range []int{4401, 4403} {
			id := fmt.Sprint(i)
			subscribe(t, c, id, "subscription { ticks }")
			require.Equal(t, 1, nextTick(t, c, id))
			reason := map[int]string{4401: "Unauthorized", 4403: "Forbidden"}[code]
			s.closeAll(code, reason)
			closed := c.events().next(t, fmt.Sprintf("reconnecting after %d", code), is("reconnecting"))
			require.Equal(t, code, closed.Code)
			require.Equal(t, reason, closed.Reason)
			require.Equal(t, "reauth", closed.Action)
			c.events().next(t, "connected again", is("connected"))
		}
		subscribe(t, c, "last", "subscription { ticks }")
		require.Equal(t, 1, nextTick(t, c, "last"))
		c.stop(t)

		tokens := s.initTokens()
		require.Len(t, tokens, 3)
		require.NotEqual(t, tokens[0], tokens[1], "a fresh token after 4401")
		require.NotEqual(t, tokens[1], tokens[2], "a fresh token after 4403")
	})
}

// gqlgen pings every second and drops a connection whose pong is two
// intervals late: three pongs, one connection.
func TestGraphQLServerPingsAnswered(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlSpec(s, p))
		c.events().next(t, "connected", is("connected"))
		s.waitUntil(t, "three pongs", func() bool { return s.pongs >= 3 })
		subscribe(t, c, "1", "subscription { ticks }")
		require.Equal(t, 1, nextTick(t, c, "1"))
		c.stop(t)
		require.Zero(t, c.events().count(is("reconnecting")), "events:\n%s", c.events().dump())
		require.Len(t, s.initTokens(), 1)
	})
}

// connection_ack is graphql-ws's explicit verdict, and the connected
// event says so.
func TestGraphQLVerdictExplicit(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newGraphQLServer(t, p, 4403)
		c := start(graphqlSpec(s, p))
		connected := c.events().next(t, "connected", is("connected"))
		c.stop(t)
		assert.Equal(t, "explicit", connected.Verdict)
	})
}

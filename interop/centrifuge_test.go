package interop

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/centrifugal/protocol"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/centrifugo"
)

// centrifugeServer is a github.com/centrifugal/centrifuge node behind its
// own WebSocket handler, authenticating the way Centrifugo does: the
// connect command's token is a JWT (verified here with
// github.com/golang-jwt/jwt/v5 against the identity provider's key); an
// expired one is answered with error 109 "token expired", any other bad
// one with the disconnect 3500 "invalid token". The connection expires
// with the token and is refreshed by the client (client-side refresh); an
// unrefreshed one is closed 3005 "connection expired". Server pings every
// second must be answered within half a second (else 3012 "no pong").
type centrifugeServer struct {
	node *centrifuge.Node
	srv  *httptest.Server
	idp  *idp

	mu        sync.Mutex
	clients   map[string]*centrifuge.Client // by client ID, while connected
	connects  []string                      // the token of every connect command
	refreshes []string                      // the token of every refresh accepted
	pings     map[string]int                // server pings written, by client ID
	changed   chan struct{}
}

func newCentrifugeServer(t *testing.T, p *idp) *centrifugeServer {
	t.Helper()
	node, err := centrifuge.New(centrifuge.Config{
		// The grace after the connection's expiry for a client's refresh
		// (default 25 s), short so that an unrefreshed connection ends
		// within the test.
		ClientExpiredCloseDelay: time.Second,
	})
	require.NoError(t, err)
	s := &centrifugeServer{node: node, idp: p, clients: map[string]*centrifuge.Client{},
		pings: map[string]int{}, changed: make(chan struct{})}
	node.OnConnecting(s.connecting)
	node.OnConnect(s.connect)
	node.OnTransportWrite(func(c *centrifuge.Client, e centrifuge.TransportWriteEvent) bool {
		if e.FrameType == protocol.FrameTypeServerPing {
			s.update(func() { s.pings[c.ID()]++ })
		}
		return true
	})
	require.NoError(t, node.Run())
	s.srv = httptest.NewServer(centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		PingPongConfig: centrifuge.PingPongConfig{PingInterval: time.Second, PongTimeout: 500 * time.Millisecond},
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		require.NoError(t, node.Shutdown(ctx))
		s.srv.Close()
	})
	return s
}

func (s *centrifugeServer) wsURL() string {
	return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/connection/websocket"
}

// update changes the server's records and wakes waitUntil.
func (s *centrifugeServer) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitUntil waits until cond, called with the records locked, holds.
func (s *centrifugeServer) waitUntil(t *testing.T, what string, cond func() bool) {
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
			t.Fatalf("the centrifuge server saw no %s within %s", what, waitLong)
		}
	}
}

func (s *centrifugeServer) connecting(_ context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
	s.update(func() { s.connects = append(s.connects, e.Token) })
	sub, exp, err := s.idp.verify(e.Token)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return centrifuge.ConnectReply{}, centrifuge.ErrorTokenExpired
	case err != nil:
		return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
	}
	return centrifuge.ConnectReply{
		Credentials:       &centrifuge.Credentials{UserID: sub, ExpireAt: exp.Unix()},
		ClientSideRefresh: true,
	}, nil
}

func (s *centrifugeServer) connect(c *centrifuge.Client) {
	s.update(func() { s.clients[c.ID()] = c })
	c.OnDisconnect(func(centrifuge.DisconnectEvent) {
		s.update(func() { delete(s.clients, c.ID()) })
	})
	c.OnRefresh(func(e centrifuge.RefreshEvent, cb centrifuge.RefreshCallback) {
		sub, exp, err := s.idp.verify(e.Token)
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			cb(centrifuge.RefreshReply{}, centrifuge.ErrorTokenExpired)
		case err != nil || sub != c.UserID():
			cb(centrifuge.RefreshReply{}, centrifuge.DisconnectInvalidToken)
		default:
			s.update(func() { s.refreshes = append(s.refreshes, e.Token) })
			cb(centrifuge.RefreshReply{ExpireAt: exp.Unix()}, nil)
		}
	})
	// An RPC that echoes its data with who asked.
	c.OnRPC(func(e centrifuge.RPCEvent, cb centrifuge.RPCCallback) {
		reply, _ := json.Marshal(map[string]any{"user": c.UserID(), "echo": json.RawMessage(e.Data)})
		cb(centrifuge.RPCReply{Data: reply}, nil)
	})
}

// disconnectAll ends every connection with d.
func (s *centrifugeServer) disconnectAll(d centrifuge.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		c.Disconnect(d)
	}
}

func (s *centrifugeServer) connectTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.connects...)
}

// centrifugoDialect is where the client's Centrifugo dialect comes from;
// one value per client.
func centrifugoDialect() wsauth.Dialect { return &centrifugo.Dialect{} }

// centrifugeSpec connects with JWTs from the token endpoint, sent in the
// connect command.
func centrifugeSpec(s *centrifugeServer, p *idp) spec {
	return spec{
		url: s.wsURL(),
		options: func() *wsauth.Options {
			return &wsauth.Options{Dialect: centrifugoDialect(),
				Auth: &wsauth.FirstMessageAuth{Tokens: wsauth.TokenFunc(p.config().Token)}}
		},
		args: []string{"--auth", "first-message", "--dialect", "centrifugo",
			"--oauth2-token-url", p.tokenURL(), "--client-id", botID},
		env: []string{"WSAUTH_CLIENT_SECRET=" + botSecret},
	}
}

// centrifugeStaticSpec connects with one fixed token.
func centrifugeStaticSpec(s *centrifugeServer, token string) spec {
	return spec{
		url: s.wsURL(),
		options: func() *wsauth.Options {
			return &wsauth.Options{
				Dialect:   centrifugoDialect(),
				Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(token)},
				Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 2},
			}
		},
		args: []string{"--auth", "first-message", "--dialect", "centrifugo", "--max-auth-failures", "2"},
		env:  []string{"WSAUTH_TOKEN=" + token},
	}
}

// rpc sends an RPC command and checks its reply: the client's own command
// ids (connect, refresh) never collide with the application's.
func rpc(t *testing.T, c client, id int, text string) {
	t.Helper()
	cmd, _ := json.Marshal(map[string]any{"id": id, "rpc": map[string]any{"data": map[string]string{"text": text}}})
	c.send(t, string(cmd))
	var reply struct {
		ID  int `json:"id"`
		RPC struct {
			Data struct {
				User string            `json:"user"`
				Echo map[string]string `json:"echo"`
			} `json:"data"`
		} `json:"rpc"`
	}
	got := c.recv(t)
	require.NoError(t, json.Unmarshal([]byte(got), &reply), "the RPC reply: %s", got)
	require.Equal(t, id, reply.ID, "the RPC reply: %s", got)
	require.Equal(t, botID, reply.RPC.Data.User)
	require.Equal(t, text, reply.RPC.Data.Echo["text"])
}

// A JWT in the connect command, verified by the application's
// OnConnecting; an RPC round trip on the authenticated connection.
func TestCentrifugeJWTConnect(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		connected := c.events().next(t, "connected", is("connected"))
		require.False(t, connected.Expiry.IsZero(), "the connect reply's ttl is the session's expiry")
		rpc(t, c, 1, "hello")
		c.stop(t)
		require.Len(t, s.connectTokens(), 1)
	})
}

// The connect reply says the connection expires with its 3-second token;
// the client refreshes before that with fresh JWTs, on one connection.
func TestCentrifugeRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, 3*time.Second)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		c.events().next(t, "connected", is("connected"))
		for i := 1; i <= 3; i++ {
			c.events().next(t, "refreshed", is("refreshed"))
		}
		rpc(t, c, 7, "still here")
		c.stop(t)

		require.Zero(t, c.events().count(is("reconnecting")), "refreshed in place; events:\n%s", c.events().dump())
		require.Len(t, s.connectTokens(), 1)
		s.mu.Lock()
		refreshes := append([]string(nil), s.refreshes...)
		s.mu.Unlock()
		require.GreaterOrEqual(t, len(refreshes), 3)
		seen := map[string]bool{s.connectTokens()[0]: true}
		for _, tok := range refreshes {
			require.False(t, seen[tok], "every refresh carries a fresh token")
			seen[tok] = true
		}
	})
}

// A client that does not refresh is disconnected by the server with 3005
// "connection expired"; it comes back with a fresh token.
func TestCentrifugeConnectionExpired3005(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, 2*time.Second)
		s := newCentrifugeServer(t, p)
		sp := centrifugeSpec(s, p)
		options := sp.options
		sp.options = func() *wsauth.Options {
			o := options()
			o.Renewal.Strategy = wsauth.RenewNone
			return o
		}
		sp.args = append(sp.args, "--renewal", "none")
		c := start(sp)
		c.events().next(t, "connected", is("connected"))
		expired := c.events().next(t, "reconnecting after the expiry", is("reconnecting"))
		require.Equal(t, 3005, expired.Code)
		require.Equal(t, "connection expired", expired.Reason)
		require.Equal(t, "reauth", expired.Action)
		c.events().next(t, "connected again", is("connected"))
		rpc(t, c, 1, "after the expiry")
		c.stop(t)
		tokens := s.connectTokens()
		require.Len(t, tokens, 2)
		require.NotEqual(t, tokens[0], tokens[1], "a fresh token after the expiry")
	})
}

// A token with a bad signature is disconnected with 3500 "invalid token":
// a refusal; the fixed token is never sent again and the client gives up.
func TestCentrifugeInvalidToken3500(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeStaticSpec(s, p.forged(botID)))
		refused := c.events().next(t, "reconnecting after the refusal", is("reconnecting"))
		require.Equal(t, 3500, refused.Code)
		require.Equal(t, "invalid token", refused.Reason)
		require.Equal(t, "reauth", refused.Action)
		require.Equal(t, "authentication", c.waitStopped(t).gaveUp)
		require.Len(t, s.connectTokens(), 1, "the refused token was sent once")
	})
}

// An expired token gets the error reply 109 "token expired" to its
// connect command; the client comes back with a fresh one.
func TestCentrifugeExpiredToken109(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		p.expireNext.Store(1)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		refused := c.events().next(t, "reconnecting after the error reply", is("reconnecting"))
		require.Contains(t, refused.Err, "109")
		require.Equal(t, "reauth", refused.Action)
		c.events().next(t, "connected", is("connected"))
		rpc(t, c, 1, "with a fresh token")
		c.stop(t)
		require.Len(t, s.connectTokens(), 2)
	})
}

// The server's pings ({} every second) are answered within its pong
// timeout: three pings on one connection, no 3012 "no pong".
func TestCentrifugeServerPingsAnswered(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		c.events().next(t, "connected", is("connected"))
		var id string
		s.waitUntil(t, "three pings to one client", func() bool {
			for cid, n := range s.pings {
				if n >= 3 && s.clients[cid] != nil {
					id = cid
					return true
				}
			}
			return false
		})
		s.mu.Lock()
		sc := s.clients[id]
		s.mu.Unlock()
		require.NotNil(t, sc, "the pinged client is still connected")
		_, measured := sc.LatestPingPongLatency()
		require.True(t, measured, "the server measured a pong")
		rpc(t, c, 1, "after the pings")
		c.stop(t)
		require.Zero(t, c.events().count(is("reconnecting")), "events:\n%s", c.events().dump())
	})
}

// The server's own disconnect codes: 3011 "force reconnect" is retried;
// 3503 "force disconnect" stops the client.
func TestCentrifugeDisconnectCodes(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		c.events().next(t, "connected", is("connected"))

		s.disconnectAll(centrifuge.DisconnectForceReconnect)
		again := c.events().next(t, "reconnecting after 3011", is("reconnecting"))
		require.Equal(t, 3011, again.Code)
		require.Equal(t, "force reconnect", again.Reason)
		require.Equal(t, "retry", again.Action)
		c.events().next(t, "connected again", is("connected"))
		rpc(t, c, 1, "after the reconnect")

		s.disconnectAll(centrifuge.DisconnectForceNoReconnect)
		st := c.waitStopped(t)
		require.Equal(t, "policy", st.gaveUp, "3503 says do not reconnect")
		require.Len(t, s.connectTokens(), 2)
	})
}

// The connect reply is Centrifugo's explicit verdict, and the connected
// event says so.
func TestCentrifugeVerdictExplicit(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newCentrifugeServer(t, p)
		c := start(centrifugeSpec(s, p))
		connected := c.events().next(t, "connected", is("connected"))
		rpc(t, c, 1, "hello")
		c.stop(t)
		assert.Equal(t, "explicit", connected.Verdict)
	})
}

package interop

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
)

// queryServer takes the token from the query string (?token=…, or another
// parameter name such as access_token), checks it after the upgrade, and
// closes 1008 "Invalid token" at once on a bad one.
type queryServer struct {
	*plainServer
	param string
}

func newQueryServer(t *testing.T, p *idp, param string, greet bool) *queryServer {
	s := &queryServer{plainServer: newPlainServer(t, p), param: param}
	s.greet = greet
	s.mux.HandleFunc("GET /ws", s.ws)
	return s
}

func (s *queryServer) ws(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	sub, exp, err := s.idp.verify(r.URL.Query().Get(s.param))
	if err != nil {
		s.refuse(c, "Invalid token")
		return
	}
	s.serve(r.Context(), c, &grant{sub: sub, exp: exp})
}

// querySpec connects with QueryAuth and a static token, and no dialect.
func querySpec(s *queryServer, token string) spec {
	return spec{
		url: s.wsURL("/ws"),
		options: func() *wsauth.Options {
			return &wsauth.Options{
				Auth:      &wsauth.QueryAuth{Tokens: wsauth.StaticToken(token), Param: s.param},
				Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 3},
			}
		},
		args: []string{"--auth", "query", "--param", s.param, "--max-auth-failures", "3"},
		env:  []string{"WSAUTH_TOKEN=" + token},
	}
}

func queryOAuthSpec(s *queryServer, p *idp) spec {
	return spec{
		url: s.wsURL("/ws"),
		options: func() *wsauth.Options {
			return &wsauth.Options{Auth: &wsauth.QueryAuth{Tokens: wsauth.TokenFunc(p.config().Token), Param: s.param}}
		},
		args: []string{"--auth", "query", "--param", s.param, "--oauth2-token-url", p.tokenURL(), "--client-id", botID},
		env:  []string{"WSAUTH_CLIENT_SECRET=" + botSecret},
	}
}

// A query-token server that greets first is connected to by its first
// message, which reaches the application; one that says nothing, by the
// verdict window.
func TestQueryConnectsWithoutAuthOK(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		param   string
		greet   bool
		verdict string
	}{
		{param: "token", greet: true, verdict: "first-message"},
		{param: "access_token", greet: false, verdict: "window"},
	} {
		t.Run(tc.param, func(t *testing.T) {
			t.Parallel()
			bothWays(t, func(t *testing.T, start starter) {
				p := newIDP(t, time.Hour)
				s := newQueryServer(t, p, tc.param, tc.greet)
				c := start(querySpec(s, p.mint(botID, time.Hour)))
				connected := c.events().next(t, "connected", is("connected"))
				if tc.greet {
					require.JSONEq(t, `{"type":"welcome","user":"`+botID+`"}`, c.recv(t),
						"the message that decided the verdict is the application's")
				}
				c.send(t, "hello")
				require.Equal(t, "hello", c.recv(t))
				c.stop(t)
				require.Equal(t, []string{"hello"}, s.stats().received)
				assert.Equal(t, tc.verdict, connected.Verdict)
			})
		})
	}
}

// A bad static token is closed 1008 at once: a refusal, never offered
// again; the client gives up on authentication.
func TestQueryBadTokenGivesUp(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newQueryServer(t, p, "token", true)
		c := start(querySpec(s, p.forged(botID)))
		refused := c.events().next(t, "reconnecting after the refusal", is("reconnecting"))
		require.Equal(t, 1008, refused.Code)
		require.Equal(t, "Invalid token", refused.Reason)
		require.Equal(t, "reauth", refused.Action)
		st := c.waitStopped(t)
		require.Equal(t, "authentication", st.gaveUp)
		ss := s.stats()
		require.Equal(t, 1, ss.refused, "the refused token was offered once")
		require.Zero(t, ss.accepted)
	})
}

// An administrator's 1008 on an established session: the client
// authenticates again with the same long-lived token and carries on.
func TestQueryPolicyCloseStaticTokenCarriesOn(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newQueryServer(t, p, "token", false)
		c := start(querySpec(s, p.mint(botID, time.Hour)))
		c.events().next(t, "connected", is("connected"))
		c.send(t, "before")
		require.Equal(t, "before", c.recv(t))

		s.closeSessions(websocket.StatusPolicyViolation, "Policy violation")
		c.events().next(t, "reconnecting after the 1008", reconnectingWith(1008))
		c.events().next(t, "connected again", is("connected"))
		c.send(t, "after")
		require.Equal(t, "after", c.recv(t))
		c.stop(t)
		st := s.stats()
		require.Equal(t, 2, st.accepted)
		require.Zero(t, st.refused)
	})
}

// The upgrade answered 503 with Retry-After: the client waits at least
// that long and recovers.
func TestQueryOutageRetryAfter(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newQueryServer(t, p, "token", false)
		c := start(querySpec(s, p.mint(botID, time.Hour)))
		c.events().next(t, "connected", is("connected"))

		s.startOutage(2, 1)
		s.closeSessions(websocket.StatusServiceRestart, "Service restart")
		checkRetryAfter(t, c, time.Second)
		c.send(t, "after the outage")
		require.Equal(t, "after the outage", c.recv(t))
		c.stop(t)
	})
}

// Sessions end with their 2-second token; in-band refresh with fresh
// client-credentials tokens keeps one connection for 10 s.
func TestQueryRefreshKeepsOneConnection(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, 2*time.Second)
		s := newQueryServer(t, p, "token", false)
		checkRefreshKeepsOneConnection(t, start(queryOAuthSpec(s, p)), s.plainServer, p)
	})
}

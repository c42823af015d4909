package interop

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
)

const botPassword = "interop-bot-password"

// cookieServer logs users in with POST /login, which sets a session
// cookie; GET /ws checks the Origin against an exact allowlist (403 for a
// foreign one) and the session cookie (401 without a live session) at the
// upgrade. A revoked session's connections are closed 1008.
type cookieServer struct {
	*plainServer
	sessionTTL time.Duration

	// Guarded by plainServer.mu.
	sessions map[string]*grant
	logins   int
	origins  []string
}

func newCookieServer(t *testing.T, p *idp, sessionTTL time.Duration) *cookieServer {
	s := &cookieServer{plainServer: newPlainServer(t, p), sessionTTL: sessionTTL, sessions: map[string]*grant{}}
	s.origins = []string{s.srv.URL} // the application's own pages
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("GET /ws", s.ws)
	return s
}

func (s *cookieServer) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	s.mu.Lock()
	s.logins++
	s.mu.Unlock()
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Username != botID || body.Password != botPassword {
		http.Error(w, "bad username or password", http.StatusUnauthorized)
		return
	}
	id := randomString()
	s.mu.Lock()
	s.sessions[id] = &grant{sub: body.Username, exp: time.Now().Add(s.sessionTTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(s.sessionTTL / time.Second)})
	w.WriteHeader(http.StatusNoContent)
}

func (s *cookieServer) ws(w http.ResponseWriter, r *http.Request) {
	// Cross-site WebSocket hijacking: a cookie rides along from any page,
	// so only the application's own origins may open the socket.
	if !slices.Contains(s.origins, r.Header.Get("Origin")) {
		http.Error(w, "forbidden origin", http.StatusForbidden)
		return
	}
	g := s.session(r)
	if g == nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.serve(r.Context(), c, g)
}

func (s *cookieServer) session(r *http.Request) *grant {
	ck, err := r.Cookie("session")
	if err != nil {
		return nil
	}
	s.mu.Lock()
	g := s.sessions[ck.Value]
	s.mu.Unlock()
	if g == nil || !time.Now().Before(g.expiry()) {
		return nil
	}
	return g
}

// revoke ends every session of sub, and closes their connections 1008.
func (s *cookieServer) revoke(sub string) {
	s.mu.Lock()
	for id, g := range s.sessions {
		if g.sub == sub {
			delete(s.sessions, id)
			g.mu.Lock()
			g.revoked = true
			g.mu.Unlock()
		}
	}
	s.mu.Unlock()
	s.closeWhere(websocket.StatusPolicyViolation, "Session revoked", func(g *grant) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.revoked
	})
}

func (s *cookieServer) loginCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// cookieSpec logs in with a username and password and rides the session
// cookie, with no dialect. origin "" sends the WebSocket URL's own.
func cookieSpec(s *cookieServer, password, origin string) spec {
	body, _ := json.Marshal(map[string]string{"username": botID, "password": password})
	sp := spec{
		url: s.wsURL("/ws"),
		options: func() *wsauth.Options {
			return &wsauth.Options{
				Auth:      &wsauth.CookieAuth{LoginURL: s.url("/login"), LoginBody: body, Origin: origin},
				Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 3},
			}
		},
		args: []string{"--auth", "cookie", "--login-url", s.url("/login"), "--max-auth-failures", "3"},
		env:  []string{"WSAUTH_LOGIN_JSON=" + string(body)},
	}
	if origin != "" {
		sp.args = append(sp.args, "--origin", origin)
	}
	return sp
}

// A cookie server that checks at the upgrade and then serves without a
// word is connected to by the verdict window.
func TestCookieConnectsWithoutAuthOK(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, botPassword, ""))
		connected := c.events().next(t, "connected", is("connected"))
		c.send(t, "hello")
		require.Equal(t, "hello", c.recv(t))
		c.stop(t)
		require.Equal(t, 1, s.loginCount())
		require.Equal(t, []string{"hello"}, s.stats().received)
		assert.Equal(t, "window", connected.Verdict)
	})
}

// A foreign Origin is refused at the upgrade with 403: the client gives up
// on authentication, and no socket was ever opened.
func TestCookieForeignOriginRefused(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, botPassword, "https://evil.example"))
		refused := c.events().next(t, "reconnecting after the 403", is("reconnecting"))
		require.Equal(t, http.StatusForbidden, refused.Status)
		require.Equal(t, "reauth", refused.Action)
		require.Equal(t, "authentication", c.waitStopped(t).gaveUp)
		require.Zero(t, s.stats().accepted)
	})
}

// A wrong password is refused by the login (401); the client gives up
// after at most MaxAuthFailures logins.
func TestCookieBadPasswordGivesUp(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, "wrong password", ""))
		refused := c.events().next(t, "reconnecting after the 401", is("reconnecting"))
		require.Equal(t, http.StatusUnauthorized, refused.Status)
		require.Equal(t, "authentication", c.waitStopped(t).gaveUp)
		require.LessOrEqual(t, s.loginCount(), 3)
		require.Zero(t, s.stats().accepted)
	})
}

// Revoking the session closes its connection 1008; the client logs in
// again and carries on.
func TestCookieRevokedSessionLogsInAgain(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, botPassword, ""))
		c.events().next(t, "connected", is("connected"))
		c.send(t, "before")
		require.Equal(t, "before", c.recv(t))

		s.revoke(botID)
		closed := c.events().next(t, "reconnecting after the revocation", reconnectingWith(1008))
		require.Equal(t, "Session revoked", closed.Reason)
		c.events().next(t, "connected again", is("connected"))
		c.send(t, "after")
		require.Equal(t, "after", c.recv(t))
		c.stop(t)
		require.Equal(t, 2, s.loginCount(), "logged in again")
		require.Equal(t, 2, s.stats().accepted)
	})
}

// An administrator's 1008 on an established session that was not revoked:
// the client comes back with its credentials and carries on.
func TestCookiePolicyCloseCarriesOn(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, botPassword, ""))
		c.events().next(t, "connected", is("connected"))
		c.send(t, "before")
		require.Equal(t, "before", c.recv(t))

		s.closeSessions(websocket.StatusPolicyViolation, "Policy violation")
		c.events().next(t, "reconnecting after the 1008", reconnectingWith(1008))
		c.events().next(t, "connected again", is("connected"))
		c.send(t, "after")
		require.Equal(t, "after", c.recv(t))
		c.stop(t)
		require.Equal(t, 2, s.stats().accepted)
	})
}

// The upgrade answered 503 with Retry-After: the client waits at least
// that long and recovers.
func TestCookieOutageRetryAfter(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		s := newCookieServer(t, newIDP(t, time.Hour), time.Hour)
		c := start(cookieSpec(s, botPassword, ""))
		c.events().next(t, "connected", is("connected"))

		s.startOutage(2, 1)
		s.closeSessions(websocket.StatusServiceRestart, "Service restart")
		checkRetryAfter(t, c, time.Second)
		c.send(t, "after the outage")
		require.Equal(t, "after the outage", c.recv(t))
		c.stop(t)
	})
}

// A cookie session lives 2 s (the cookie's Max-Age says so) unless the
// client refreshes it in band with a fresh client-credentials token; one
// connection carries traffic for 10 s. Library only: `wsauth connect`
// cannot combine --auth cookie with a token source for refreshes.
func TestCookieRefreshKeepsOneConnection(t *testing.T) {
	t.Parallel()
	p := newIDP(t, 2*time.Second)
	s := newCookieServer(t, p, 2*time.Second)
	body, _ := json.Marshal(map[string]string{"username": botID, "password": botPassword})
	c := startLibrary(t, s.wsURL("/ws"), &wsauth.Options{
		Auth:    &wsauth.CookieAuth{LoginURL: s.url("/login"), LoginBody: body},
		Renewal: wsauth.RenewalPolicy{Tokens: wsauth.TokenFunc(p.config().Token)},
	})
	checkRefreshKeepsOneConnection(t, c, s.plainServer, p)
	require.Equal(t, 1, s.loginCount())
}

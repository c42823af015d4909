package server

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

func TestLoginCookieAttributes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginTTL = 2 * time.Hour })
	resp, ck := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NotNil(t, ck)
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/", ck.Path)
	require.False(t, ck.Secure, "plain HTTP without CookieSecure")
	require.Equal(t, 7200, ck.MaxAge)
	require.Len(t, ck.Value, 43, "256 random bits, base64url")
	raw := resp.Header.Get("Set-Cookie")
	require.Contains(t, raw, "HttpOnly")
	require.Contains(t, raw, "SameSite=Strict")

	e2 := newEnv(t, func(c *Config) { c.CookieSecure = true })
	_, ck = e2.login(t, `{"token":"`+e2.token(t, "alice")+`"}`)
	require.NotNil(t, ck)
	require.True(t, ck.Secure)
}

func TestPasswordLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Users = map[string]string{"alice": "correct horse"} })
	resp, ck := e.login(t, `{"username":"alice","password":"correct horse"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	c := e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck))
	echo(t, c, "hi")
	p := e.nextConn(t).Principal()
	require.Equal(t, "alice", p.Subject)
	require.Equal(t, MethodCookie, p.Method)

	for _, body := range []string{
		`{"username":"alice","password":"wrong"}`,
		`{"username":"alice","password":""}`,
		`{"username":"bob","password":"correct horse"}`,
		`{"token":"not-a-token"}`,
	} {
		resp, ck := e.login(t, body)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
		require.Nil(t, ck)
	}
	for _, body := range []string{`not json`, `{}`, `{"username":"alice","password":"x","token":"y"}`} {
		resp, _ := e.login(t, body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	}
	// A form post (what a cross-site page can send without preflight) is refused.
	resp, _ = e.post(t, "/api/login", "application/x-www-form-urlencoded", "username=alice&password=correct+horse", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	st := e.srv.Stats()
	require.EqualValues(t, 1, st.LoginsOK)
	require.EqualValues(t, 4, st.LoginsFailed)
}

func TestPasswordLoginDisabledWithoutUsers(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.login(t, `{"username":"alice","password":""}`)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

func TestCookieSessionExpiryBoundsConnection(t *testing.T) {
	store := NewMemorySessionStore()
	e := newEnv(t, func(c *Config) { c.SessionStore = store })
	id, err := store.Create(ctxT(t), SessionData{Subject: "alice", Created: time.Now(), Expires: time.Now().Add(10 * time.Minute)})
	require.NoError(t, err)
	c := e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(&http.Cookie{Name: "wsauth_session", Value: id}))
	echo(t, c, "hi")
	p := e.nextConn(t).Principal()
	require.WithinDuration(t, time.Now().Add(10*time.Minute), p.ExpiresAt, time.Minute, "min(SessionTTL 1h, session expiry)")
}

func TestLogoutClosesSessionConnections(t *testing.T) {
	e := newEnv(t)
	_, ck := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	_, other := e.login(t, `{"token":"`+e.token(t, "alice")+`"}`)
	c := e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck))
	echo(t, c, "hi")
	d := e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(other))
	echo(t, d, "hi")

	resp, _ := e.post(t, "/api/logout", "", "", http.Header{"Cookie": {ck.Name + "=" + ck.Value}})
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	var cleared *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "wsauth_session" {
			cleared = k
		}
	}
	require.NotNil(t, cleared)
	require.Equal(t, -1, cleared.MaxAge)

	requireClose(t, c, websocket.StatusPolicyViolation, ReasonLoggedOut)
	echo(t, d, "another session is untouched")
	requireRefused(t, e.mustDial(t, e.wsURL(""), e.cookieOpts(ck)), websocket.StatusPolicyViolation, ReasonUnauthorized)

	// Logout without a cookie is harmless.
	resp, _ = e.post(t, "/api/logout", "", "", nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

func TestMemorySessionStore(t *testing.T) {
	s := NewMemorySessionStore()
	ctx := ctxT(t)
	id, err := s.Create(ctx, SessionData{Subject: "alice", Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Len(t, id, 43)
	d, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "alice", d.Subject)
	require.NoError(t, s.Delete(ctx, id))
	_, err = s.Get(ctx, id)
	require.ErrorIs(t, err, ErrNoSession)
	require.NoError(t, s.Delete(ctx, "unknown"))

	old, err := s.Create(ctx, SessionData{Subject: "bob", Expires: time.Now().Add(-time.Second)})
	require.NoError(t, err)
	_, err = s.Get(ctx, old)
	require.ErrorIs(t, err, ErrNoSession)

	// Expired entries are swept by a later Create.
	_, err = s.Create(ctx, SessionData{Subject: "carol", Expires: time.Now().Add(-time.Second)})
	require.NoError(t, err)
	s.mu.Lock()
	s.lastSweep = time.Time{}
	s.mu.Unlock()
	_, err = s.Create(ctx, SessionData{Subject: "dave", Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, 1, s.Len())
}

func TestMemoryTicketStore(t *testing.T) {
	s := NewMemoryTicketStore()
	ctx := ctxT(t)
	require.NoError(t, s.Put(ctx, "t1", TicketData{Subject: "alice"}, time.Minute))
	d, err := s.Consume(ctx, "t1")
	require.NoError(t, err)
	require.Equal(t, "alice", d.Subject)
	_, err = s.Consume(ctx, "t1")
	require.ErrorIs(t, err, ErrTicketInvalid)
	_, err = s.Consume(ctx, "never")
	require.ErrorIs(t, err, ErrTicketInvalid)

	require.NoError(t, s.Put(ctx, "past", TicketData{Subject: "alice"}, -time.Millisecond))
	_, err = s.Consume(ctx, "past")
	require.ErrorIs(t, err, ErrTicketInvalid)

	// Sweeping on Put drops expired tickets.
	require.NoError(t, s.Put(ctx, "stale", TicketData{}, -time.Second))
	s.mu.Lock()
	s.lastSweep = time.Time{}
	s.mu.Unlock()
	require.NoError(t, s.Put(ctx, "live", TicketData{}, time.Minute))
	require.Equal(t, 1, s.Len())
}

// TestMemoryTicketStoreConcurrentConsume: 50 goroutines race for one ticket; one wins.
func TestMemoryTicketStoreConcurrentConsume(t *testing.T) {
	s := NewMemoryTicketStore()
	ctx := ctxT(t)
	for round := range 20 {
		ticket := strings.Repeat("x", round+1)
		require.NoError(t, s.Put(ctx, ticket, TicketData{Subject: "alice"}, time.Minute))
		var wg sync.WaitGroup
		start := make(chan struct{})
		wins := make(chan struct{}, 50)
		for range 50 {
			wg.Go(func() {
				<-start
				if _, err := s.Consume(ctx, ticket); err == nil {
					wins <- struct{}{}
				}
			})
		}
		close(start)
		wg.Wait()
		require.Len(t, wins, 1)
	}
}

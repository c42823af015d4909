package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// TestPatternsSucceed opens a connection with each of the six patterns and checks that the
// handler sees the right principal and that messages flow.
func TestPatternsSucceed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Subprotocols = []string{"chat.v1"} })

	for _, m := range AllMethods() {
		t.Run(string(m), func(t *testing.T) {
			subject := "user-" + string(m)
			before := time.Now()
			c := e.dialPattern(t, m, e.token(t, subject), "chat.v1")
			if m == MethodSubprotocol {
				require.Equal(t, "chat.v1", c.Subprotocol(), "the app protocol is selected, never the bearer entry")
			}
			ok := authOK(t, c)
			require.NotNil(t, ok.ExpiresIn)
			require.InDelta(t, time.Hour.Seconds(), *ok.ExpiresIn, 60)
			sc := e.nextConn(t)
			p := sc.Principal()
			require.Equal(t, subject, p.Subject)
			require.Equal(t, m, p.Method)
			require.False(t, p.ExpiresAt.IsZero())
			require.True(t, p.ExpiresAt.After(before))
			if m == MethodSubprotocol {
				require.Equal(t, "chat.v1", sc.Subprotocol())
			}
			echo(t, c, "hello "+string(m))
			require.NoError(t, c.Write(ctxT(t), websocket.MessageBinary, []byte{1, 2, 3}))
			typ, data, err := c.Read(ctxT(t))
			require.NoError(t, err)
			require.Equal(t, websocket.MessageBinary, typ)
			require.Equal(t, []byte{1, 2, 3}, data)
			require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
		})
	}
	require.EqualValues(t, 6, e.calls.Load())
	require.EqualValues(t, 6, e.srv.Stats().Authenticated)
}

// dialPattern authenticates with token by pattern m and returns the upgraded connection with
// nothing read from it: for first-message the auth message has been sent. Ticket and cookie
// are obtained from the server's endpoints with token. appProtocols are offered alongside the
// subprotocol pattern's bearer entry.
func (e *env) dialPattern(t *testing.T, m Method, token string, appProtocols ...string) *websocket.Conn {
	t.Helper()
	switch m {
	case MethodHeader:
		return e.mustDial(t, e.wsURL(""), headerOpts(token))
	case MethodSubprotocol:
		return e.mustDial(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: append(appProtocols, k8sProtocol(token))})
	case MethodTicket:
		return e.mustDial(t, e.wsURL("?ticket="+e.ticket(t, token)), nil)
	case MethodQuery:
		return e.mustDial(t, e.wsURL("?token="+url.QueryEscape(token)), nil)
	case MethodCookie:
		body, err := json.Marshal(map[string]string{"token": token})
		require.NoError(t, err)
		resp, ck := e.login(t, string(body))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.NotNil(t, ck)
		return e.mustDial(t, e.wsURL(""), e.cookieOpts(ck))
	case MethodFirstMessage:
		c := e.mustDial(t, e.wsURL(""), nil)
		writeJSONMsg(t, c, map[string]string{"type": "auth", "token": token})
		return c
	}
	t.Fatalf("unknown pattern %q", m)
	return nil
}

// TestAuthOKEveryPattern: whatever the pattern, the first message of an authenticated
// connection is auth_ok, sent before the handler gets the connection, and its expires_in is
// the session's lifetime, which may be shorter than the credential's: SessionTTL when that is
// shorter, the credential's expiry when that is, omitted when the session has none.
func TestAuthOKEveryPattern(t *testing.T) {
	// Tokens "no-expiry:<subject>" are valid and carry no expiry.
	noExpiry := verifierFunc(func(_ context.Context, token string) (Identity, error) {
		subject, ok := strings.CutPrefix(token, "no-expiry:")
		if !ok || subject == "" {
			return Identity{}, ErrInvalidToken
		}
		return Identity{Subject: subject}, nil
	})
	cases := []struct {
		name  string
		cfg   func(c *Config)
		token func(t *testing.T, e *env, subject string) string
		// want is the session lifetime auth_ok must announce; 0 means expires_in omitted.
		want func(m Method) time.Duration
	}{
		{
			name:  "session shorter than credential",
			cfg:   func(c *Config) { c.SessionTTL = 10 * time.Minute },
			token: func(t *testing.T, e *env, subject string) string { return e.token(t, subject) }, // one hour
			want:  func(Method) time.Duration { return 10 * time.Minute },
		},
		{
			// The cookie's credential is the login session, which lasts LoginTTL.
			name: "credential shorter than session",
			cfg:  func(c *Config) { c.SessionTTL, c.LoginTTL = time.Hour, 5*time.Minute },
			token: func(t *testing.T, e *env, subject string) string {
				tok, err := e.issuer.IssueWithExpiry(subject, time.Now().Add(5*time.Minute))
				require.NoError(t, err)
				return tok
			},
			want: func(Method) time.Duration { return 5 * time.Minute },
		},
		{
			// No SessionTTL and a credential without expiry: no expiry. A cookie session
			// always ends, so the cookie pattern still announces the session's end.
			name:  "no expiry",
			cfg:   func(c *Config) { c.SessionTTL, c.LoginTTL, c.Verifier = -1, 2*time.Hour, noExpiry },
			token: func(t *testing.T, e *env, subject string) string { return "no-expiry:" + subject },
			want: func(m Method) time.Duration {
				if m == MethodCookie {
					return 2 * time.Hour
				}
				return 0
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conns := make(chan *Conn, len(AllMethods()))
			e := newEnv(t, tc.cfg, func(c *Config) {
				// The handler speaks first: auth_ok must still come before its message.
				c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
					conns <- c
					if c.Write(ctx, websocket.MessageText, []byte("welcome")) == nil {
						Echo().ServeWS(ctx, c)
					}
				})
			})
			for _, m := range AllMethods() {
				t.Run(string(m), func(t *testing.T) {
					want := tc.want(m)
					before := time.Now()
					c := e.dialPattern(t, m, tc.token(t, e, "user-"+string(m)))
					typ, data, err := c.Read(ctxT(t))
					elapsed := time.Since(before)
					require.NoError(t, err)
					require.Equal(t, websocket.MessageText, typ)
					var got map[string]any
					require.NoError(t, json.Unmarshal(data, &got), "message %q", data)
					require.Equal(t, "auth_ok", got["type"], "the first message is auth_ok, got %s", data)

					var sc *Conn
					select {
					case sc = <-conns:
					case <-time.After(waitLimit):
						t.Fatal("handler was not called")
					}
					p := sc.Principal()
					require.Equal(t, m, p.Method)
					if want == 0 {
						require.Equal(t, map[string]any{"type": "auth_ok"}, got, "expires_in is omitted, not zero: %s", data)
						require.True(t, p.ExpiresAt.IsZero())
					} else {
						require.Len(t, got, 2, "%s", data)
						v, ok := got["expires_in"].(float64)
						require.True(t, ok, "expires_in is a number: %s", data)
						// The session began between before and now; a token's expiry is whole
						// seconds, rounded down.
						require.LessOrEqual(t, v, want.Seconds(), "%s", data)
						require.GreaterOrEqual(t, v, (want - elapsed - time.Second).Seconds(), "%s", data)
						require.WithinDuration(t, before.Add(want), p.ExpiresAt, elapsed+time.Second)
						// expires_in counts down to the principal's expiry from when it was sent.
						sent := p.ExpiresAt.Add(-time.Duration(v * float64(time.Second)))
						require.WithinRange(t, sent, before.Add(-time.Millisecond), before.Add(elapsed+time.Millisecond))
					}

					_, data, err = c.Read(ctxT(t))
					require.NoError(t, err)
					require.Equal(t, "welcome", string(data), "the handler's message follows auth_ok")
					echo(t, c, "after auth_ok")
					require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
				})
			}
			require.EqualValues(t, len(AllMethods()), e.srv.Stats().Authenticated)
		})
	}
}

// TestRefusedGetsNoAuthOK: a refused connection never gets auth_ok, whatever the pattern and
// whichever check refuses it: the credential's own, or the revocation check made just
// before auth_ok would be sent. Header and subprotocol are refused before the upgrade; the
// others' first frame is the close.
func TestRefusedGetsNoAuthOK(t *testing.T) {
	e := newEnv(t)
	refusedWS := func(t *testing.T, c *websocket.Conn, reason string) {
		t.Helper()
		requireRefused(t, c, websocket.StatusPolicyViolation, reason)
	}
	dialAll := func(t *testing.T, token, ticket string, cookie *http.Cookie) {
		t.Helper()
		e.dialRefused(t, e.wsURL(""), headerOpts(token), http.StatusUnauthorized)
		e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{k8sProtocol(token)}}, http.StatusUnauthorized)
		refusedWS(t, e.mustDial(t, e.wsURL("?ticket="+ticket), nil), ReasonInvalidTicket)
		refusedWS(t, e.mustDial(t, e.wsURL("?token="+url.QueryEscape(token)), nil), ReasonUnauthorized)
		refusedWS(t, e.mustDial(t, e.wsURL(""), e.cookieOpts(cookie)), ReasonUnauthorized)
		c := e.mustDial(t, e.wsURL(""), nil)
		writeJSONMsg(t, c, map[string]string{"type": "auth", "token": token})
		refusedWS(t, c, ReasonUnauthorized)
	}

	t.Run("bad credentials", func(t *testing.T) {
		dialAll(t, "not-a-token", "unknown-ticket", &http.Cookie{Name: "wsauth_session", Value: "no-such-session"})
	})
	t.Run("revoked principal", func(t *testing.T) {
		// Valid credentials, minted before the revocation: each passes its own check and is
		// refused by the last one.
		tok := e.token(t, "alice")
		ticket := e.ticket(t, tok)
		_, ck := e.login(t, `{"token":"`+tok+`"}`)
		require.NotNil(t, ck)
		require.Zero(t, e.srv.Revoke("alice"))
		dialAll(t, tok, ticket, ck)
	})
	require.Zero(t, e.calls.Load(), "the handler is never called for a refused connection")
	require.Zero(t, e.srv.Stats().Authenticated)
}

func TestSubprotocolPhoenixPrefixAndNoAppProtocol(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "alice")
	entry := "base64url.bearer.phx." + strings.TrimPrefix(k8sProtocol(tok), "base64url.bearer.authorization.k8s.io.")
	c := e.mustDialAuthed(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{entry}})
	require.Equal(t, "", c.Subprotocol(), "a client offering only the bearer entry gets no subprotocol")
	echo(t, c, "hi")
	require.Equal(t, MethodSubprotocol, e.nextConn(t).Principal().Method)
}

// TestBadTokenPerPattern checks the documented refusal of each pattern, and that the handler
// is never called for a refused connection.
func TestBadTokenPerPattern(t *testing.T) {
	events := &eventLog{}
	e := newEnv(t, func(c *Config) { c.OnAuth = events.add })
	bad := "not-a-token"
	expired, err := e.issuer.IssueWithExpiry("alice", time.Now().Add(-time.Hour))
	require.NoError(t, err)

	for _, tok := range []string{bad, expired} {
		resp := e.dialRefused(t, e.wsURL(""), headerOpts(tok), http.StatusUnauthorized)
		require.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer"))

		resp = e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{k8sProtocol(tok)}}, http.StatusUnauthorized)
		require.True(t, strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer"))

		requireRefused(t, e.mustDial(t, e.wsURL("?token="+tok), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)

		c := e.mustDial(t, e.wsURL(""), nil)
		writeJSONMsg(t, c, map[string]string{"type": "auth", "token": tok})
		requireRefused(t, c, websocket.StatusPolicyViolation, ReasonUnauthorized)
	}
	// A subprotocol entry that is not base64url.
	e.dialRefused(t, e.wsURL(""), &websocket.DialOptions{Subprotocols: []string{"base64url.bearer.phx.!!!"}}, http.StatusUnauthorized)
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket=unknown-ticket"), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket="), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
	requireRefused(t, e.mustDial(t, e.wsURL(""), e.cookieOpts(&http.Cookie{Name: "wsauth_session", Value: "no-such-session"})),
		websocket.StatusPolicyViolation, ReasonUnauthorized)
	// An auth message whose token is not a string.
	c := e.mustDial(t, e.wsURL(""), nil)
	writeJSONMsg(t, c, map[string]any{"type": "auth", "token": 42})
	requireRefused(t, c, websocket.StatusPolicyViolation, ReasonUnauthorized)

	require.Zero(t, e.calls.Load(), "the handler is never called for a refused connection")
	st := e.srv.Stats()
	require.Zero(t, st.Authenticated)
	require.EqualValues(t, 13, st.Refused)
	for _, ev := range events.all() {
		require.False(t, ev.OK)
		require.Equal(t, StageHandshake, ev.Stage)
		require.NotEmpty(t, ev.Method)
		require.True(t, ev.Status != 0 || ev.Code != 0, "%+v", ev)
	}
}

func TestCredentialOrder(t *testing.T) {
	e := newEnv(t)
	// A valid header wins over a bad query token: header is looked at first.
	c := e.mustDialAuthed(t, e.wsURL("?token=bad"), headerOpts(e.token(t, "alice")))
	echo(t, c, "x")
	require.Equal(t, MethodHeader, e.nextConn(t).Principal().Method)
	// A bad header is refused even with a valid query token: first match wins, no fallback.
	e.dialRefused(t, e.wsURL("?token="+e.token(t, "alice")), headerOpts("bad"), http.StatusUnauthorized)
	// A ticket wins over a query token.
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket=bad&token="+e.token(t, "alice")), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
}

func TestDisabledMethodsAndMissingCredential(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Methods = []Method{MethodCookie} })
	// Missing cookie with first-message disabled: 401 before the upgrade.
	resp := e.dialRefused(t, e.wsURL(""), nil, http.StatusUnauthorized)
	require.Equal(t, "Bearer", resp.Header.Get("WWW-Authenticate"))
	// Credentials of disabled patterns are ignored as if absent.
	e.dialRefused(t, e.wsURL("?token="+e.token(t, "alice")), headerOpts(e.token(t, "alice")), http.StatusUnauthorized)
	require.Zero(t, e.calls.Load())
}

func TestTicketReplayRefused(t *testing.T) {
	e := newEnv(t)
	ticket := e.ticket(t, e.token(t, "alice"))
	c := e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil)
	echo(t, c, "first use")
	require.Equal(t, "alice", e.nextConn(t).Principal().Subject)

	requireRefused(t, e.mustDial(t, e.wsURL("?ticket="+ticket), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
	require.EqualValues(t, 1, e.calls.Load())
	st := e.srv.Stats()
	require.EqualValues(t, 1, st.TicketsIssued)
	require.EqualValues(t, 1, st.TicketsConsumed)
}

func TestExpiredTicketRefused(t *testing.T) {
	store := NewMemoryTicketStore()
	e := newEnv(t, func(c *Config) { c.TicketStore = store })
	require.NoError(t, store.Put(ctxT(t), "expired-ticket", TicketData{Subject: "alice", IssuedAt: time.Now()}, -time.Second))
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket=expired-ticket"), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
	require.Zero(t, e.calls.Load())

	// The same store entry, unexpired, works: the refusal above was about expiry.
	require.NoError(t, store.Put(ctxT(t), "fresh-ticket", TicketData{Subject: "alice", IssuedAt: time.Now()}, time.Minute))
	echo(t, e.mustDialAuthed(t, e.wsURL("?ticket=fresh-ticket"), nil), "ok")
}

func TestTicketTTLFromConfig(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TicketTTL = 7 * time.Second })
	resp, body := e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer " + e.token(t, "alice")}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `"expires_in":7`)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
}

// TestTicketConcurrentHandshakes races 50 handshakes with one ticket: exactly one gets a
// served connection, all others are closed 1008.
func TestTicketConcurrentHandshakes(t *testing.T) {
	e := newEnv(t)
	ticket := e.ticket(t, e.token(t, "alice"))
	const n = 50
	var wg sync.WaitGroup
	results := make(chan string, n)
	for range n {
		wg.Go(func() {
			c, _, err := e.dial(t, e.wsURL("?ticket="+ticket), nil)
			if err != nil {
				results <- "dial error: " + err.Error()
				return
			}
			// The winner gets auth_ok and is served; a loser's first read is the close frame.
			if err := c.Write(ctxT(t), websocket.MessageText, []byte("x")); err != nil {
				results <- "write failed"
				return
			}
			_, data, err := c.Read(ctxT(t))
			switch {
			case err == nil && !strings.HasPrefix(string(data), `{"type":"auth_ok"`):
				results <- "first message not auth_ok: " + string(data)
			case err == nil:
				if _, data, err = c.Read(ctxT(t)); err != nil || string(data) != "x" {
					results <- "not served after auth_ok"
					return
				}
				results <- "won"
			case websocket.CloseStatus(err) == websocket.StatusPolicyViolation:
				results <- "refused"
			default:
				results <- "other: " + err.Error()
			}
		})
	}
	wg.Wait()
	close(results)
	counts := map[string]int{}
	for r := range results {
		counts[r]++
	}
	// A loser's write can race with its close frame; it then reports "write failed", which
	// is also a refusal. What matters: exactly one winner.
	require.Equal(t, 1, counts["won"], "%v", counts)
	require.Equal(t, n-1, counts["refused"]+counts["write failed"], "%v", counts)
	require.EqualValues(t, 1, e.calls.Load())
	require.EqualValues(t, 1, e.srv.Stats().TicketsConsumed)
}

func TestTicketEndpointRefusals(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.post(t, "/api/ws-ticket", "", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, `Bearer error="invalid_token"`, resp.Header.Get("WWW-Authenticate"))
	resp, _ = e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer nope"}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Basic YTpi"}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	get, err := e.hs.Client().Get(e.hs.URL + "/api/ws-ticket")
	require.NoError(t, err)
	get.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, get.StatusCode)
	require.Zero(t, e.srv.Stats().TicketsIssued)
}

func TestNotAnUpgradeConsumesNothing(t *testing.T) {
	e := newEnv(t)
	ticket := e.ticket(t, e.token(t, "alice"))
	// Plain GET, no upgrade headers.
	get, err := e.hs.Client().Get(e.hs.URL + "/ws?ticket=" + ticket)
	require.NoError(t, err)
	get.Body.Close()
	require.Equal(t, http.StatusUpgradeRequired, get.StatusCode)
	echo(t, e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil), "ticket still valid")
}

func TestOrigin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000"} })
	withOrigin := func(origin string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}}
	}
	tok := e.token(t, "alice")

	for _, ok := range []string{"https://app.example.com", "https://APP.example.com", "http://localhost:3000", "http://" + e.hs.Listener.Addr().String()} {
		t.Run("allowed "+ok, func(t *testing.T) {
			echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), withOrigin(ok)), "hi")
		})
	}
	for _, bad := range []string{
		"https://evil.test",
		"http://app.example.com",            // scheme differs
		"https://app.example.com:8443",      // port differs
		"https://app.example.com.evil.test", // suffix domain
		"https://evil-app.example.com",      // prefix
		"http://localhost:3001",             // another local port
		"null",                              // sandboxed iframes, file: pages
		"app.example.com",                   // not an origin
		"https://user@app.example.com",      // userinfo
		"",                                  // present but empty
		"https://app.example.com/",          // a path is not an origin
		"http://" + e.hs.Listener.Addr().String() + ".evil.test",
	} {
		t.Run("refused "+bad, func(t *testing.T) {
			// A ticket is presented too: a refused Origin must not consume it.
			ticket := e.ticket(t, tok)
			opts := withOrigin(bad)
			if bad == "" {
				opts = &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {""}}}
			}
			e.dialRefused(t, e.wsURL("?ticket="+ticket), opts, http.StatusForbidden)
			echo(t, e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil), "ticket not consumed")
		})
	}
	// Two Origin headers are refused.
	e.dialRefused(t, e.wsURL("?token="+tok), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com", "https://evil.test"}}}, http.StatusForbidden)
}

func TestOriginConfigValidation(t *testing.T) {
	iss := newIssuer(t)
	for _, o := range []string{
		"*", "https://*.example.com", "http://127.0.0.1:*", "localhost:*", "null", "NULL",
		"https://app.example.com/path", "https://app.example.com/", "app.example.com",
		"https://app.example.com?x=1", "https://u:p@app.example.com", "https://", "https://app.example.com:",
	} {
		_, err := New(Config{Verifier: iss, Handler: Echo(), AllowedOrigins: []string{o}})
		require.Error(t, err, "origin %q", o)
	}
	s, err := New(Config{Verifier: iss, Handler: Echo(), AllowedOrigins: []string{"HTTPS://App.Example.com:443", "http://[::1]:8080"}})
	require.NoError(t, err)
	require.Equal(t, []string{"https://app.example.com", "http://[::1]:8080"}, s.origins.list)
}

func TestOriginIPv6Allowed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowedOrigins = []string{"http://[::1]:8080"} })
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://[::1]:8080"}}}
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), opts), "v6")
	e.dialRefused(t, e.wsURL("?token="+e.token(t, "alice")), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://[::2]:8080"}}}, http.StatusForbidden)
}

func TestAuthTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthTimeout = 200 * time.Millisecond })
	c := e.mustDial(t, e.wsURL(""), nil)
	requireRefused(t, c, websocket.StatusPolicyViolation, ReasonAuthTimeout)
	require.Zero(t, e.calls.Load())
}

func TestOversizedPreAuthMessage(t *testing.T) {
	e := newEnv(t)
	c := e.mustDial(t, e.wsURL(""), nil)
	big := `{"type":"auth","token":"` + strings.Repeat("a", 5000) + `"}`
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte(big)))
	ce := expectClose(t, c)
	require.Equal(t, websocket.StatusMessageTooBig, ce.Code)
	require.Zero(t, e.calls.Load())
}

func TestReadLimitAfterAuth(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadLimit = 64 << 10 })
	c := e.mustDial(t, e.wsURL(""), nil)
	c.SetReadLimit(1 << 20)
	firstMessageAuth(t, c, e.token(t, "alice"))
	// Larger than the pre-auth limit, within the post-auth one.
	echo(t, c, strings.Repeat("b", 32<<10))
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte(strings.Repeat("c", 65<<10))))
	require.Equal(t, websocket.StatusMessageTooBig, expectClose(t, c).Code)
}

func TestExpectedAuthMessage(t *testing.T) {
	e := newEnv(t)
	for name, send := range map[string]func(c *websocket.Conn){
		"other type": func(c *websocket.Conn) { writeJSONMsg(t, c, map[string]string{"type": "hello"}) },
		"not json":   func(c *websocket.Conn) { require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte("hi"))) },
		"binary": func(c *websocket.Conn) {
			require.NoError(t, c.Write(ctxT(t), websocket.MessageBinary, []byte(`{"type":"auth","token":"x"}`)))
		},
		"refresh first": func(c *websocket.Conn) {
			writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "alice")})
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := e.mustDial(t, e.wsURL(""), nil)
			send(c)
			requireRefused(t, c, websocket.StatusPolicyViolation, ReasonExpectedAuth)
		})
	}
	require.Zero(t, e.calls.Load())
}

func TestHandshakeRateLimit(t *testing.T) {
	// A rate so low that no token comes back during the test: the outcome does not depend on
	// how fast the machine is.
	e := newEnv(t, func(c *Config) { c.HandshakeRate, c.HandshakeBurst = 0.01, 2 })
	tok := e.token(t, "alice")
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "1")
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+tok), nil), "2")
	resp := e.dialRefused(t, e.wsURL("?token="+tok), nil, http.StatusTooManyRequests)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 1)
	require.LessOrEqual(t, secs, 100)
	require.EqualValues(t, 2, e.calls.Load())
}

func TestEndpointRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TicketRate, c.TicketBurst = 0.01, 1
		c.LoginRate, c.LoginBurst = 0.01, 1
		c.Users = map[string]string{"alice": "pw"}
	})
	e.ticket(t, e.token(t, "alice"))
	resp, _ := e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer " + e.token(t, "alice")}})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	resp, _ = e.login(t, `{"username":"alice","password":"pw"}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = e.login(t, `{"username":"alice","password":"pw"}`)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 1)
}

func TestPreAuthCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPreAuthPerIP = 2 })
	a := e.mustDial(t, e.wsURL(""), nil)
	b := e.mustDial(t, e.wsURL(""), nil)
	resp := e.dialRefused(t, e.wsURL(""), nil, http.StatusTooManyRequests)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	// Patterns that authenticate on the handshake are not capped.
	echo(t, e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil), "not capped")

	// Authenticating one frees its slot.
	firstMessageAuth(t, a, e.token(t, "alice"))
	c := e.mustDial(t, e.wsURL(""), nil)
	firstMessageAuth(t, c, e.token(t, "alice"))
	firstMessageAuth(t, b, e.token(t, "alice"))
}

func TestIPLimiterPrunesIdleBuckets(t *testing.T) {
	l := newIPLimiter(10, 20)
	ok, _ := l.allow("192.0.2.1")
	require.True(t, ok)
	require.Equal(t, 1, l.size())
	// Pretend the bucket has been idle long enough to be full again, and the last prune was
	// long ago: the next call prunes it.
	l.mu.Lock()
	l.buckets["192.0.2.1"].used = time.Now().Add(-time.Hour)
	l.lastPrune = time.Now().Add(-time.Hour)
	l.mu.Unlock()
	ok, _ = l.allow("192.0.2.2")
	require.True(t, ok)
	require.Equal(t, 1, l.size())

	unlimited := newIPLimiter(-1, 0)
	for range 1000 {
		ok, _ := unlimited.allow("192.0.2.3")
		require.True(t, ok)
	}
}

func TestClientIPIgnoresProxyHeaders(t *testing.T) {
	s, err := New(Config{Verifier: newIssuer(t), Handler: Echo()})
	require.NoError(t, err)
	r, err := http.NewRequest(http.MethodGet, "/ws", nil)
	require.NoError(t, err)
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	r.Header.Set("Forwarded", "for=203.0.113.9")
	require.Equal(t, "192.0.2.7", s.clientIP(r))
	r.RemoteAddr = "[2001:db8::1]:443"
	require.Equal(t, "2001:db8::1", s.clientIP(r))
	require.NoError(t, s.Close())
}

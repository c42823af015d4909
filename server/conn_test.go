package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

func TestRefreshExtendsExpiry(t *testing.T) {
	e := newEnv(t)
	tok, err := e.issuer.Issue("alice", 10*time.Minute)
	require.NoError(t, err)
	c := e.mustDial(t, e.wsURL(""), nil)
	first := firstMessageAuth(t, c, tok)
	require.InDelta(t, 600, *first.ExpiresIn, 5)
	sc := e.nextConn(t)
	before := sc.Principal()

	longer, err := e.issuer.Issue("alice", 30*time.Minute)
	require.NoError(t, err)
	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": longer})
	m := readMsg(t, c)
	require.Equal(t, "refresh_ok", m.Type)
	require.NotNil(t, m.ExpiresIn)
	require.InDelta(t, 1800, *m.ExpiresIn, 5)

	after := sc.Principal()
	require.True(t, after.ExpiresAt.After(before.ExpiresAt.Add(15*time.Minute)), "before %v after %v", before.ExpiresAt, after.ExpiresAt)
	require.Equal(t, before.Subject, after.Subject)
	require.Equal(t, before.Method, after.Method)
	// The refresh never reached the application: the next message read is the echo.
	echo(t, c, "after refresh")
	require.EqualValues(t, 1, e.srv.Stats().Refreshes)
}

func TestRefreshPrincipalMismatch(t *testing.T) {
	e := newEnv(t)
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	echo(t, c, "hi")
	sc := e.nextConn(t)
	before := sc.Principal()

	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "bob")})
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonPrincipalMismatch)
	require.Equal(t, before, sc.Principal(), "the identity is unchanged")
	require.EqualValues(t, 1, e.srv.Stats().RefreshesRefused)
}

func TestRefreshInvalidToken(t *testing.T) {
	e := newEnv(t)
	for _, bad := range []any{"garbage", "", 42} {
		c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
		echo(t, c, "hi")
		writeJSONMsg(t, c, map[string]any{"type": "refresh", "token": bad})
		requireClose(t, c, websocket.StatusPolicyViolation, ReasonUnauthorized)
	}
}

func TestRefreshRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RefreshRate, c.RefreshBurst = 0.01, 1 })
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "alice")})
	require.Equal(t, "refresh_ok", readMsg(t, c).Type)

	// Over the limit: not verified at all, so even another subject's token does not close.
	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "bob")})
	m := readMsg(t, c)
	require.Equal(t, "refresh_failed", m.Type)
	require.Equal(t, "rate limited", m.Reason)
	echo(t, c, "still open")
	st := e.srv.Stats()
	require.EqualValues(t, 1, st.Refreshes)
	require.EqualValues(t, 1, st.RefreshesRateLimited)
	require.Zero(t, st.RefreshesRefused)
}

func TestSessionExpiry(t *testing.T) {
	ended := make(chan struct{})
	e := newEnv(t, func(c *Config) {
		c.SessionTTL = 300 * time.Millisecond
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			<-ctx.Done() // the handler learns the end from its context
			close(ended)
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonSessionExpired)
	select {
	case <-ended:
	case <-time.After(waitLimit):
		t.Fatal("handler context did not end")
	}
}

func TestSessionExpiryFollowsCredential(t *testing.T) {
	e := newEnv(t)
	// The token expires within three seconds (exp is whole seconds, rounded down): the
	// connection must not outlive it, though the session TTL is an hour.
	tok, err := e.issuer.IssueWithExpiry("alice", time.Now().Add(3*time.Second))
	require.NoError(t, err)
	c := e.mustDial(t, e.wsURL(""), headerOpts(tok))
	ok := authOK(t, c)
	require.NotNil(t, ok.ExpiresIn)
	require.LessOrEqual(t, *ok.ExpiresIn, 3.0, "auth_ok announces the credential's expiry, not the hour")
	sc := e.nextConn(t)
	id, err := e.issuer.Verify(ctxT(t), tok)
	require.NoError(t, err)
	require.Equal(t, id.Expiry, sc.Principal().ExpiresAt)
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonSessionExpired)
}

func TestIdentitySessionTTLOverride(t *testing.T) {
	v := verifierFunc(func(ctx context.Context, token string) (Identity, error) {
		if token != "short" {
			return Identity{}, ErrInvalidToken
		}
		return Identity{Subject: "alice", SessionTTL: 200 * time.Millisecond}, nil
	})
	e := newEnv(t, func(c *Config) { c.Verifier = v })
	c := e.mustDial(t, e.wsURL("?token=short"), nil)
	ok := authOK(t, c)
	require.NotNil(t, ok.ExpiresIn)
	require.LessOrEqual(t, *ok.ExpiresIn, 0.2, "the principal's SessionTTL, not Config.SessionTTL")
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonSessionExpired)
}

func TestExpiryNotice(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SessionTTL = 2 * time.Second
		c.ExpiryNotice = 1900 * time.Millisecond
	})
	c := e.mustDial(t, e.wsURL(""), nil)
	firstMessageAuth(t, c, e.token(t, "alice"))
	m := readMsg(t, c)
	require.Equal(t, "expiring", m.Type)
	require.NotNil(t, m.ExpiresIn)
	require.LessOrEqual(t, *m.ExpiresIn, 2.0)
	requireClose(t, c, websocket.StatusPolicyViolation, ReasonSessionExpired)
}

func TestExpiryNoticeAgainAfterRefresh(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SessionTTL = time.Hour
		c.ExpiryNotice = 59*time.Minute + 59*time.Second
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	require.Equal(t, "expiring", readMsg(t, c).Type)
	writeJSONMsg(t, c, map[string]string{"type": "refresh", "token": e.token(t, "alice")})
	// refresh_ok and the new notice may come in either order.
	got := map[string]bool{}
	for range 2 {
		got[readMsg(t, c).Type] = true
	}
	require.Equal(t, map[string]bool{"refresh_ok": true, "expiring": true}, got)
}

func TestHandlerReturnClosesNormally(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			_ = c.Write(ctx, websocket.MessageText, []byte("bye"))
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	_, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, "bye", string(data))
	require.Equal(t, websocket.StatusNormalClosure, expectClose(t, c).Code)
}

func TestConnCloseByHandler(t *testing.T) {
	closed := make(chan error, 2)
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			closed <- c.Close(4001, "app says bye")
			closed <- c.Close(4002, "again")
			_, _, err := c.Read(ctx)
			closed <- err
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	requireClose(t, c, 4001, "app says bye")
	require.NoError(t, <-closed)
	require.ErrorIs(t, <-closed, net.ErrClosed)
	require.Error(t, <-closed, "Read after Close fails")
}

func TestConnReadContext(t *testing.T) {
	result := make(chan error, 1)
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			rctx, cancel := context.WithCancel(ctx)
			cancel()
			_, _, err := c.Read(rctx)
			result <- err
			echoOnce(ctx, c)
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	require.ErrorIs(t, <-result, context.Canceled)
	echo(t, c, "a cancelled Read leaves the connection usable")
}

func echoOnce(ctx context.Context, c *Conn) {
	typ, data, err := c.Read(ctx)
	if err == nil {
		_ = c.Write(ctx, typ, data)
	}
}

func TestPeerCloseEndsHandler(t *testing.T) {
	done := make(chan error, 1)
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			_, _, err := c.Read(ctx)
			done <- err
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	require.NoError(t, c.Close(4100, "client leaves"))
	select {
	case err := <-done:
		require.Equal(t, websocket.StatusCode(4100), websocket.CloseStatus(err))
	case <-time.After(waitLimit):
		t.Fatal("handler did not see the close")
	}
}

func TestAppMessagesThatLookLikeProtocol(t *testing.T) {
	e := newEnv(t)
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	// Other types, and binary messages, belong to the application, even "auth" after auth.
	for _, s := range []string{`{"type":"auth","token":"x"}`, `{"type":"chat"}`, `[1,2]`, `{"type":7}`} {
		echo(t, c, s)
	}
	require.NoError(t, c.Write(ctxT(t), websocket.MessageBinary, []byte(`{"type":"refresh","token":"x"}`)))
	typ, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Equal(t, `{"type":"refresh","token":"x"}`, string(data))
}

type verifierFunc func(ctx context.Context, token string) (Identity, error)

func (f verifierFunc) Verify(ctx context.Context, token string) (Identity, error) {
	return f(ctx, token)
}

func TestVerifierErrorsAreContained(t *testing.T) {
	// A verifier that misbehaves: a non-sentinel error, and an empty subject.
	v := verifierFunc(func(ctx context.Context, token string) (Identity, error) {
		if token == "empty-subject" {
			return Identity{}, nil
		}
		return Identity{}, errors.New("backend down while checking " + token)
	})
	e := newEnv(t, func(c *Config) { c.Verifier = v })
	requireRefused(t, e.mustDial(t, e.wsURL("?token=anything"), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)
	requireRefused(t, e.mustDial(t, e.wsURL("?token=empty-subject"), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)
	require.Zero(t, e.calls.Load())
}

func TestHandlerPanicClosesConnection(t *testing.T) {
	// The handler runs on a goroutine of the server's, not net/http's: its panic is
	// recovered there (the process goes on), logged with its stack, and the connection
	// closes with 1011; the next connection is served.
	logs := &syncBuffer{}
	e := newEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			if c.Principal().Subject == "alice" {
				panic("handler bug")
			}
			Echo().ServeWS(ctx, c)
		})
	})
	c := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "alice")), nil)
	require.Equal(t, websocket.StatusInternalError, expectClose(t, c).Code)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "handler bug") }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), "handler panic")
	require.Contains(t, logs.String(), "TestHandlerPanicClosesConnection", "the log carries the panic's stack")

	b := e.mustDialAuthed(t, e.wsURL("?token="+e.token(t, "bob")), nil)
	require.NoError(t, b.Write(ctxT(t), websocket.MessageText, []byte("still here")))
	_, got, err := b.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, "still here", string(got))
}

// TestPongFollowsTheAnswers checks the ordering a rotating client relies
// on: a handler that answers each message before reading the next has its
// answers on the wire before the pong to a ping sent after the messages.
func TestPongFollowsTheAnswers(t *testing.T) {
	slow := make(chan struct{})
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			for {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				<-slow // the application takes its time with each message
				if c.Write(ctx, typ, data) != nil {
					return
				}
			}
		})
	})
	ws := e.mustDialAuthed(t, e.wsURL(""), headerOpts(e.token(t, "alice")))
	const n = 5
	for i := 0; i < n; i++ {
		require.NoError(t, ws.Write(ctxT(t), websocket.MessageText, []byte{byte('0' + i)}))
	}
	got := make(chan string, n)
	go func() {
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				close(got)
				return
			}
			got <- string(data)
		}
	}()
	pinged := make(chan error, 1)
	go func() { pinged <- ws.Ping(ctxT(t)) }()
	close(slow)
	require.NoError(t, <-pinged)
	// Every answer was read before the pong was.
	require.Len(t, got, n)
	for i := 0; i < n; i++ {
		require.Equal(t, string(rune('0'+i)), <-got)
	}
}

// TestWriteOnlyHandlerStillAnswersPings: a handler that never reads keeps
// its connection alive, because before the first handover the socket is
// read freely.
func TestWriteOnlyHandlerStillAnswersPings(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) { <-ctx.Done() })
	})
	ws := e.mustDialAuthed(t, e.wsURL(""), headerOpts(e.token(t, "alice")))
	ctx := ws.CloseRead(ctxT(t))
	require.NoError(t, ws.Ping(ctxT(t)))
	require.NoError(t, ws.Close(websocket.StatusNormalClosure, ""))
	<-ctx.Done()
}

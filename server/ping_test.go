package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// fastPings makes the keepalive quick enough for tests.
func fastPings(c *Config) {
	c.PingInterval, c.PongTimeout = 50*time.Millisecond, 100*time.Millisecond
}

// endedConns makes the handler echo and report each connection's end.
func endedConns(ended chan<- Principal) envOption {
	return func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			Echo().ServeWS(ctx, c)
			ended <- c.Principal()
		})
	}
}

// waitEnded waits for the handler to report the end of subject's connection.
func waitEnded(t *testing.T, ended <-chan Principal, subject string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case p := <-ended:
			if p.Subject == subject {
				return
			}
		case <-deadline:
			t.Fatalf("the connection of %s did not end", subject)
		}
	}
}

// silentPeer opens an authenticated connection whose client then stops reading: a
// coder/websocket client answers pings only while it reads, so to the server this is a
// peer that has gone away without closing its socket.
func (e *env) silentPeer(t *testing.T, subject string) *websocket.Conn {
	t.Helper()
	c := e.mustDialAuthed(t, e.wsURL(""), headerOpts(e.token(t, subject)))
	echo(t, c, "hello")
	return c
}

// TestPingClosesSilentPeer: a peer that does not answer the server's pings is closed with
// 1001 "Ping timeout", and the handler's context ends.
func TestPingClosesSilentPeer(t *testing.T) {
	ended := make(chan Principal, 4)
	e := newEnv(t, fastPings, endedConns(ended))
	c := e.silentPeer(t, "alice")
	waitEnded(t, ended, "alice")
	requireClose(t, c, websocket.StatusGoingAway, ReasonPingTimeout)
	require.EqualValues(t, 1, e.srv.Stats().PingTimeouts)
}

// TestPingAnsweredKeepsConnection: a peer that keeps reading answers every ping and stays.
func TestPingAnsweredKeepsConnection(t *testing.T) {
	e := newEnv(t, fastPings)
	var pings atomic.Int64
	enough := make(chan struct{})
	c := e.mustDialAuthed(t, e.wsURL(""), &websocket.DialOptions{
		HTTPHeader: headerOpts(e.token(t, "alice")).HTTPHeader,
		OnPingReceived: func(context.Context, []byte) bool {
			if pings.Add(1) == 5 {
				close(enough)
			}
			return true
		},
	})
	got := make(chan string, 1)
	go func() {
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				close(got)
				return
			}
			got <- string(data)
		}
	}()
	select {
	case <-enough:
	case <-time.After(waitLimit):
		t.Fatal("the server did not ping")
	}
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte("still here")))
	require.Equal(t, "still here", <-got)
	require.Zero(t, e.srv.Stats().PingTimeouts)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	for range got {
	}
}

// TestSlowHandlerNotKilledByPing: while the handler has not asked for the next message the
// server does not read the socket, so it could not see a pong; that time is not held against
// the peer. The slow handler's connection outlives two silent peers, each of which was
// given up on after a full ping interval and pong timeout, and then works as before.
func TestSlowHandlerNotKilledByPing(t *testing.T) {
	ended := make(chan Principal, 4)
	release := make(chan struct{})
	busy := make(chan struct{})
	e := newEnv(t, fastPings, func(c *Config) {
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			if c.Principal().Subject == "slow" {
				typ, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				close(busy)
				<-release // the application takes its time with this message
				if c.Write(ctx, typ, data) != nil {
					return
				}
			}
			Echo().ServeWS(ctx, c)
			ended <- c.Principal()
		})
	})
	slow := e.mustDialAuthed(t, e.wsURL(""), headerOpts(e.token(t, "slow")))
	got := make(chan string, 4)
	go func() {
		// The slow peer's client is alive and reads all along: it would answer pings.
		defer close(got)
		for {
			_, data, err := slow.Read(context.Background())
			if err != nil {
				return
			}
			got <- string(data)
		}
	}()
	require.NoError(t, slow.Write(ctxT(t), websocket.MessageText, []byte("take your time")))
	<-busy
	require.NoError(t, slow.Write(ctxT(t), websocket.MessageText, []byte("and this")))

	for _, subject := range []string{"silent-1", "silent-2"} {
		e.silentPeer(t, subject)
		waitEnded(t, ended, subject)
	}
	close(release)
	require.Equal(t, "take your time", <-got)
	require.Equal(t, "and this", <-got)
	echo2 := func(s string) {
		require.NoError(t, slow.Write(ctxT(t), websocket.MessageText, []byte(s)))
		require.Equal(t, s, <-got)
	}
	echo2("after the pause")
	require.EqualValues(t, 2, e.srv.Stats().PingTimeouts)
	require.NoError(t, slow.Close(websocket.StatusNormalClosure, ""))
	for range got {
	}
}

// TestPingsOff: with a negative interval a silent peer stays, while the same peer of a
// server that pings has been given up on.
func TestPingsOff(t *testing.T) {
	off := newEnv(t, fastPings, func(c *Config) { c.PingInterval = -1 })
	quiet := off.silentPeer(t, "alice")
	ended := make(chan Principal, 1)
	on := newEnv(t, fastPings, endedConns(ended))
	on.silentPeer(t, "alice")
	waitEnded(t, ended, "alice")
	echo(t, quiet, "still here")
	require.Zero(t, off.srv.Stats().PingTimeouts)

	s, err := New(Config{Verifier: newIssuer(t), Handler: Echo()})
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, s.cfg.PingInterval)
	require.Equal(t, 15*time.Second, s.cfg.PongTimeout)
	require.NoError(t, s.Close())
	_, err = New(Config{Verifier: newIssuer(t), Handler: Echo(), PongTimeout: -time.Second})
	require.Error(t, err)
}

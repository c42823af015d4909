package wsauth

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// recordingApp records, in order, every message the server's handler read.
type recordingApp struct {
	mu   sync.Mutex
	seen []string
}

func (a *recordingApp) handler() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			a.mu.Lock()
			a.seen = append(a.seen, string(data))
			a.mu.Unlock()
		}
	})
}

func (a *recordingApp) received() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[string]int{}
	for _, s := range a.seen {
		m[s]++
	}
	return m
}

func TestSendConfirmedReturnsOnceTheServerReadIt(t *testing.T) {
	app := &recordingApp{}
	env := newServer(t, wsauthtest.WithHandler(app.handler()))
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			require.NoError(t, c.SendConfirmed(testCtx(t), MessageText, []byte("c"+strconv.Itoa(i))))
			// Confirmed means the handler has it already.
			require.Equal(t, 1, app.received()["c"+strconv.Itoa(i)])
		})
	}
	wg.Wait()
}

func TestSendConfirmedToADeadPathIsUnconfirmed(t *testing.T) {
	env := newServer(t)
	px := env.Proxy()
	c, err := Dial(testCtx(t), px.URL(), &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		Liveness: Liveness{PingInterval: -1, PongTimeout: 300 * time.Millisecond}})
	require.NoError(t, err)
	defer c.Close()
	px.Blackhole(true)
	err = c.SendConfirmed(testCtx(t), MessageText, []byte("into the void"))
	require.ErrorIs(t, err, ErrUnconfirmed)
	require.ErrorIs(t, err, ErrPingTimeout)
}

func TestUnconfirmedSendsAreReportedWhenTheConnectionDies(t *testing.T) {
	app := &recordingApp{}
	env := newServer(t, wsauthtest.WithHandler(app.handler()))
	px := env.Proxy()
	px.SetLatency(20 * time.Millisecond) // frames in flight when the cut comes
	rec := newRecorder()
	c, err := Dial(testCtx(t), px.URL(), &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnEvent: rec.on, Limits: Limits{KeepUnconfirmed: 10000}, Reconnect: ReconnectPolicy{Backoff: fast()}})
	require.NoError(t, err)
	defer c.Close()

	var sent []string
	for i := 0; i < 300; i++ {
		m := "m" + strconv.Itoa(i)
		if c.SendText(testCtx(t), m) == nil {
			sent = append(sent, m)
		}
		if i == 150 {
			px.Cut()
		}
	}
	// Every send that returned nil was read by the server or is listed in
	// an EventUnconfirmed: nothing is lost silently.
	rec.waitFor(t, 2, kind(EventConnected))
	require.NoError(t, c.SendConfirmed(testCtx(t), MessageText, []byte("barrier")))
	require.NoError(t, c.Close())
	listed := map[string]bool{}
	n := 0
	for _, e := range rec.all() {
		if e.Kind == EventUnconfirmed {
			n += e.Unconfirmed
			require.Len(t, e.Frames, e.Unconfirmed)
			for _, f := range e.Frames {
				listed[string(f.Data)] = true
			}
		}
	}
	got := app.received()
	lost := 0
	for _, m := range sent {
		if got[m] == 0 && !listed[m] {
			lost++
		}
		require.LessOrEqual(t, got[m], 1, "duplicated: %s", m)
	}
	t.Logf("sent %d with nil, server read %d, %d reported unconfirmed", len(sent), len(got)-1, n)
	require.Zero(t, lost, "lost silently")
	require.Positive(t, n, "the cut left frames in flight: %v", fmt.Sprint(n))
}

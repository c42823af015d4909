package wsauth

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// pingingServer serves a header token, echoes what it reads, and pings the
// client whenever the test asks, reporting whether the pong came.
type pingingServer struct {
	ping  chan struct{}
	pongs chan error
}

func (p *pingingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx := r.Context()
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil || ws.Write(ctx, typ, data) != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-p.ping:
		case <-read:
			return
		}
		pctx, cancel := context.WithTimeout(ctx, waitLong)
		p.pongs <- ws.Ping(pctx) // answered only if the client reads
		cancel()
	}
}

func TestPingsAreAnsweredWhileTheApplicationDoesNotReceive(t *testing.T) {
	srv := &pingingServer{ping: make(chan struct{}), pongs: make(chan error)}
	c, err := Dial(testCtx(t), serve(t, srv), &Options{Auth: &HeaderAuth{Tokens: StaticToken("tok-1234")}})
	require.NoError(t, err)
	defer c.Close()
	pinged := func() {
		t.Helper()
		srv.ping <- struct{}{}
		require.NoError(t, <-srv.pongs)
	}
	// The application has never received.
	pinged()
	// It receives on the socket itself for a while, then stops: the
	// background reader takes the role back and answers.
	for i := 0; i < 50; i++ {
		require.NoError(t, c.SendText(testCtx(t), "x"))
		_, _, err := c.Receive(context.Background())
		require.NoError(t, err)
	}
	pinged()
	// A receiver blocked on the socket answers too.
	got := make(chan error, 1)
	go func() { _, _, err := c.Receive(context.Background()); got <- err }()
	pinged()
	require.NoError(t, c.SendText(testCtx(t), "release"))
	require.NoError(t, <-got)
}

func TestReceiveKindsKeepOrderAcrossPathsAndReconnects(t *testing.T) {
	env := newServer(t)
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		Reconnect: ReconnectPolicy{Backoff: fast()}, OnEvent: rec.on})
	// Interleave the direct path (a context that cannot end), the handed
	// over path (one that can), and ReceiveInto with a buffer too small for
	// the larger messages.
	buf := make([]byte, 0, 4)
	tctx := testCtx(t)
	for round := 0; round < 3; round++ {
		for i := 0; i < 30; i++ {
			require.NoError(t, c.SendText(tctx, strconv.Itoa(i)+" "+string(bytes.Repeat([]byte("y"), i*37))))
		}
		for i := 0; i < 30; i++ {
			var data []byte
			var err error
			switch i % 3 {
			case 0:
				_, data, err = c.Receive(context.Background())
			case 1:
				_, data, err = c.Receive(tctx)
			case 2:
				_, buf, err = c.ReceiveInto(context.Background(), buf)
				data = buf
			}
			require.NoError(t, err)
			want := strconv.Itoa(i) + " " + string(bytes.Repeat([]byte("y"), i*37))
			require.Equal(t, want, string(data), "round %d message %d", round, i)
		}
		// A receiver blocked on the socket when the connection goes: it
		// carries on with the next connection, it does not fail.
		got := make(chan string, 1)
		go func() {
			_, data, err := c.Receive(context.Background())
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(data)
		}()
		env.CloseAll(websocket.StatusServiceRestart, "restart")
		rec.waitFor(t, round+2, kind(EventConnected))
		require.NoError(t, c.SendText(tctx, fmt.Sprint("after restart ", round)))
		select {
		case s := <-got:
			require.Equal(t, fmt.Sprint("after restart ", round), s)
		case <-time.After(waitLong):
			t.Fatal("the blocked receiver never got the next connection's message")
		}
	}
}

func TestDirectReceiverReturnsTheStopCause(t *testing.T) {
	env := newServer(t)
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}})
	errs := make(chan error, 1)
	go func() {
		_, _, err := c.Receive(context.Background())
		errs <- err
	}()
	require.NoError(t, c.Close())
	select {
	case err := <-errs:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(waitLong):
		t.Fatal("a receiver on the socket outlived Close")
	}
}

func TestAnIdleClientHoldsTwoGoroutines(t *testing.T) {
	env := newServer(t)
	const n = 10
	for i := 0; i < n; i++ {
		dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}})
	}
	// Count the goroutines the client package started (not the in-process
	// server's), from their stacks.
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	mine := 0
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "created by github.com/wsauth/wsauth.") {
			mine++
		}
	}
	t.Logf("%d goroutines for %d idle clients", mine, n)
	require.LessOrEqual(t, mine, 2*n, "the run loop and the reader; the pinger is a timer")
}

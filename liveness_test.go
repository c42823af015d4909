package wsauth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// silentListener accepts TCP connections and never says a word: a server
// that hangs in the handshake.
type silentListener struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
	done     chan struct{}
}

func newSilentListener(t *testing.T) *silentListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &silentListener{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func TestDialTimeoutEndsAHangingHandshake(t *testing.T) {
	s := newSilentListener(t)
	rec := newRecorder()
	c, err := New("ws://"+s.ln.Addr().String()+"/ws", &Options{
		OnEvent:   rec.on,
		Timeouts:  Timeouts{Dial: 200 * time.Millisecond},
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}},
	})
	require.NoError(t, err)
	defer c.Close()
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.ErrorIs(t, ev.Err, context.DeadlineExceeded)
	require.Equal(t, ActionRetry, ev.Action)
}

// mute upgrades and then reads without ever answering.
func mute() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			if _, _, err := ws.Read(r.Context()); err != nil {
				return
			}
		}
	})
}

func TestAuthTimeoutEndsASilentExchange(t *testing.T) {
	srv := httptest.NewServer(mute())
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c, err := New("ws"+strings.TrimPrefix(srv.URL, "http"), &Options{
		Auth:      &FirstMessageAuth{Tokens: StaticToken("a-token-nobody-checks")},
		OnEvent:   rec.on,
		Timeouts:  Timeouts{Auth: 200 * time.Millisecond},
		Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}},
	})
	require.NoError(t, err)
	defer c.Close()
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Contains(t, ev.Err.Error(), "auth timeout")
	require.ErrorIs(t, ev.Err, context.DeadlineExceeded)
	require.Equal(t, ActionRetry, ev.Action, "silence is not a rejection")
	require.NotContains(t, ev.Err.Error(), "a-token-nobody-checks")
}

func TestInitialJitterDelaysTheFirstDial(t *testing.T) {
	s := newSilentListener(t)
	rec := newRecorder()
	c, err := New("ws://"+s.ln.Addr().String()+"/ws", &Options{OnEvent: rec.on, Reconnect: ReconnectPolicy{InitialJitter: time.Hour}})
	require.NoError(t, err)
	// Within the jitter nothing has dialled; Close cuts the wait short.
	require.NoError(t, c.Close())
	require.EqualValues(t, 0, s.accepted.Load())
	require.Equal(t, 0, rec.count(EventConnecting))
	require.ErrorIs(t, c.Err(), ErrClosed)
}

func TestReceiveContextLeavesConnectionAlone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, data, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if ws.Write(r.Context(), typ, data) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, err := Dial(testCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	_, _, err = c.Receive(ctx)
	require.ErrorIs(t, err, context.Canceled)
	echo(t, c, "still connected after a cancelled Receive")
	require.Equal(t, StateConnected, c.State())
}

func TestOversizedMessageEndsConnection(t *testing.T) {
	big := strings.Repeat("x", 2048)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		_ = ws.Write(r.Context(), websocket.MessageText, []byte(big))
		_, _, _ = ws.Read(r.Context())
	}))
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c, err := New("ws"+strings.TrimPrefix(srv.URL, "http"), &Options{OnEvent: rec.on, Limits: Limits{ReadLimit: 1024}, Reconnect: ReconnectPolicy{Backoff: &FullJitter{Initial: time.Hour}}})
	require.NoError(t, err)
	defer c.Close()
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.True(t, errors.Is(ev.Err, websocket.ErrMessageTooBig), "%v", ev.Err)
}

package wsauth

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth/server"
)

func TestCloseEndsAnOnConnectWaitingOnItsContext(t *testing.T) {
	env := newServer(t)
	inside := make(chan struct{})
	var sawCancel atomic.Bool
	c, err := New(env.URL(), &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnConnect: func(ctx context.Context, s *Session) error {
			close(inside)
			<-ctx.Done()
			sawCancel.Store(true)
			return ctx.Err()
		}})
	require.NoError(t, err)
	<-inside
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLong):
		t.Fatal("Close hung while OnConnect waited on its context")
	}
	require.True(t, sawCancel.Load(), "Close cancelled the callback's context")
	require.ErrorIs(t, c.Err(), ErrClosed)
}

func TestCloseFromInsideOnConnect(t *testing.T) {
	env := newServer(t)
	var cp atomic.Pointer[Client]
	ready := make(chan struct{})
	returned := make(chan struct{})
	c, err := New(env.URL(), &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)},
		OnConnect: func(ctx context.Context, s *Session) error {
			<-ready
			cp.Load().Close() // signals and returns: the engine is waiting for this very callback
			close(returned)
			return ctx.Err()
		}})
	require.NoError(t, err)
	cp.Store(c)
	close(ready)
	select {
	case <-returned:
	case <-time.After(waitLong):
		t.Fatal("Close called from OnConnect deadlocked")
	}
	waitDone(t, c)
	require.ErrorIs(t, c.Err(), ErrClosed)
	require.NoError(t, c.Close())
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		field string
		o     Options
	}{
		{"Timeouts.Dial", Options{Timeouts: Timeouts{Dial: -time.Second}}},
		{"Timeouts.Auth", Options{Timeouts: Timeouts{Auth: -1}}},
		{"Timeouts.Write", Options{Timeouts: Timeouts{Write: -1}}},
		{"Limits.ReadLimit", Options{Limits: Limits{ReadLimit: -1}}},
		{"Limits.SendQueue", Options{Limits: Limits{SendQueue: -1}}},
		{"Limits.ReceiveBuffer", Options{Limits: Limits{ReceiveBuffer: -5}}},
		{"Liveness.PongTimeout", Options{Liveness: Liveness{PongTimeout: -1}}},
		{"Reconnect.StableAfter", Options{Reconnect: ReconnectPolicy{StableAfter: -1}}},
		{"Reconnect.InitialJitter", Options{Reconnect: ReconnectPolicy{InitialJitter: -1}}},
		{"Reconnect.MaxRetryAfter", Options{Reconnect: ReconnectPolicy{MaxRetryAfter: -1}}},
		{"Reconnect.MaxAuthFailures", Options{Reconnect: ReconnectPolicy{MaxAuthFailures: -1}}},
		{"Reconnect.MaxProtocolErrors", Options{Reconnect: ReconnectPolicy{MaxProtocolErrors: -1}}},
		{"Renewal.Lead", Options{Renewal: RenewalPolicy{Lead: -1}}},
		{"Renewal.Timeout", Options{Renewal: RenewalPolicy{Timeout: -1}}},
		{"Renewal.Drain", Options{Renewal: RenewalPolicy{Drain: -1}}},
		{"Renewal.Strategy", Options{Renewal: RenewalPolicy{Strategy: Renewal(42)}}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c, err := New("ws://127.0.0.1:1/ws", &tc.o)
			require.Nil(t, c)
			require.ErrorContains(t, err, "Options."+tc.field)
		})
	}
	// The fields whose documentation says negative switches them off.
	for _, o := range []Options{
		{Liveness: Liveness{PingInterval: -1}},
		{Timeouts: Timeouts{Verdict: -1}},
	} {
		c, err := New("ws://127.0.0.1:1/ws", &o)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	for _, u := range []string{"ftp://h/ws", "ws:///ws", "://nope", "ws://h/ws?token=\x7f"} {
		_, err := New(u, nil)
		require.Error(t, err, u)
	}
}

// floodingServer serves a header token, speaks the default protocol's
// notices, and on a signal from the test sends many expiry notices and
// then a going_away in one burst.
type floodingServer struct {
	flood    chan struct{}
	upgrades atomic.Int32
}

func (f *floodingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.upgrades.Add(1) // before the 101 the client may act on
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx := r.Context()
	// The first connection's session ends soon, so that a refresh starts.
	if n == 1 && ws.Write(ctx, websocket.MessageText, []byte(`{"type":"expiring","expires_in":6}`)) != nil {
		return
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var m struct{ Type string }
			if json.Unmarshal(data, &m) == nil && m.Type == "refresh" {
				_ = ws.Write(ctx, typ, []byte(`{"type":"refresh_ok","expires_in":3600}`))
			}
		}
	}()
	defer func() { ws.CloseNow(); <-read }()
	if n != 1 {
		<-read
		return
	}
	select {
	case <-f.flood:
	case <-read:
		return
	}
	for i := 0; i < 40; i++ {
		if ws.Write(ctx, websocket.MessageText, []byte(`{"type":"expiring","expires_in":3600}`)) != nil {
			return
		}
	}
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"going_away","reason":"maintenance"}`))
	<-read
}

func TestNoProtocolMessageIsDroppedWhileTheSupervisorIsBusy(t *testing.T) {
	srv := &floodingServer{flood: make(chan struct{})}
	fetching := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	src := TokenFunc(func(ctx context.Context) (*oauth2.Token, error) {
		if calls.Add(1) == 2 { // the refresh's fetch: keep the supervisor busy
			close(fetching)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &oauth2.Token{AccessToken: "tok-" + strings.Repeat("x", int(calls.Load())), Expiry: time.Now().Add(6 * time.Second)}, nil
	})
	rec := newRecorder()
	c, err := Dial(testCtx(t), serve(t, srv), &Options{Auth: &HeaderAuth{Tokens: src}, OnEvent: rec.on,
		Renewal: RenewalPolicy{Lead: 2500 * time.Millisecond}})
	require.NoError(t, err)
	defer c.Close()
	select {
	case <-fetching:
	case <-time.After(waitLong):
		t.Fatal("no refresh started")
	}
	close(srv.flood)
	// The flood and the going_away arrive while the supervisor waits on the
	// token; the client must still act on the going_away once it is free.
	close(release)
	rec.waitFor(t, 1, kind(EventRotated))
	require.GreaterOrEqual(t, srv.upgrades.Load(), int32(2), "a second connection took over")
}

// countingBackoff counts the delays it is asked for.
type countingBackoff struct {
	inner FullJitter
	n     atomic.Int32
}

func (b *countingBackoff) NextBackOff() time.Duration { b.n.Add(1); return b.inner.NextBackOff() }
func (b *countingBackoff) Reset()                     { b.inner.Reset() }

func TestFailedRotationsHaveTheirOwnPacing(t *testing.T) {
	env := newServer(t, withConfig(func(c *server.Config) { c.SessionTTL = 4 * time.Second }))
	bo := &countingBackoff{inner: FullJitter{Initial: time.Millisecond, MaxAttempts: 1}}
	rec := newRecorder()
	c := dialed(t, env, &Options{Auth: &HeaderAuth{Tokens: env.TokenSource("alice", time.Hour)}, OnEvent: rec.on,
		Reconnect: ReconnectPolicy{Backoff: bo}, Renewal: RenewalPolicy{Strategy: RenewRotate}})
	env.RefuseHandshakes(http.StatusServiceUnavailable, 1000)
	rec.waitFor(t, 2, kind(EventRefreshFailed))
	require.Zero(t, bo.n.Load(), "rotations never draw from the reconnect backoff")
	echo(t, c, "the old connection carries on")
}

func TestRotationRetryIsPacedAndBeforeExpiry(t *testing.T) {
	rb := rotationBackoff()
	bo := &rb
	bo.rnd = func() float64 { return math.Nextafter(1, 0) }
	pc := &physConn{}
	var got []time.Duration
	for i := 0; i < 4; i++ {
		got = append(got, rotationRetry(bo, pc).Round(10*time.Millisecond))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}, got, "growing, of its own")
	pc.obtained, pc.expiry = time.Now(), time.Now().Add(3*time.Second)
	require.LessOrEqual(t, rotationRetry(bo, pc), 1500*time.Millisecond, "never past halfway to the expiry")
	pc.expiry = time.Now().Add(time.Millisecond)
	require.Equal(t, rotationRetryFloor, rotationRetry(bo, pc), "and never a spin")
}

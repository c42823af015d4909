package wsauth

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"
)

// refusedAddr is a loopback port nobody listens on.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCloseFromInsideTheEventCallback(t *testing.T) {
	var cp atomic.Pointer[Client]
	ready := make(chan struct{})
	closed := make(chan struct{})
	var once atomic.Bool
	c, err := New("ws://"+refusedAddr(t)+"/ws", &Options{
		OnEvent: func(e Event) {
			if e.Kind == EventReconnecting && once.CompareAndSwap(false, true) {
				<-ready
				cp.Load().Close() // must not wait for the callback it runs in
				close(closed)
			}
		},
		Reconnect: ReconnectPolicy{Backoff: backoff.NewConstantBackOff(time.Hour)},
	})
	require.NoError(t, err)
	cp.Store(c)
	close(ready)
	select {
	case <-closed:
	case <-time.After(waitLong):
		t.Fatal("Close called from the callback deadlocked")
	}
	// From inside, Close signals and returns; the client stops as soon as
	// the callback has returned.
	waitDone(t, c)
	require.ErrorIs(t, c.Err(), ErrClosed)
	// From outside, Close waits for the dispatcher to deliver the rest.
	require.NoError(t, c.Close())
}

func TestCloseWaitsForTheEventCallback(t *testing.T) {
	release := make(chan struct{})
	inside := make(chan struct{})
	var stopped atomic.Bool
	var once atomic.Bool
	c, err := New("ws://"+refusedAddr(t)+"/ws", &Options{
		OnEvent: func(e Event) {
			if e.Kind == EventReconnecting && once.CompareAndSwap(false, true) {
				close(inside)
				<-release // a slow callback
			}
			if e.Kind == EventStopped {
				stopped.Store(true)
			}
		},
		Reconnect: ReconnectPolicy{Backoff: backoff.NewConstantBackOff(time.Hour)},
	})
	require.NoError(t, err)
	<-inside
	returned := make(chan struct{})
	go func() { c.Close(); close(returned) }()
	select {
	case <-returned:
		t.Fatal("Close returned while the callback was still running")
	case <-c.Done(): // the engine stopped; the callback still holds the dispatcher
	}
	close(release)
	<-returned
	require.True(t, stopped.Load(), "every event, the last one too, was delivered before Close returned")
}

func TestTokenEndpointRefusalIsAnHTTPError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_client"}`))
	}))
	t.Cleanup(srv.Close)
	cfg := &clientcredentials.Config{ClientID: "bot", ClientSecret: "wrong-secret", TokenURL: srv.URL}
	rec := newRecorder()
	c, err := New("ws://"+refusedAddr(t)+"/ws", &Options{
		Auth:      &HeaderAuth{Tokens: TokenFunc(cfg.Token)},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: &FullJitter{Initial: time.Millisecond, Max: time.Millisecond}},
	})
	require.NoError(t, err)
	waitDone(t, c)
	require.NoError(t, c.Close())
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu, "a bad client secret stops the client instead of retrying forever")
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, http.StatusUnauthorized, gu.HTTPStatus)
	var he *HTTPError
	require.ErrorAs(t, c.Err(), &he)
	require.Equal(t, "token", he.Op)
	require.NotContains(t, c.Err().Error(), "wrong-secret")
}

package redisstore

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoSecretsLeave: tickets, session ids and tokens appear in no key, no value, no
// pub/sub message and no log line, Redis outage included.
func TestNoSecretsLeave(t *testing.T) {
	d := newDeployment(t)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	withLogs := func(c *server.Config) {
		c.Logger = logger
		st := New(d.client(t), &Options{Logger: logger})
		st.Configure(c)
	}
	a, b := d.instance(t, withLogs), d.instance(t, withLogs)

	ctx := ctxT(t)
	sub := d.rs.Client(t).Subscribe(ctx, "wsauth:events")
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx) // the subscription is in place
	require.NoError(t, err)

	token := d.token(t, "alice")
	ticket := a.ticket(t, token)
	echo(t, authed(t, b.wsURL("?ticket="+ticket), nil), "x")
	_, ck := a.login(t, token)
	require.NotNil(t, ck)
	ws := authed(t, b.wsURL(""), b.cookieOpts(ck))
	require.Equal(t, http.StatusNoContent, a.logout(t, ck).StatusCode)
	requireClose(t, ws, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	msg, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	require.Contains(t, msg.Payload, server.SecretHash(ck.Value), "the session is named by its hash")

	secrets := []string{token, ticket, ck.Value}
	kept := a.ticket(t, token)
	_, ck2 := a.login(t, token)
	require.NotNil(t, ck2)
	secrets = append(secrets, kept, ck2.Value)
	c := d.rs.Client(t)
	for _, k := range d.keys(t) {
		typ, err := c.Type(ctx, k).Result()
		require.NoError(t, err)
		val := ""
		if typ == "string" {
			val, err = c.Get(ctx, k).Result()
			require.NoError(t, err)
		}
		for _, s := range secrets {
			require.NotContains(t, k, s)
			require.NotContains(t, val, s)
		}
	}
	require.NotContains(t, msg.Payload, ck.Value)

	d.rs.Stop(t)
	refusedStatus(t, a.wsURL("?ticket="+kept), nil, http.StatusServiceUnavailable)
	refusedStatus(t, a.wsURL(""), a.cookieOpts(ck2), http.StatusServiceUnavailable)
	a.logout(t, ck2)
	b.srv.Revoke("alice")
	d.rs.Restart(t)

	out := logs.String()
	require.NotEmpty(t, out)
	require.Contains(t, out, "store unavailable")
	for _, s := range secrets {
		require.False(t, strings.Contains(out, s), "a secret in the logs")
	}
}

// TestDataLoss: a Redis that restarts empty (a crash without persistence) takes the
// sessions and the revocation list with it; every instance adopts the empty list, and
// closes the cookie connections whose session is gone, as it would after a logout it
// missed. Token connections stay.
func TestDataLoss(t *testing.T) {
	d := newDeployment(t)
	a := d.instance(t)
	alice := d.token(t, "alice")
	_, ck := a.login(t, alice)
	require.NotNil(t, ck)
	cookie := authed(t, a.wsURL(""), a.cookieOpts(ck))
	header := authed(t, a.wsURL(""), headerOpts(alice))
	a.srv.Revoke("mallory")
	refusedStatus(t, a.wsURL(""), headerOpts(d.token(t, "mallory")), http.StatusUnauthorized)

	d.rs.Kill(t)
	drain(a.synced)
	d.rs.Restart(t)
	a.waitSynced(t)
	requireClose(t, cookie, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	echo(t, header, "a token connection does not depend on Redis")
	echo(t, authed(t, a.wsURL(""), headerOpts(d.token(t, "mallory"))), "the revocation list was lost with the data")
}

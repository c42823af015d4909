package redisstore

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// clientEvents collects a wsauth client's events.
type clientEvents chan wsauth.Event

// next waits for the next event of kind, skipping others.
func (ch clientEvents) next(t *testing.T, kind wsauth.EventKind) wsauth.Event {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event", kind)
		}
	}
}

// TestOutage: while Redis is down, everything that needs it fails closed with 503 and
// Retry-After, and nothing else changes: open connections keep working, token handshakes
// still succeed. When Redis is back everything works again without a restart: a wsauth
// client that was refused reconnects by itself, the ticket issued before the outage is
// still good, and a revocation made during the outage reaches the other instance.
func TestOutage(t *testing.T) {
	d := newDeployment(t)
	limits := func(c *server.Config) {
		// Enabled, so that the shared limits and their fallback are in the path.
		c.HandshakeRate, c.HandshakeBurst = 1000, 1000
		c.TicketRate, c.TicketBurst = 1000, 1000
		c.LoginRate, c.LoginBurst = 1000, 1000
	}
	a, b := d.instance(t, limits), d.instance(t, limits)
	alice, bob, carol := d.token(t, "alice"), d.token(t, "bob"), d.token(t, "carol")

	events := make(clientEvents, 1024)
	ctx := ctxT(t)
	cl, err := wsauth.Dial(ctx, b.wsURL(""), &wsauth.Options{
		// Tickets from A, redeemed on B.
		Auth: &wsauth.TicketAuth{
			Endpoint: a.hs.URL + "/api/ws-ticket",
			Tokens:   oauth2.StaticTokenSource(&oauth2.Token{AccessToken: alice, Expiry: time.Now().Add(time.Hour)}),
		},
		OnEvent: func(ev wsauth.Event) { events <- ev },
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	events.next(t, wsauth.EventConnected)

	saved := a.ticket(t, alice)
	_, ck := a.login(t, bob)
	require.NotNil(t, ck)
	open := []*websocket.Conn{
		authed(t, a.wsURL(""), headerOpts(alice)),
		authed(t, a.wsURL("?ticket="+b.ticket(t, alice)), nil),
		authed(t, a.wsURL(""), a.cookieOpts(ck)),
	}
	carolOnA := authed(t, a.wsURL(""), headerOpts(carol))

	d.rs.Stop(t)
	unavailable := func(what string, resp *http.Response) {
		t.Helper()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, what)
		require.Equal(t, "2", resp.Header.Get("Retry-After"), what)
		t.Logf("Redis down: %s: %d, Retry-After %s", what, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, _ := a.ticketResp(t, alice)
	unavailable("ticket endpoint", resp)
	resp, ck2 := a.login(t, bob)
	unavailable("login", resp)
	require.Nil(t, ck2)
	unavailable("logout", b.logout(t, ck))
	unavailable("ticket handshake", refusedStatus(t, b.wsURL("?ticket="+saved), nil, http.StatusServiceUnavailable))
	unavailable("cookie handshake", refusedStatus(t, a.wsURL(""), a.cookieOpts(ck), http.StatusServiceUnavailable))
	echo(t, authed(t, a.wsURL(""), headerOpts(alice)), "a token handshake needs no Redis")
	for _, c := range open {
		echo(t, c, "still open")
	}

	// The client's connection, the only one on B, is ended; its next ticket request is refused with 503, and
	// it waits as Retry-After says.
	require.Equal(t, 1, b.srv.CloseAll(websocket.StatusServiceRestart, ""))
	for {
		ev := events.next(t, wsauth.EventReconnecting)
		if ev.HTTPStatus == http.StatusServiceUnavailable {
			require.GreaterOrEqual(t, ev.Delay, 2*time.Second, "Retry-After is honoured")
			t.Logf("Redis down: wsauth client told 503, next attempt in %v (%v)", ev.Delay, ev.Action)
			break
		}
	}

	// A revocation made while Redis is down applies on B at once and reaches A later.
	b.srv.Revoke("carol")
	echo(t, carolOnA, "A cannot know yet")

	for _, in := range []*instance{a, b} {
		drain(in.synced)
	}
	d.rs.Restart(t)
	restarted := time.Now()
	requireClose(t, carolOnA, websocket.StatusPolicyViolation, server.ReasonRevoked)
	t.Logf("Redis back: the revocation made on B during the outage closed carol's socket on A %v after the restart", time.Since(restarted))
	events.next(t, wsauth.EventConnected)
	t.Logf("Redis back: the wsauth client reconnected by itself %v after the restart", time.Since(restarted))
	a.waitSynced(t)
	b.waitSynced(t)

	echo(t, authed(t, b.wsURL("?ticket="+saved), nil), "the ticket issued before the outage")
	echo(t, authed(t, a.wsURL(""), a.cookieOpts(ck)), "the session from before the outage")
	a.ticket(t, alice)
	resp, ck3 := b.login(t, bob)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NotNil(t, ck3)
	for _, c := range open {
		echo(t, c, "open all along")
	}
	require.NoError(t, cl.SendText(ctx, "hello again"))
	_, msg, err := cl.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello again", string(msg))
}

// drain empties ch.
func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestStartWhileRedisDown: an instance starts without Redis, serves what needs none, and
// catches up (the revocation list included) once Redis is there.
func TestStartWhileRedisDown(t *testing.T) {
	d := newDeployment(t)
	admin := d.store(t)
	require.NoError(t, admin.Revoke(ctxT(t), "mallory"))
	d.rs.Stop(t)
	a := d.instance(t)
	alice := d.token(t, "alice")
	echo(t, authed(t, a.wsURL(""), headerOpts(alice)), "up without Redis")
	resp, _ := a.ticketResp(t, alice)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	d.rs.Restart(t)
	a.waitSynced(t)
	refusedStatus(t, a.wsURL(""), headerOpts(d.token(t, "mallory")), http.StatusUnauthorized)
	echo(t, authed(t, a.wsURL("?ticket="+a.ticket(t, alice)), nil), "tickets work once Redis is back")
}

package redisstore

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

// TestTwoInstances: two reference servers sharing one Redis. A ticket from A is redeemed on
// B, and its replay on A refused; a revocation on B closes alice's socket on A; a logout on
// B closes the cookie socket on A; an instance started later knows the revocations.
func TestTwoInstances(t *testing.T) {
	d := newDeployment(t)
	a, b := d.instance(t), d.instance(t)
	alice := d.token(t, "alice")

	ticket := a.ticket(t, alice)
	wsB := authed(t, b.wsURL("?ticket="+ticket), nil)
	echo(t, wsB, "redeemed on B")
	c, _, err := dial(t, a.wsURL("?ticket="+ticket), nil)
	require.NoError(t, err, "ticket failures are refused after the upgrade")
	requireRefused(t, c, websocket.StatusPolicyViolation, server.ReasonInvalidTicket)
	require.EqualValues(t, 1, a.srv.Stats().TicketsIssued)
	require.EqualValues(t, 1, b.srv.Stats().TicketsConsumed)
	require.Zero(t, a.srv.Stats().TicketsConsumed)

	wsA := authed(t, a.wsURL("?ticket="+a.ticket(t, alice)), nil)
	start := time.Now()
	require.Equal(t, 1, b.srv.Revoke("alice"), "B closes its own socket of alice")
	requireClose(t, wsA, websocket.StatusPolicyViolation, server.ReasonRevoked)
	t.Logf("revoke on B closed alice's socket on A after %v", time.Since(start))
	requireClose(t, wsB, websocket.StatusPolicyViolation, server.ReasonRevoked)
	refusedStatus(t, a.wsURL(""), headerOpts(alice), http.StatusUnauthorized)

	late := d.instance(t)
	refusedStatus(t, late.wsURL(""), headerOpts(alice), http.StatusUnauthorized)
	resp, _ := late.ticketResp(t, alice)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a later instance learns the revocations")

	// Unrevoke travels behind a marker revocation: once the marker's socket on A has
	// closed, A has applied the unrevoke too.
	marker := authed(t, a.wsURL(""), headerOpts(d.token(t, "marker")))
	b.srv.Unrevoke("alice")
	b.srv.Revoke("marker")
	requireClose(t, marker, websocket.StatusPolicyViolation, server.ReasonRevoked)
	echo(t, authed(t, a.wsURL(""), headerOpts(alice)), "unrevoked on A")

	bob := d.token(t, "bob")
	_, ck := a.login(t, bob)
	require.NotNil(t, ck)
	cookieA := authed(t, a.wsURL(""), a.cookieOpts(ck))
	cookieB := authed(t, b.wsURL(""), b.cookieOpts(ck))
	start = time.Now()
	require.Equal(t, http.StatusNoContent, b.logout(t, ck).StatusCode)
	requireClose(t, cookieA, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	t.Logf("logout on B closed the session's socket on A after %v", time.Since(start))
	requireClose(t, cookieB, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	c, _, err = dial(t, a.wsURL(""), a.cookieOpts(ck))
	require.NoError(t, err)
	requireRefused(t, c, websocket.StatusPolicyViolation, server.ReasonUnauthorized)
}

// TestStoreRevocations: revocations made from outside any server, through the Store,
// reach every instance.
func TestStoreRevocations(t *testing.T) {
	d := newDeployment(t)
	a, b := d.instance(t), d.instance(t)
	admin := d.store(t)
	ctx := ctxT(t)

	alice := d.token(t, "alice")
	wsA := authed(t, a.wsURL(""), headerOpts(alice))
	wsB := authed(t, b.wsURL("?ticket="+a.ticket(t, alice)), nil)
	start := time.Now()
	require.NoError(t, admin.Revoke(ctx, "alice"))
	requireClose(t, wsA, websocket.StatusPolicyViolation, server.ReasonRevoked)
	requireClose(t, wsB, websocket.StatusPolicyViolation, server.ReasonRevoked)
	t.Logf("Store.Revoke closed alice's sockets on A and B after %v", time.Since(start))
	revoked, err := admin.Revoked(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"alice"}, revoked)
	require.Error(t, admin.Revoke(ctx, ""))

	bob := d.token(t, "bob")
	_, ck1 := a.login(t, bob)
	_, ck2 := b.login(t, bob)
	require.NotNil(t, ck1)
	require.NotNil(t, ck2)
	s1 := authed(t, b.wsURL(""), b.cookieOpts(ck1))
	s2 := authed(t, a.wsURL(""), a.cookieOpts(ck2))
	header := authed(t, a.wsURL(""), headerOpts(bob))
	n, err := admin.EndSessions(ctx, "bob")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	requireClose(t, s1, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	requireClose(t, s2, websocket.StatusPolicyViolation, server.ReasonLoggedOut)
	echo(t, header, "ending bob's sessions does not revoke bob")

	_, ck3 := a.login(t, bob)
	s3 := authed(t, b.wsURL(""), b.cookieOpts(ck3))
	require.NoError(t, admin.EndSession(ctx, ck3.Value))
	requireClose(t, s3, websocket.StatusPolicyViolation, server.ReasonLoggedOut)

	require.NoError(t, admin.Unrevoke(ctx, "alice"))
	revoked, err = admin.Revoked(ctx)
	require.NoError(t, err)
	require.Empty(t, revoked)
}

// TestDoubleSpend: 200 redemptions of one ticket at once, spread over two instances:
// exactly one connection is authenticated, every other is refused.
func TestDoubleSpend(t *testing.T) {
	d := newDeployment(t)
	d.timeout = waitLimit // two hundred handshakes at once on a busy machine queue for Redis
	a, b := d.instance(t), d.instance(t)
	ticket := a.ticket(t, d.token(t, "alice"))

	const n = 200
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Go(func() {
			<-start
			c, _, err := websocket.Dial(ctxT(t), in.wsURL("?ticket="+ticket), nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.CloseNow()
			_, data, err := c.Read(ctxT(t))
			switch {
			case err == nil && isAuthOK(data):
				ok.Add(1)
			case websocket.CloseStatus(err) == websocket.StatusPolicyViolation:
				refused.Add(1)
			default:
				t.Errorf("neither auth_ok nor 1008: %q %v", data, err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d concurrent redemptions of one ticket over 2 instances: %d authenticated, %d refused with 1008",
		n, ok.Load(), refused.Load())
	require.EqualValues(t, 1, ok.Load())
	require.EqualValues(t, n-1, refused.Load())
	require.EqualValues(t, 1, a.srv.Stats().TicketsConsumed+b.srv.Stats().TicketsConsumed)
}

// isAuthOK reports whether data is the auth_ok message.
func isAuthOK(data []byte) bool {
	var m struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(data, &m) == nil && m.Type == "auth_ok"
}

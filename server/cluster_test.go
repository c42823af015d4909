package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// blockingTicketStore never answers until its context ends: a store that hangs.
type blockingTicketStore struct{ MemoryTicketStore }

func (b *blockingTicketStore) Consume(ctx context.Context, ticket string) (TicketData, error) {
	<-ctx.Done()
	return TicketData{}, ctx.Err()
}

// TestHangingStoreHitsAuthTimeout: the store is asked before the upgrade, so a store that
// does not answer within AuthTimeout is an unavailable one: 503 with Retry-After, which a
// client retries, never an open socket.
func TestHangingStoreHitsAuthTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TicketStore = &blockingTicketStore{}
		c.AuthTimeout = 200 * time.Millisecond
	})
	resp := e.dialRefused(t, e.wsURL("?ticket=whatever"), nil, http.StatusServiceUnavailable)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Zero(t, e.calls.Load())
}

// downStores are a ticket and a session store whose backend can be switched off.
type downStores struct {
	MemoryTicketStore
	sessions *MemorySessionStore
	mu       sync.Mutex
	down     bool
}

func newDownStores() *downStores {
	return &downStores{MemoryTicketStore: *NewMemoryTicketStore(), sessions: NewMemorySessionStore()}
}

func (d *downStores) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
}

func (d *downStores) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return fmt.Errorf("test store: %w: connection refused", ErrStoreUnavailable)
	}
	return nil
}

func (d *downStores) Put(ctx context.Context, ticket string, td TicketData, ttl time.Duration) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.MemoryTicketStore.Put(ctx, ticket, td, ttl)
}

func (d *downStores) Consume(ctx context.Context, ticket string) (TicketData, error) {
	if err := d.err(); err != nil {
		return TicketData{}, err
	}
	return d.MemoryTicketStore.Consume(ctx, ticket)
}

type downSessions struct{ *downStores }

func (d downSessions) Create(ctx context.Context, sd SessionData) (string, error) {
	if err := d.err(); err != nil {
		return "", err
	}
	return d.sessions.Create(ctx, sd)
}

func (d downSessions) Get(ctx context.Context, id string) (SessionData, error) {
	if err := d.err(); err != nil {
		return SessionData{}, err
	}
	return d.sessions.Get(ctx, id)
}

func (d downSessions) Delete(ctx context.Context, id string) error {
	if err := d.err(); err != nil {
		return err
	}
	return d.sessions.Delete(ctx, id)
}

// TestStoreUnavailableFailsClosed: every request that needs an unavailable store gets 503
// with Retry-After, before any upgrade; what needs no store keeps working, and so do the
// connections already open.
func TestStoreUnavailableFailsClosed(t *testing.T) {
	st := newDownStores()
	e := newEnv(t, func(c *Config) {
		c.TicketStore = st
		c.SessionStore = downSessions{st}
	})
	tok := e.token(t, "alice")
	ticket := e.ticket(t, tok)
	_, ck := e.login(t, `{"token":"`+tok+`"}`)
	require.NotNil(t, ck)
	open := e.mustDialAuthed(t, e.wsURL("?ticket="+e.ticket(t, tok)), nil)

	st.setDown(true)
	requireRetryAfter := func(resp *http.Response) {
		t.Helper()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Equal(t, "2", resp.Header.Get("Retry-After"))
	}
	resp, _ := e.post(t, "/api/ws-ticket", "", "", http.Header{"Authorization": {"Bearer " + tok}})
	requireRetryAfter(resp)
	resp, _ = e.login(t, `{"token":"`+tok+`"}`)
	requireRetryAfter(resp)
	resp, _ = e.post(t, "/api/logout", "", "", http.Header{"Cookie": {ck.Name + "=" + ck.Value}})
	requireRetryAfter(resp)
	requireRetryAfter(e.dialRefused(t, e.wsURL("?ticket="+ticket), nil, http.StatusServiceUnavailable))
	requireRetryAfter(e.dialRefused(t, e.wsURL(""), e.cookieOpts(ck), http.StatusServiceUnavailable))
	echo(t, open, "still here")
	echo(t, e.mustDialAuthed(t, e.wsURL(""), headerOpts(tok)), "no store needed")

	st.setDown(false)
	// The refused handshake did not consume the ticket, nor the refused logout end the
	// session.
	echo(t, e.mustDialAuthed(t, e.wsURL("?ticket="+ticket), nil), "ticket kept")
	echo(t, e.mustDialAuthed(t, e.wsURL(""), e.cookieOpts(ck)), "session kept")
	requireRefused(t, e.mustDial(t, e.wsURL("?ticket="+ticket), nil), websocket.StatusPolicyViolation, ReasonInvalidTicket)
}

// memHub is an in-process Cluster backend linking the servers of one test: what one
// publishes reaches every other, in order.
type memHub struct {
	mu      sync.Mutex
	members map[*memCluster]bool
	revoked map[string]bool
}

type memCluster struct {
	hub    *memHub
	events chan ClusterEvent
	done   chan struct{}
}

func newMemHub() *memHub {
	return &memHub{members: make(map[*memCluster]bool), revoked: make(map[string]bool)}
}

func (h *memHub) cluster() *memCluster {
	return &memCluster{hub: h, events: make(chan ClusterEvent, 64), done: make(chan struct{})}
}

func (m *memCluster) Publish(_ context.Context, ev ClusterEvent) error {
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	switch ev.Kind {
	case ClusterRevoke:
		h.revoked[ev.Subject] = true
	case ClusterUnrevoke:
		delete(h.revoked, ev.Subject)
	}
	for other := range h.members {
		if other != m {
			other.events <- ev
		}
	}
	return nil
}

func (m *memCluster) Subscribe(apply func(ClusterEvent)) (func(), error) {
	h := m.hub
	h.mu.Lock()
	h.members[m] = true
	sync := ClusterEvent{Kind: ClusterSync}
	for s := range h.revoked {
		sync.Revoked = append(sync.Revoked, s)
	}
	h.mu.Unlock()
	apply(sync)
	go func() {
		defer close(m.done)
		for ev := range m.events {
			apply(ev)
		}
	}()
	return func() {
		h.mu.Lock()
		delete(h.members, m)
		h.mu.Unlock()
		close(m.events)
		<-m.done
	}, nil
}

// TestClusterHook: Revoke, Unrevoke and logout on one instance reach the other through
// Config.Cluster, and a new instance starts with the cluster's revocation list.
func TestClusterHook(t *testing.T) {
	hub := newMemHub()
	sessions := NewMemorySessionStore()
	issuer, err := NewHMACIssuer(RandomKey())
	require.NoError(t, err)
	shared := func(c *Config) {
		c.Cluster = hub.cluster()
		c.SessionStore = sessions
		c.Verifier, c.Issuer = issuer, issuer // every instance trusts the same tokens
	}
	a, b := newEnv(t, shared), newEnv(t, shared)
	a.issuer = issuer

	ws := a.mustDialAuthed(t, a.wsURL(""), headerOpts(a.token(t, "alice")))
	require.Zero(t, b.srv.Revoke("alice"), "no connection of alice on b")
	requireClose(t, ws, websocket.StatusPolicyViolation, ReasonRevoked)
	requireRefused(t, a.mustDial(t, a.wsURL("?token="+a.token(t, "alice")), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)

	late := newEnv(t, shared)
	requireRefused(t, late.mustDial(t, late.wsURL("?token="+a.token(t, "alice")), nil), websocket.StatusPolicyViolation, ReasonUnauthorized)

	b.srv.Unrevoke("alice")
	// Unrevoke travels in order behind a marker revocation: once the marker has closed its
	// socket on a, the unrevoke has been applied there too.
	marker := a.mustDialAuthed(t, a.wsURL(""), headerOpts(a.token(t, "marker")))
	b.srv.Revoke("marker")
	requireClose(t, marker, websocket.StatusPolicyViolation, ReasonRevoked)
	echo(t, a.mustDialAuthed(t, a.wsURL(""), headerOpts(a.token(t, "alice"))), "back")

	_, ck := a.login(t, `{"token":"`+a.token(t, "bob")+`"}`)
	require.NotNil(t, ck)
	cws := a.mustDialAuthed(t, a.wsURL(""), a.cookieOpts(ck))
	resp, _ := b.post(t, "/api/logout", "", "", http.Header{"Cookie": {ck.Name + "=" + ck.Value}})
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	requireClose(t, cws, websocket.StatusPolicyViolation, ReasonLoggedOut)
}

// fakeLimits is a Limits that records what the server asks of it. Its rate limiters refuse
// (Retry-After 7) unless allow is set, and refund into refunds; its cap is nil (the server
// keeps its own) unless slots is set, and then refuses.
type fakeLimits struct {
	allow, slots bool

	mu      sync.Mutex
	names   []string // rate limiters, then "slots:" caps
	refunds []string // "name:key"
}

type fakeRate struct {
	l    *fakeLimits
	name string
}

func (l *fakeLimits) RateLimiter(name string, perSecond float64, burst int) RateLimiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
	return fakeRate{l, name}
}

func (l *fakeLimits) SlotLimiter(name string, max int) SlotLimiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, fmt.Sprintf("slots:%s:%d", name, max))
	if !l.slots {
		return nil
	}
	return l
}

func (l *fakeLimits) Acquire(context.Context, string) (func(), bool) { return nil, false }

func (r fakeRate) Allow(context.Context, string) (bool, time.Duration) {
	if r.l.allow {
		return true, 0
	}
	return false, 7 * time.Second
}

func (r fakeRate) Refund(_ context.Context, key string) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.l.refunds = append(r.l.refunds, r.name+":"+key)
}

func (l *fakeLimits) recorded() (names, refunds []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.names), slices.Clone(l.refunds)
}

// TestLimitsHook: Config.Limits takes over the enabled rate limits, per IP and per account,
// and only those; a refusal of the shared limiter is the server's answer.
func TestLimitsHook(t *testing.T) {
	lim := &fakeLimits{}
	e := newEnv(t, func(c *Config) {
		c.Limits = lim
		c.HandshakeRate, c.LoginRate = 10, 1
		c.TicketRate = -1 // disabled limits stay disabled
		c.Users = map[string]string{"alice": "right"}
	})
	names, _ := lim.recorded()
	require.ElementsMatch(t, []string{"handshake", "login", "token", "login-account", "token-client"}, names,
		"no cap asked for without MaxConnsPerPrincipal")
	resp := e.dialRefused(t, e.wsURL(""), headerOpts(e.token(t, "alice")), http.StatusTooManyRequests)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))
	e.ticket(t, e.token(t, "alice"))
}

// TestSharedAccountLimit: the per-account limits take from Config.Limits, and a right
// password gives its token back there.
func TestSharedAccountLimit(t *testing.T) {
	lim := &fakeLimits{allow: true}
	e := newEnv(t, func(c *Config) {
		c.Limits = lim
		c.Users = map[string]string{"alice": "right"}
		c.Clients = map[string]string{"bot": "right"}
	})
	login := func(pw string) int {
		resp, _ := e.post(t, "/api/login", "application/json", `{"username":"alice","password":"`+pw+`"}`, nil)
		return resp.StatusCode
	}
	token := func(secret string) int {
		resp, _ := e.post(t, "/oauth/token", "application/x-www-form-urlencoded",
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"bot"}, "client_secret": {secret}}.Encode(), nil)
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, login("guess"))
	require.Equal(t, http.StatusNoContent, login("right"))
	require.Equal(t, http.StatusUnauthorized, token("guess"))
	require.Equal(t, http.StatusOK, token("right"))
	_, refunds := lim.recorded()
	require.Equal(t, []string{"login-account:alice", "token-client:bot"}, refunds, "only the right passwords are refunded")

	lim.mu.Lock()
	lim.allow = false
	lim.mu.Unlock()
	for _, pw := range []string{"guess", "right"} {
		require.Equal(t, http.StatusTooManyRequests, login(pw), pw)
		require.Equal(t, http.StatusTooManyRequests, token(pw), pw)
	}
}

// TestSharedPrincipalCap: with Config.Limits the per-principal cap is the shared one; a
// Limits without one (nil) leaves the cap in the instance.
func TestSharedPrincipalCap(t *testing.T) {
	lim := &fakeLimits{allow: true, slots: true}
	e := newEnv(t, func(c *Config) {
		c.Limits = lim
		c.MaxConnsPerPrincipal = 3
	})
	names, _ := lim.recorded()
	require.Contains(t, names, "slots:principal:3")
	tok := e.token(t, "alice")
	e.dialRefused(t, e.wsURL(""), headerOpts(tok), http.StatusTooManyRequests)
	requireRefused(t, e.mustDial(t, e.wsURL("?token="+tok), nil), websocket.StatusTryAgainLater, ReasonTooManyConnections)
	require.EqualValues(t, 2, e.srv.Stats().PrincipalCapped)

	local := newEnv(t, func(c *Config) {
		c.Limits = &fakeLimits{allow: true}
		c.MaxConnsPerPrincipal = 1
	})
	tok = local.token(t, "alice")
	echo(t, local.mustDialAuthed(t, local.wsURL(""), headerOpts(tok)), "the one slot")
	local.dialRefused(t, local.wsURL(""), headerOpts(tok), http.StatusTooManyRequests)
}

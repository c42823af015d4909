package interop

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
)

// ticketServer is the recommended pattern as an application writes it:
// POST /api/ws-ticket with a bearer token buys a single-use ticket that
// lives 30 s; GET /ws?ticket=… accepts the upgrade, then serves the
// ticket's holder or closes 1008 "Invalid or expired ticket" at once.
type ticketServer struct {
	*plainServer

	// Guarded by plainServer.mu.
	tickets   map[string]ticket
	spent     map[string]bool
	bearers   []string // the bearer token of every ticket request, in order
	redeemed  int
	reused    int
	failNext  int // test hook: refuse that many of the next tickets presented
	upgrades  int
	ticketTTL time.Duration
}

type ticket struct {
	sub      string
	tokenExp time.Time // the session lives as long as the token that bought it
	expires  time.Time
}

func newTicketServer(t *testing.T, p *idp) *ticketServer {
	s := &ticketServer{plainServer: newPlainServer(t, p), tickets: map[string]ticket{}, spent: map[string]bool{},
		ticketTTL: 30 * time.Second}
	s.mux.HandleFunc("POST /api/ws-ticket", s.issue)
	s.mux.HandleFunc("GET /ws", s.ws)
	return s
}

func (s *ticketServer) issue(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.bearers = append(s.bearers, bearer)
	s.mu.Unlock()
	sub, exp, err := s.idp.verify(bearer)
	if !ok || err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
		return
	}
	value := randomString()
	s.mu.Lock()
	s.tickets[value] = ticket{sub: sub, tokenExp: exp, expires: time.Now().Add(s.ticketTTL)}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"ticket": value, "expires_in": int(s.ticketTTL / time.Second)})
}

func (s *ticketServer) ws(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.upgrades++
	s.mu.Unlock()
	g, ok := s.redeem(r.URL.Query().Get("ticket"))
	if !ok {
		s.refuse(c, "Invalid or expired ticket")
		return
	}
	s.serve(r.Context(), c, g)
}

// redeem consumes a ticket: whatever the outcome, it is never good again.
func (s *ticketServer) redeem(value string) (*grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[value]
	delete(s.tickets, value)
	if !ok {
		if s.spent[value] {
			s.reused++
		}
		return nil, false
	}
	s.spent[value] = true
	s.redeemed++
	if s.failNext > 0 {
		s.failNext--
		return nil, false
	}
	if time.Now().After(t.expires) {
		return nil, false
	}
	return &grant{sub: t.sub, exp: t.tokenExp}, true
}

func (s *ticketServer) refuseNextTickets(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

type ticketStats struct {
	plainStats
	bearers            []string
	redeemed, reused   int
	upgrades, requests int
}

func (s *ticketServer) ticketStats() ticketStats {
	st := s.stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	return ticketStats{plainStats: st, bearers: append([]string(nil), s.bearers...), redeemed: s.redeemed,
		reused: s.reused, upgrades: s.upgrades, requests: len(s.bearers)}
}

// ticketSpec connects with TicketAuth and a static bearer token, and no
// dialect: the server is an ordinary one.
func ticketSpec(s *ticketServer, token string) spec {
	return spec{
		url: s.wsURL("/ws"),
		options: func() *wsauth.Options {
			return &wsauth.Options{
				Auth:      &wsauth.TicketAuth{Endpoint: s.url("/api/ws-ticket"), Tokens: wsauth.StaticToken(token)},
				Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 3},
			}
		},
		// --ticket-url defaults to the URL's host with /api/ws-ticket.
		args: []string{"--auth", "ticket", "--max-auth-failures", "3"},
		env:  []string{"WSAUTH_TOKEN=" + token},
	}
}

// ticketOAuthSpec buys tickets with OAuth 2.0 client-credentials tokens.
func ticketOAuthSpec(s *ticketServer, p *idp) spec {
	return spec{
		url: s.wsURL("/ws"),
		options: func() *wsauth.Options {
			return &wsauth.Options{Auth: &wsauth.TicketAuth{Endpoint: s.url("/api/ws-ticket"),
				Tokens: wsauth.TokenFunc(p.config().Token)}}
		},
		args: []string{"--auth", "ticket", "--oauth2-token-url", p.tokenURL(), "--client-id", botID},
		env:  []string{"WSAUTH_CLIENT_SECRET=" + botSecret},
	}
}

// A ticket server that serves without a word is connected to by the
// verdict window, and the ticket is used once.
func TestTicketConnectsWithoutAuthOK(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newTicketServer(t, p)
		c := start(ticketSpec(s, p.mint(botID, time.Hour)))
		connected := c.events().next(t, "connected", is("connected"))
		c.send(t, "hello")
		require.Equal(t, "hello", c.recv(t))
		c.stop(t)

		st := s.ticketStats()
		require.Equal(t, 1, st.requests, "one ticket bought")
		require.Equal(t, 1, st.accepted)
		require.Zero(t, st.reused)
		require.Equal(t, []string{"hello"}, st.received)
		assert.Equal(t, "window", connected.Verdict, "a server that says nothing is judged by the verdict window")
	})
}

// A ticket closed at once with 1008 is a refusal inside the verdict: the
// client buys a new ticket and comes back, and a send queued before the
// verdict is written once, to the connection that was accepted.
func TestTicketRefusedAtOnceBuysAFreshTicket(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newTicketServer(t, p)
		s.refuseNextTickets(1)
		c := start(ticketSpec(s, p.mint(botID, time.Hour)))
		c.send(t, "queued before the verdict")
		refused := c.events().next(t, "reconnecting after the refused ticket", is("reconnecting"))
		require.Equal(t, 1008, refused.Code)
		require.Equal(t, "Invalid or expired ticket", refused.Reason)
		require.Equal(t, "reauth", refused.Action, "a close inside the verdict is a refusal")
		c.events().next(t, "connected", is("connected"))
		require.Equal(t, "queued before the verdict", c.recv(t))
		c.stop(t)

		st := s.ticketStats()
		require.Equal(t, 2, st.requests, "a fresh ticket for the second attempt")
		require.Equal(t, 2, st.redeemed)
		require.Zero(t, st.reused, "a ticket is never presented twice")
		require.Equal(t, []string{"queued before the verdict"}, st.received,
			"nothing reached the refused connection, and the queued send came once")
	})
}

// A bearer token the ticket endpoint refuses (401) is never sent again:
// the client gives up on authentication (exit 3) without dialing.
func TestTicketBadBearerGivesUp(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newTicketServer(t, p)
		c := start(ticketSpec(s, p.forged(botID)))
		refused := c.events().next(t, "reconnecting after the 401", is("reconnecting"))
		require.Equal(t, http.StatusUnauthorized, refused.Status)
		require.Equal(t, "reauth", refused.Action)
		st := c.waitStopped(t)
		require.Equal(t, "authentication", st.gaveUp)

		ts := s.ticketStats()
		require.Equal(t, 1, ts.requests, "the refused token was offered once")
		require.Zero(t, ts.upgrades)
	})
}

// An administrator's 1008 on an established, working session is not a
// refusal of the long-lived token: the client buys a ticket with the same
// token and carries on.
func TestTicketPolicyCloseStaticTokenCarriesOn(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newTicketServer(t, p)
		token := p.mint(botID, time.Hour)
		c := start(ticketSpec(s, token))
		c.events().next(t, "connected", is("connected"))
		c.send(t, "before")
		require.Equal(t, "before", c.recv(t))

		s.closeSessions(websocket.StatusPolicyViolation, "Policy violation")
		closed := c.events().next(t, "reconnecting after the 1008", reconnectingWith(1008))
		require.Equal(t, "Policy violation", closed.Reason)
		c.events().next(t, "connected again", is("connected"))
		c.send(t, "after")
		require.Equal(t, "after", c.recv(t))
		c.stop(t)

		st := s.ticketStats()
		require.Equal(t, []string{token, token}, st.bearers, "the same long-lived token, offered again")
		require.Equal(t, 2, st.accepted)
		require.Zero(t, st.reused)
	})
}

// During an outage the ticket endpoint answers 503 with Retry-After: the
// client waits at least that long and recovers.
func TestTicketOutageRetryAfter(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, time.Hour)
		s := newTicketServer(t, p)
		c := start(ticketSpec(s, p.mint(botID, time.Hour)))
		c.events().next(t, "connected", is("connected"))

		s.startOutage(2, 1)
		s.closeSessions(websocket.StatusServiceRestart, "Service restart")
		checkRetryAfter(t, c, time.Second)
		c.send(t, "after the outage")
		require.Equal(t, "after the outage", c.recv(t))
		c.stop(t)
		require.Zero(t, s.ticketStats().reused)
	})
}

// checkRetryAfter checks that after a 503 with Retry-After the client
// waits at least retryAfter (a lower bound, from the events: generous on a
// busy machine) and then connects.
func checkRetryAfter(t *testing.T, c client, retryAfter time.Duration) {
	t.Helper()
	busy := c.events().next(t, "reconnecting after the 503", reconnectingWithStatus(http.StatusServiceUnavailable))
	require.GreaterOrEqual(t, busy.Delay, retryAfter, "the announced delay honours Retry-After")
	again := c.events().next(t, "the attempt after the 503", is("connecting"))
	// The JSON events of the command carry milliseconds.
	require.GreaterOrEqual(t, again.Time.Sub(busy.Time), retryAfter-10*time.Millisecond, "the client waited out Retry-After")
	c.events().next(t, "connected after the outage", is("connected"))
}

// Sessions live as long as the token that bought the ticket (2 s); the
// client refreshes in band before that, with fresh client-credentials
// tokens, and one connection carries traffic for 10 s.
func TestTicketRefreshKeepsOneConnection(t *testing.T) {
	t.Parallel()
	bothWays(t, func(t *testing.T, start starter) {
		p := newIDP(t, 2*time.Second)
		s := newTicketServer(t, p)
		c := start(ticketOAuthSpec(s, p))
		checkRefreshKeepsOneConnection(t, c, s.plainServer, p)
		require.Equal(t, 1, s.ticketStats().requests)
	})
}

// checkRefreshKeepsOneConnection sends traffic for 10 s over a session
// whose tokens live 2 s and checks that one connection carried it all,
// refreshed with fresh tokens from the token endpoint.
func checkRefreshKeepsOneConnection(t *testing.T, c client, s *plainServer, p *idp) {
	t.Helper()
	c.events().next(t, "connected", is("connected"))
	tick := time.NewTicker(250 * time.Millisecond) // pacing the traffic, not waiting for anything
	defer tick.Stop()
	n := 0
	for start := time.Now(); time.Since(start) < 10*time.Second; <-tick.C {
		msg := "ping " + time.Now().Format(time.StampMilli)
		c.send(t, msg)
		require.Equal(t, msg, c.recv(t), "echo %d", n)
		n++
	}
	c.stop(t)

	ev := c.events()
	require.Zero(t, ev.count(is("reconnecting")), "no reconnect in 10 s; events:\n%s", ev.dump())
	require.Equal(t, 1, ev.count(is("connected")))
	require.GreaterOrEqual(t, ev.count(is("refreshed")), 4, "refreshed in band; events:\n%s", ev.dump())
	st := s.stats()
	require.Equal(t, 1, st.accepted, "one connection")
	require.Len(t, st.received, n)
	require.GreaterOrEqual(t, len(st.refreshes), 4)
	seen := map[string]bool{}
	for _, tok := range st.refreshes {
		require.False(t, seen[tok], "every refresh carries a fresh token")
		seen[tok] = true
	}
	require.GreaterOrEqual(t, p.issued.Load(), int64(5), "the token endpoint was asked for fresh tokens as they expired")
}

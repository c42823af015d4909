package wsauthtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// The two tests in this file are the integration tests docs/testing.md
// shows, as a user would write them in a _test.go file of their own: a
// forced re-authentication, waited for on the server's side, and an
// outage, waited for on the client's side.

// snippet: testing-reauth
func TestClientReauthenticates(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	srv := wsauthtest.NewServer(t) // echoes; every pattern; closed when the test ends
	c, err := wsauth.Dial(ctx, srv.URL(), &wsauth.Options{
		Auth: &wsauth.TicketAuth{Endpoint: srv.TicketURL(), Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
	})
	require.NoError(t, err)
	defer c.Close()
	ticketOK := func(ev server.AuthEvent) bool {
		return ev.Stage == server.StageHandshake && ev.OK && ev.Method == server.MethodTicket
	}
	_, err = srv.WaitAuthEvents(ctx, 1, ticketOK) // the server's verdict on the first connection
	require.NoError(t, err)

	// The server ends the session with 1008: the client must fetch a new
	// ticket and authenticate again on its own.
	srv.CloseAll(wsauth.StatusPolicyViolation, "Unauthorized")
	_, err = srv.WaitAuthEvents(ctx, 2, ticketOK) // back, with a new ticket
	require.NoError(t, err)

	require.NoError(t, c.SendText(ctx, "hello"))
	_, msg, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(msg))
}

// end snippet

// snippet: testing-outage
func TestClientRidesOutAnOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	srv := wsauthtest.NewServer(t)
	connected := make(chan struct{}, 8)
	c, err := wsauth.Dial(ctx, srv.URL(), &wsauth.Options{
		Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		OnEvent: func(e wsauth.Event) {
			if e.Kind == wsauth.EventConnected {
				connected <- struct{}{}
			}
		},
		Reconnect: wsauth.ReconnectPolicy{Backoff: &wsauth.FullJitter{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond}},
	})
	require.NoError(t, err)
	defer c.Close()
	<-connected // the first connection's event

	srv.Stop() // a real outage: every socket closed with 1001, the port refuses connections
	require.NoError(t, srv.Start())
	select {
	case <-connected: // the client is back: a send now goes to the new connection
	case <-ctx.Done():
		t.Fatal("the client did not come back")
	}
	require.NoError(t, c.SendText(ctx, "after the outage"))
	_, msg, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "after the outage", string(msg))
}

// end snippet

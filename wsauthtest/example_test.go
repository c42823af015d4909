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

// testClientReauthenticates is a complete integration test; in your own
// _test.go file it is func TestClientReauthenticates(t *testing.T).
// TestExample in wsauthtest_test.go runs this one.
func testClientReauthenticates(t *testing.T) {
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
	_, err = srv.WaitAuthEvents(ctx, 1, ticketOK) // the server's verdict
	require.NoError(t, err)

	// The server ends the session with 1008: the client must fetch a new
	// ticket and authenticate again on its own.
	srv.CloseAll(wsauth.StatusPolicyViolation, "Unauthorized")
	_, err = srv.WaitAuthEvents(ctx, 2, ticketOK)
	require.NoError(t, err)

	require.NoError(t, c.SendText(ctx, "hello"))
	_, msg, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(msg))
}

// This file is the example: an integration test of a wsauth client against
// the test server, which forces a re-authentication and checks that
// messages still flow.
func Example() {}

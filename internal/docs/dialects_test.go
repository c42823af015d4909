package docs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/centrifugo"
	"github.com/wsauth/wsauth/dialect/graphqlws"
	"github.com/wsauth/wsauth/dialect/homeassistant"
	"github.com/wsauth/wsauth/dialect/slack"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/dialecttest"
)

// The code of docs/dialects.md's examples (and of README.md's dialect
// block), each against the protocol server of internal/dialecttest that
// follows the service's documentation.

func homeAssistant(ctx context.Context, url, longLivedToken string) (string, error) {
	// snippet: dialect-homeassistant
	c, err := wsauth.Dial(ctx, url, &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(longLivedToken)}, // from the user's profile
		Dialect: homeassistant.Dialect{},
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SendText(ctx, `{"id":1,"type":"ping"}`); err != nil { // a command of the application's
		return "", err
	}
	_, msg, err := c.Receive(ctx) // {"id":1,"type":"pong"}: after auth_ok, everything is the application's
	// end snippet
	return string(msg), err
}

func TestDialectHomeAssistant(t *testing.T) {
	srv := dialecttest.NewHomeAssistant(t)
	srv.Allow("ha-long-lived-token")
	msg, err := homeAssistant(clienttest.Ctx(t), srv.URL(), "ha-long-lived-token")
	require.NoError(t, err)
	require.JSONEq(t, `{"id":1,"type":"pong"}`, msg)
}

func graphQL(ctx context.Context, url string, tokens oauth2.TokenSource) (string, error) {
	// snippet: dialect-graphqlws
	c, err := wsauth.Dial(ctx, url, &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: tokens}, // in connection_init's payload
		Dialect: graphqlws.Dialect{},                      // 4401/4403: a fresh token; 4400, 4406, 4409: stop
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	err = c.SendText(ctx, `{"id":"1","type":"subscribe","payload":{"query":"subscription { ticks }"}}`)
	if err != nil {
		return "", err
	}
	_, msg, err := c.Receive(ctx) // {"id":"1","type":"next","payload":…}
	// end snippet
	return string(msg), err
}

func TestDialectGraphQLWS(t *testing.T) {
	srv := dialecttest.NewGraphQLWS(t)
	srv.Allow("gql-token")
	msg, err := graphQL(clienttest.Ctx(t), srv.URL(), wsauth.StaticToken("gql-token"))
	require.NoError(t, err)
	require.Contains(t, msg, `"type":"next"`)
	require.Equal(t, []map[string]any{{"Authorization": "Bearer gql-token"}}, srv.Inits())
}

func graphQLPayloads() []graphqlws.Dialect {
	// snippet: dialect-graphqlws-payload
	dialects := []graphqlws.Dialect{
		{}, // {"Authorization":"Bearer <token>"}, the default
		{Payload: graphqlws.TokenPayload("token")}, // {"token":"<token>"}
		{Payload: func(token string) map[string]any { // Hasura: {"headers":{"Authorization":"Bearer <token>"}}
			return map[string]any{"headers": map[string]any{"Authorization": "Bearer " + token}}
		}},
	}
	// end snippet
	return dialects
}

func TestDialectGraphQLWSPayloads(t *testing.T) {
	want := []map[string]any{
		{"Authorization": "Bearer tok"},
		{"token": "tok"},
		{"headers": map[string]any{"Authorization": "Bearer tok"}},
	}
	for i, d := range graphQLPayloads() {
		srv := dialecttest.NewGraphQLWS(t) // reads only the default payload: the others are refused, after the init
		c := clienttest.Started(t, srv.URL(), &wsauth.Options{Auth: &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("tok")}, Dialect: d})
		require.True(t, srv.Await(clienttest.WaitLong, func() bool { return len(srv.Inits()) > 0 }))
		require.NoError(t, c.Close())
		inits, _ := json.Marshal(srv.Inits()[:1])
		wantJSON, _ := json.Marshal([]map[string]any{want[i]})
		require.JSONEq(t, string(wantJSON), string(inits), "payload %d", i)
	}
}

func centrifugoRPC(ctx context.Context, url string, tokens oauth2.TokenSource) (string, error) {
	// snippet: dialect-centrifugo
	c, err := wsauth.Dial(ctx, url, &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: tokens}, // connection JWTs, refreshed in band before the ttl ends
		Dialect: &centrifugo.Dialect{ClientName: "my-bot"},
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	// Command ids from 1 to 2147483647: the dialect's own start at centrifugo.ReservedIDs.
	if err := c.SendText(ctx, `{"id":1,"rpc":{"method":"echo","data":{"text":"hi"}}}`); err != nil {
		return "", err
	}
	_, msg, err := c.Receive(ctx) // {"id":1,"rpc":{"data":{"text":"hi"}}}
	// end snippet
	return string(msg), err
}

func TestDialectCentrifugo(t *testing.T) {
	srv := dialecttest.NewCentrifugo(t)
	srv.Allow("cent-token")
	msg, err := centrifugoRPC(clienttest.Ctx(t), srv.URL(), wsauth.StaticToken("cent-token"))
	require.NoError(t, err)
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"text":"hi"}}}`, msg)
}

func slackBot(ctx context.Context, placeholder, endpoint string, appToken oauth2.TokenSource, handle func([]byte)) error {
	// snippet: dialect-slack
	c, err := wsauth.Dial(ctx, placeholder, &wsauth.Options{ // placeholder: "wss://wss-primary.slack.com/link/"
		Auth:    &slack.Auth{Endpoint: endpoint, Tokens: appToken}, // endpoint: slack.Endpoint; the app-level token, xapp-…
		Dialect: slack.Dialect{},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		_, env, err := c.Receive(ctx) // events_api, slash_commands, interactive envelopes
		if err != nil {
			return err
		}
		var e struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(env, &e) == nil && e.EnvelopeID != "" {
			// Acknowledging within 3 s is the application's job.
			if err := c.SendText(ctx, `{"envelope_id":"`+e.EnvelopeID+`"}`); err != nil {
				return err
			}
		}
		handle(env)
	}
	// end snippet
}

func TestDialectSlack(t *testing.T) {
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp-1-docs")
	ctx, cancel := context.WithCancel(clienttest.Ctx(t))
	defer cancel()
	done := make(chan error, 1)
	var got []byte
	go func() {
		done <- slackBot(ctx, srv.Placeholder(), srv.OpenURL(), wsauth.StaticToken("xapp-1-docs"), func(env []byte) {
			got = env
			cancel()
		})
	}()
	// The test server counts a connection as authenticated just before it
	// writes hello, so an envelope sent at once can overtake the hello: the
	// client then fails that attempt and comes back on a new URL, and the
	// envelope goes again on the new connection.
	for i := 1; len(srv.Acks()) == 0; i++ {
		require.True(t, srv.Await(clienttest.WaitLong, func() bool { return srv.Authenticated() >= i }))
		conns := srv.Connections()
		require.True(t, srv.Send("env-1", "hello bot"))
		require.True(t, srv.Await(clienttest.WaitLong, func() bool { return len(srv.Acks()) > 0 || srv.Connections() > conns }))
	}
	require.ErrorIs(t, <-done, context.Canceled)
	require.Contains(t, string(got), `"envelope_id":"env-1"`)
	require.Equal(t, []string{"env-1"}, srv.Acks())
}

package graphqlws

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/dialecttest"
	"github.com/wsauth/wsauth/internal/testkit"
)

const gqlSubscribe = `{"id":"1","type":"subscribe","payload":{"query":"{ hello }"}}`

func TestGraphQLWSConnectsAnswersPingsAndCarriesOperations(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	srv.PingBeforeAck = true
	srv.Allow("gql-token")
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("gql-token")},
		Dialect: Dialect{},
		OnEvent: rec.On,
	})
	require.Equal(t, Subprotocol, c.Subprotocol())
	require.Equal(t, 1, srv.Pongs(), "the ping sent before connection_ack was answered during Open")
	require.Equal(t, []map[string]any{{"Authorization": "Bearer gql-token"}}, srv.Inits())

	require.NoError(t, c.SendText(clienttest.Ctx(t), gqlSubscribe))
	require.JSONEq(t, `{"id":"1","type":"next","payload":{"data":{"echo":"{ hello }"}}}`, clienttest.ReceiveText(t, c))
	require.JSONEq(t, `{"id":"1","type":"complete"}`, clienttest.ReceiveText(t, c))

	// A ping after Open is answered by the client and never reaches the
	// application.
	require.Equal(t, 1, srv.Ping())
	require.True(t, srv.Await(clienttest.WaitLong, func() bool { return srv.Pongs() == 2 }), "pong to the server's ping")
	require.NoError(t, c.SendText(clienttest.Ctx(t), `{"id":"2","type":"subscribe","payload":{"query":"q2"}}`))
	require.JSONEq(t, `{"id":"2","type":"next","payload":{"data":{"echo":"q2"}}}`, clienttest.ReceiveText(t, c))
	require.Equal(t, 0, rec.Of(wsauth.EventReconnecting))
}

func TestGraphQLWS4401MidSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	src := &clienttest.TokenSeq{Prefix: "gql", Allow: srv.Allow}
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: src},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	srv.Revoke("gql-1")
	require.Equal(t, 1, srv.CloseAll(Unauthorized, "Unauthorized"))
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	require.Equal(t, Unauthorized, ev.Code)
	rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
	require.Equal(t, []string{"gql-1", "gql-2"}, srv.Tokens(), "a fresh token after 4401, the old one never again")
	require.NoError(t, c.SendText(clienttest.Ctx(t), gqlSubscribe))
	require.Contains(t, clienttest.ReceiveText(t, c), `"next"`)
}

func TestGraphQLWSForbiddenCanaryStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-gql-token-2b8e41"
	srv := dialecttest.NewGraphQLWS(t)
	rec := clienttest.NewRecorder()
	logs := &testkit.Buffer{}
	c := clienttest.Started(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(canary)},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Logger:    testkit.DebugLogger(logs),
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	clienttest.WaitDone(t, c)
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, Forbidden, gu.Code, "4403 Forbidden is the server's verdict")
	require.Equal(t, wsauth.ActionReauth, rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting)).Action)
	require.Equal(t, 1, clienttest.CountOf(srv.Tokens(), canary))
	clienttest.RequireNoSecret(t, canary, rec, c, logs)
}

func TestGraphQLWSTokenPayloadIsConfigurable(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	srv.TokenKey = "token"
	srv.Allow("bare-token")
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("bare-token")},
		Dialect: Dialect{Payload: TokenPayload("token")},
	})
	require.Equal(t, []map[string]any{{"token": "bare-token"}}, srv.Inits())
	require.NoError(t, c.SendText(clienttest.Ctx(t), gqlSubscribe))
	require.Contains(t, clienttest.ReceiveText(t, c), `"next"`)
}

func TestGraphQLWSCloseCodesOverTheWire(t *testing.T) {
	t.Parallel()
	t.Run("4400 stops", func(t *testing.T) {
		t.Parallel()
		srv := dialecttest.NewGraphQLWS(t)
		srv.Allow("tok")
		rec := clienttest.NewRecorder()
		c := clienttest.Connected(t, srv.URL(), &wsauth.Options{Auth: &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("tok")}, Dialect: Dialect{}, OnEvent: rec.On})
		// An invalid message from the application: the server closes 4400.
		require.NoError(t, c.SendText(clienttest.Ctx(t), `{"type":"no-such-type"}`))
		clienttest.WaitDone(t, c)
		var gu *wsauth.GaveUpError
		require.ErrorAs(t, c.Err(), &gu)
		require.Equal(t, "policy", gu.Why)
		require.Equal(t, BadRequest, gu.Code)
		require.Equal(t, 1, srv.Connections(), "no reconnect after a stop code")
	})
	t.Run("4500 retries", func(t *testing.T) {
		t.Parallel()
		srv := dialecttest.NewGraphQLWS(t)
		srv.Allow("tok")
		rec := clienttest.NewRecorder()
		clienttest.Connected(t, srv.URL(), &wsauth.Options{
			Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("tok")},
			Dialect:   Dialect{},
			OnEvent:   rec.On,
			Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
		})
		require.Equal(t, 1, srv.CloseAll(InternalServerError, "Internal server error"))
		ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
		require.Equal(t, wsauth.ActionRetry, ev.Action)
		require.Equal(t, InternalServerError, ev.Code)
		rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
		require.Equal(t, []string{"tok", "tok"}, srv.Tokens(), "a retry keeps the credential")
	})
}

func TestGraphQLWSClassifyCloseTable(t *testing.T) {
	d := Dialect{}
	for _, tc := range []struct {
		code wsauth.StatusCode
		want wsauth.Action
	}{
		{4401, wsauth.ActionReauth},
		{4403, wsauth.ActionReauth},
		{4400, wsauth.ActionStop},
		{4406, wsauth.ActionStop},
		{4409, wsauth.ActionStop},
		{4408, wsauth.ActionRetry},
		{4429, wsauth.ActionRetry},
		{4500, wsauth.ActionRetry},
		{1000, wsauth.ActionDefault},
		{1008, wsauth.ActionDefault},
		{1011, wsauth.ActionDefault},
		{4000, wsauth.ActionDefault},
		{4004, wsauth.ActionDefault},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			require.Equal(t, tc.want, d.ClassifyClose(tc.code, ""))
		})
	}
}

func TestGraphQLWSDialectUnit(t *testing.T) {
	d := Dialect{}
	require.Equal(t, []string{"graphql-transport-ws"}, d.Subprotocols())

	in := d.Inspect(wsauth.MessageText, []byte(`{"type":"ping","payload":{"t":1}}`))
	require.Equal(t, wsauth.InboundReply, in.Kind)
	require.JSONEq(t, `{"type":"pong"}`, string(in.Reply))
	require.Equal(t, wsauth.InboundIgnore, d.Inspect(wsauth.MessageText, []byte(`{"type":"pong"}`)).Kind)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageText, []byte(`{"id":"1","type":"next","payload":{"data":{"type":"ping"}}}`)).Kind)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageBinary, []byte(`{"type":"ping"}`)).Kind)

	// No token (the credential rode the handshake): connection_init goes
	// without a payload; pings during the exchange are answered.
	conn := &clienttest.ScriptConn{Proto: Subprotocol, Script: []string{`{"type":"ping"}`, `{"type":"pong"}`, `{"type":"connection_ack"}`}}
	_, err := d.Open(context.Background(), conn, wsauth.Proof{})
	require.NoError(t, err)
	require.Equal(t, []string{`{"type":"connection_init"}`, `{"type":"pong"}`}, conn.Wrote)

	conn = &clienttest.ScriptConn{Proto: Subprotocol, Script: []string{`{"type":"connection_ack"}`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"connection_init","payload":{"Authorization":"Bearer tok"}}`, conn.Wrote[0])

	custom := Dialect{Payload: func(tok string) map[string]any {
		return map[string]any{"headers": map[string]any{"Authorization": "Bearer " + tok}}
	}}
	conn = &clienttest.ScriptConn{Proto: Subprotocol, Script: []string{`{"type":"connection_ack"}`}}
	_, err = custom.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"connection_init","payload":{"headers":{"Authorization":"Bearer tok"}}}`, conn.Wrote[0])

	conn = &clienttest.ScriptConn{Proto: "", Script: []string{`{"type":"connection_ack"}`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.Error(t, err, "a server that did not select graphql-transport-ws")
	require.Empty(t, conn.Wrote, "gets no token")

	conn = &clienttest.ScriptConn{Proto: Subprotocol, Script: []string{`close:4403`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	var ce *wsauth.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, Forbidden, ce.Code)
}

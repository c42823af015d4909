package wsauth

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/dialecttest"
)

const gqlSubscribe = `{"id":"1","type":"subscribe","payload":{"query":"{ hello }"}}`

func TestGraphQLWSConnectsAnswersPingsAndCarriesOperations(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	srv.PingBeforeAck = true
	srv.Allow("gql-token")
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken("gql-token")},
		Dialect: GraphQLWS{},
		OnEvent: rec.on,
	})
	require.Equal(t, GraphQLTransportWS, c.Subprotocol())
	require.Equal(t, 1, srv.Pongs(), "the ping sent before connection_ack was answered during Open")
	require.Equal(t, []map[string]any{{"Authorization": "Bearer gql-token"}}, srv.Inits())

	require.NoError(t, c.SendText(testCtx(t), gqlSubscribe))
	require.JSONEq(t, `{"id":"1","type":"next","payload":{"data":{"echo":"{ hello }"}}}`, receiveText(t, c))
	require.JSONEq(t, `{"id":"1","type":"complete"}`, receiveText(t, c))

	// A ping after Open is answered by the client and never reaches the
	// application.
	require.Equal(t, 1, srv.Ping())
	require.True(t, srv.Await(waitLong, func() bool { return srv.Pongs() == 2 }), "pong to the server's ping")
	require.NoError(t, c.SendText(testCtx(t), `{"id":"2","type":"subscribe","payload":{"query":"q2"}}`))
	require.JSONEq(t, `{"id":"2","type":"next","payload":{"data":{"echo":"q2"}}}`, receiveText(t, c))
	require.Equal(t, 0, rec.count(EventReconnecting))
}

func TestGraphQLWS4401MidSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	src := &tokenSeq{prefix: "gql", allow: srv.Allow}
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: GraphQLWS{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	srv.Revoke("gql-1")
	require.Equal(t, 1, srv.CloseAll(GraphQLUnauthorized, "Unauthorized"))
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	require.Equal(t, GraphQLUnauthorized, ev.Code)
	rec.waitFor(t, 2, kind(EventConnected))
	require.Equal(t, []string{"gql-1", "gql-2"}, srv.Tokens(), "a fresh token after 4401, the old one never again")
	require.NoError(t, c.SendText(testCtx(t), gqlSubscribe))
	require.Contains(t, receiveText(t, c), `"next"`)
}

func TestGraphQLWSForbiddenCanaryStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-gql-token-2b8e41"
	srv := dialecttest.NewGraphQLWS(t)
	rec := newRecorder()
	logs := &syncBuffer{}
	c := started(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken(canary)},
		Dialect: GraphQLWS{},
		OnEvent: rec.on,
		Logger:  debugLogger(logs),
		Backoff: quickBackoff(),
	})
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, GraphQLForbidden, gu.Code, "4403 Forbidden is the server's verdict")
	require.Equal(t, ActionReauth, rec.waitFor(t, 1, kind(EventReconnecting)).Action)
	require.Equal(t, 1, countOf(srv.Tokens(), canary))
	requireNoSecret(t, canary, rec, c, logs)
}

func TestGraphQLWSTokenPayloadIsConfigurable(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewGraphQLWS(t)
	srv.TokenKey = "token"
	srv.Allow("bare-token")
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken("bare-token")},
		Dialect: GraphQLWS{Payload: GraphQLTokenPayload("token")},
	})
	require.Equal(t, []map[string]any{{"token": "bare-token"}}, srv.Inits())
	require.NoError(t, c.SendText(testCtx(t), gqlSubscribe))
	require.Contains(t, receiveText(t, c), `"next"`)
}

func TestGraphQLWSCloseCodesOverTheWire(t *testing.T) {
	t.Parallel()
	t.Run("4400 stops", func(t *testing.T) {
		t.Parallel()
		srv := dialecttest.NewGraphQLWS(t)
		srv.Allow("tok")
		rec := newRecorder()
		c := connected(t, srv.URL(), &Options{Auth: &FirstMessageAuth{Tokens: StaticToken("tok")}, Dialect: GraphQLWS{}, OnEvent: rec.on})
		// An invalid message from the application: the server closes 4400.
		require.NoError(t, c.SendText(testCtx(t), `{"type":"no-such-type"}`))
		waitDone(t, c)
		var gu *GaveUpError
		require.ErrorAs(t, c.Err(), &gu)
		require.Equal(t, "policy", gu.Why)
		require.Equal(t, GraphQLBadRequest, gu.Code)
		require.Equal(t, 1, srv.Connections(), "no reconnect after a stop code")
	})
	t.Run("4500 retries", func(t *testing.T) {
		t.Parallel()
		srv := dialecttest.NewGraphQLWS(t)
		srv.Allow("tok")
		rec := newRecorder()
		connected(t, srv.URL(), &Options{Auth: &FirstMessageAuth{Tokens: StaticToken("tok")}, Dialect: GraphQLWS{},
			OnEvent: rec.on, Backoff: quickBackoff()})
		require.Equal(t, 1, srv.CloseAll(GraphQLInternalServerError, "Internal server error"))
		ev := rec.waitFor(t, 1, kind(EventReconnecting))
		require.Equal(t, ActionRetry, ev.Action)
		require.Equal(t, GraphQLInternalServerError, ev.Code)
		rec.waitFor(t, 2, kind(EventConnected))
		require.Equal(t, []string{"tok", "tok"}, srv.Tokens(), "a retry keeps the credential")
	})
}

func TestGraphQLWSClassifyCloseTable(t *testing.T) {
	d := GraphQLWS{}
	for _, tc := range []struct {
		code StatusCode
		want Action
	}{
		{4401, ActionReauth},
		{4403, ActionReauth},
		{4400, ActionStop},
		{4406, ActionStop},
		{4409, ActionStop},
		{4408, ActionRetry},
		{4429, ActionRetry},
		{4500, ActionRetry},
		{1000, ActionDefault},
		{1008, ActionDefault},
		{1011, ActionDefault},
		{4000, ActionDefault},
		{4004, ActionDefault},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			require.Equal(t, tc.want, d.ClassifyClose(tc.code, ""))
		})
	}
}

func TestGraphQLWSDialectUnit(t *testing.T) {
	d := GraphQLWS{}
	require.Equal(t, []string{"graphql-transport-ws"}, d.Subprotocols())

	in := d.Inspect(MessageText, []byte(`{"type":"ping","payload":{"t":1}}`))
	require.Equal(t, InboundReply, in.Kind)
	require.JSONEq(t, `{"type":"pong"}`, string(in.Reply))
	require.Equal(t, InboundIgnore, d.Inspect(MessageText, []byte(`{"type":"pong"}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"id":"1","type":"next","payload":{"data":{"type":"ping"}}}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageBinary, []byte(`{"type":"ping"}`)).Kind)

	// No token (the credential rode the handshake): connection_init goes
	// without a payload; pings during the exchange are answered.
	conn := &scriptConn{subprotocol: GraphQLTransportWS, script: []string{`{"type":"ping"}`, `{"type":"pong"}`, `{"type":"connection_ack"}`}}
	_, err := d.Open(context.Background(), conn, "")
	require.NoError(t, err)
	require.Equal(t, []string{`{"type":"connection_init"}`, `{"type":"pong"}`}, conn.wrote)

	conn = &scriptConn{subprotocol: GraphQLTransportWS, script: []string{`{"type":"connection_ack"}`}}
	_, err = d.Open(context.Background(), conn, "tok")
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"connection_init","payload":{"Authorization":"Bearer tok"}}`, conn.wrote[0])

	custom := GraphQLWS{Payload: func(tok string) map[string]any {
		return map[string]any{"headers": map[string]any{"Authorization": "Bearer " + tok}}
	}}
	conn = &scriptConn{subprotocol: GraphQLTransportWS, script: []string{`{"type":"connection_ack"}`}}
	_, err = custom.Open(context.Background(), conn, "tok")
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"connection_init","payload":{"headers":{"Authorization":"Bearer tok"}}}`, conn.wrote[0])

	conn = &scriptConn{subprotocol: "", script: []string{`{"type":"connection_ack"}`}}
	_, err = d.Open(context.Background(), conn, "tok")
	require.Error(t, err, "a server that did not select graphql-transport-ws")
	require.Empty(t, conn.wrote, "gets no token")

	conn = &scriptConn{subprotocol: GraphQLTransportWS, script: []string{`close:4403`}}
	_, err = d.Open(context.Background(), conn, "tok")
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, GraphQLForbidden, ce.Code)
}

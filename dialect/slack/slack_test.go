package slack

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/dialecttest"
	"github.com/wsauth/wsauth/internal/testkit"
)

func TestSlackSocketModeConnectsReceivesAndAcks(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp-1-test")
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.Placeholder(), &wsauth.Options{
		Auth:    &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp-1-test")},
		Dialect: Dialect{},
		OnEvent: rec.On,
	})
	require.True(t, srv.Send("env-1", "hello bot"))
	env := clienttest.ReceiveText(t, c)
	require.Contains(t, env, `"envelope_id":"env-1"`)
	require.Contains(t, env, `"hello bot"`)
	// Acknowledging is the application's job.
	require.NoError(t, c.SendText(clienttest.Ctx(t), `{"envelope_id":"env-1"}`))
	require.True(t, srv.Await(clienttest.WaitLong, func() bool { return len(srv.Acks()) == 1 }))
	require.Equal(t, []string{"xapp-1-test"}, srv.Tokens())
	require.Equal(t, 1, srv.Opens())
	// Slack's keepalive is the WebSocket ping.
	require.Equal(t, 1, srv.PingAll(clienttest.WaitLong))
}

func TestSlackDisconnectRotatesToANewURL(t *testing.T) {
	t.Parallel()
	for i, reason := range []string{"warning", "refresh_requested"} {
		t.Run(reason, func(t *testing.T) {
			t.Parallel()
			srv := dialecttest.NewSlack(t)
			srv.Allow("xapp")
			rec := clienttest.NewRecorder()
			c := clienttest.Connected(t, srv.Placeholder(), &wsauth.Options{
				Auth:    &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp")},
				Dialect: Dialect{},
				OnEvent: rec.On,
			})
			require.Equal(t, 1, srv.Disconnect(reason))
			rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventRotated))
			require.True(t, srv.Await(clienttest.WaitLong, func() bool { return srv.Live() == 1 }), "the old connection is closed after the switch")
			require.Equal(t, 2, srv.Opens(), "a new URL for the new connection")
			require.Equal(t, 2, srv.Connections())
			require.Equal(t, 0, rec.Of(wsauth.EventReconnecting), "make-before-break: no gap")
			id := fmt.Sprintf("env-after-%d", i)
			require.True(t, srv.Send(id, "after"))
			require.Contains(t, clienttest.ReceiveText(t, c), id)
		})
	}
}

func TestSlackInvalidAuthGetsAFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	src := &clienttest.TokenSeq{Prefix: "xapp", Allow: srv.Allow, Refuse: map[int]bool{1: true}}
	rec := clienttest.NewRecorder()
	clienttest.Connected(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: src},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	var ae *wsauth.AuthError
	require.ErrorAs(t, ev.Err, &ae)
	require.Equal(t, "invalid_auth", ae.Message)
	require.Equal(t, []string{"xapp-1", "xapp-2"}, srv.Tokens())
	require.Equal(t, 1, srv.Connections())
}

func TestSlackInvalidStaticTokenStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "xapp-canary-5d1f0c9e"
	srv := dialecttest.NewSlack(t)
	rec := clienttest.NewRecorder()
	logs := &testkit.Buffer{}
	c := clienttest.Started(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken(canary)},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Logger:    testkit.DebugLogger(logs),
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	clienttest.WaitDone(t, c)
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, 1, clienttest.CountOf(srv.Tokens(), canary), "a refused token is never sent again")
	clienttest.RequireNoSecret(t, canary, rec, c, logs)
}

func TestSlackRefusedURLAsksForANewOneWithTheSameToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.RefuseDials(1)
	rec := clienttest.NewRecorder()
	clienttest.Connected(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp")},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, 401, ev.HTTPStatus)
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	require.Equal(t, []string{"xapp", "xapp"}, srv.Tokens(), "a refused URL says nothing against the bearer token")
	require.Len(t, srv.Issued(), 2, "a new single-use URL for every attempt")
	require.Equal(t, 1, srv.Connections())
}

func TestSlackURLNeverLeaksItsTicket(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.URLBase = "ws://" + closed + "/link/"
	rec := clienttest.NewRecorder()
	logs := &testkit.Buffer{}
	c := clienttest.Started(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp")},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Logger:    testkit.DebugLogger(logs),
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventReconnecting))
	require.Contains(t, ev.Err.Error(), "ticket=REDACTED", "the dial error names the URL, scrubbed")
	require.NoError(t, c.Close())
	issued := srv.Issued()
	require.GreaterOrEqual(t, len(issued), 2)
	for _, ticket := range issued {
		clienttest.RequireNoSecret(t, ticket, rec, c, logs)
	}
}

func TestSlackInsecureURLIsRefused(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.URLBase = "ws://wss-primary.slack.example/link/"
	c := clienttest.Started(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp")},
		Dialect:   Dialect{},
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	clienttest.WaitDone(t, c)
	require.ErrorIs(t, c.Err(), wsauth.ErrInsecureTransport)
	require.Equal(t, 0, srv.Connections())
	require.False(t, strings.Contains(c.Err().Error(), "ticket="), "the refusal does not quote the URL")
}

func TestSlackTransientEndpointErrorIsRetried(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.FailOpen("internal_error")
	rec := clienttest.NewRecorder()
	clienttest.Connected(t, srv.Placeholder(), &wsauth.Options{
		Auth:      &Auth{Endpoint: srv.OpenURL(), Tokens: wsauth.StaticToken("xapp")},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionRetry, ev.Action)
	require.Contains(t, ev.Err.Error(), "internal_error")
	require.Equal(t, []string{"xapp", "xapp"}, srv.Tokens())
}

func TestSlackDialectUnit(t *testing.T) {
	d := Dialect{}
	var dd wsauth.Dialect = d
	_, classifies := dd.(wsauth.CloseClassifier)
	_, refreshes := dd.(wsauth.Refresher)
	require.False(t, classifies || refreshes, "Slack has no close codes and no refresh of its own")
	in := d.Inspect(wsauth.MessageText, []byte(`{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}`))
	require.Equal(t, wsauth.InboundGoingAway, in.Kind)
	require.Equal(t, "refresh_requested", in.Message)
	require.Equal(t, wsauth.InboundIgnore, d.Inspect(wsauth.MessageText, []byte(`{"type":"hello","num_connections":1}`)).Kind)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageText, []byte(`{"envelope_id":"e","type":"events_api","payload":{"event":{"type":"disconnect","text":"hello"}}}`)).Kind)

	conn := &clienttest.ScriptConn{Script: []string{`{"type":"hello","num_connections":1}`}}
	_, err := d.Open(context.Background(), conn, wsauth.Proof{})
	require.NoError(t, err)
	require.Empty(t, conn.Wrote, "the URL is the credential: nothing is sent")

	conn = &clienttest.ScriptConn{Script: []string{`{"type":"disconnect","reason":"too_many_websockets"}`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{})
	require.ErrorContains(t, err, "too_many_websockets")
	require.Equal(t, wsauth.ActionRetry, wsauth.DefaultClassify(wsauth.Ending{Err: err, Phase: wsauth.PhaseAuth}))
}

package homeassistant

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/dialecttest"
	"github.com/wsauth/wsauth/internal/testkit"
)

func TestHomeAssistantConnectsAndCommandsFlow(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	srv.Allow("ha-long-lived-token")
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("ha-long-lived-token")},
		Dialect: Dialect{},
		OnEvent: rec.On,
	})
	// Home Assistant's own ping command and its pong belong to the
	// application.
	require.JSONEq(t, `{"id":1,"type":"pong"}`, clienttest.Ask(t, c, `{"id":1,"type":"ping"}`))
	require.Contains(t, clienttest.Ask(t, c, `{"id":2,"type":"get_states"}`), "unknown_command")
	require.Equal(t, []string{"ha-long-lived-token"}, srv.Tokens())
	require.Equal(t, 1, srv.Authenticated())
	// Home Assistant's keepalive is the WebSocket ping; the client answers.
	require.Equal(t, 1, srv.PingAll(clienttest.WaitLong))
	require.Equal(t, 0, rec.Of(wsauth.EventReconnecting))
}

func TestHomeAssistantAuthInvalidGetsAFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	src := &clienttest.TokenSeq{Prefix: "ha", Allow: srv.Allow, Refuse: map[int]bool{1: true}}
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: src},
		Dialect:   Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	var ae *wsauth.AuthError
	require.ErrorAs(t, ev.Err, &ae, "auth_invalid is a *wsauth.AuthError")
	require.Equal(t, "Invalid access token or password", ae.Message)
	require.Equal(t, wsauth.ReasonRejected, rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnecting)).Reason)
	require.Equal(t, []string{"ha-1", "ha-2"}, srv.Tokens(), "the refused token is never offered again")
	require.JSONEq(t, `{"id":7,"type":"pong"}`, clienttest.Ask(t, c, `{"id":7,"type":"ping"}`))
}

func TestHomeAssistantRefusedStaticTokenStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-ha-token-7f3c9a"
	srv := dialecttest.NewHomeAssistant(t)
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
	var ae *wsauth.AuthError
	require.ErrorAs(t, c.Err(), &ae)
	require.Equal(t, 1, clienttest.CountOf(srv.Tokens(), canary), "a refused token is sent once, never again (Home Assistant bans IPs for repeated bad logins)")
	clienttest.RequireNoSecret(t, canary, rec, c, logs)
}

func TestHomeAssistantWithoutInBandTokenIsARefusal(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	c := clienttest.Started(t, srv.URL(), &wsauth.Options{Dialect: Dialect{}, Reconnect: wsauth.ReconnectPolicy{MaxAuthFailures: 2, Backoff: clienttest.QuickBackoff()}})
	clienttest.WaitDone(t, c)
	var ae *wsauth.AuthError
	require.ErrorAs(t, c.Err(), &ae)
	require.Contains(t, ae.Message, "wsauth.FirstMessageAuth")
	require.Empty(t, srv.Tokens(), "nothing was sent")
}

func TestHomeAssistantDialectUnit(t *testing.T) {
	d := Dialect{}
	var dd wsauth.Dialect = d
	_, offers := dd.(wsauth.SubprotocolProvider)
	_, classifies := dd.(wsauth.CloseClassifier)
	_, refreshes := dd.(wsauth.Refresher)
	require.False(t, offers || classifies || refreshes, "Home Assistant has no subprotocol, close codes or refresh of its own")
	require.Equal(t, wsauth.InboundIgnore, d.Inspect(wsauth.MessageText, []byte(`{"type":"auth_ok","ha_version":"1"}`)).Kind)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageText, []byte(`{"id":3,"type":"pong"}`)).Kind)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageText, []byte(`{"id":3,"type":"event","event":{"data":"auth_ok"}}`)).Kind)

	conn := &clienttest.ScriptConn{Script: []string{`{"type":"auth_required","ha_version":"1"}`, `{"type":"auth_ok","ha_version":"1"}`}}
	_, err := d.Open(context.Background(), conn, wsauth.Proof{InBand: `to"ken`})
	require.NoError(t, err)
	require.Len(t, conn.Wrote, 1)
	require.JSONEq(t, `{"type":"auth","access_token":"to\"ken"}`, conn.Wrote[0])

	conn = &clienttest.ScriptConn{Script: []string{`{"type":"auth_ok"}`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.Error(t, err, "auth_required must come first")
	require.Empty(t, conn.Wrote, "no token goes to a server that did not ask for it")

	conn = &clienttest.ScriptConn{Script: []string{`{"type":"auth_required"}`, `close:1000`}}
	_, err = d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	var ce *wsauth.CloseError
	require.ErrorAs(t, err, &ce)
}

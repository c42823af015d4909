package wsauth

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/dialecttest"
)

func TestHomeAssistantConnectsAndCommandsFlow(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	srv.Allow("ha-long-lived-token")
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken("ha-long-lived-token")},
		Dialect: HomeAssistant{},
		OnEvent: rec.on,
	})
	// Home Assistant's own ping command and its pong belong to the
	// application.
	require.JSONEq(t, `{"id":1,"type":"pong"}`, ask(t, c, `{"id":1,"type":"ping"}`))
	require.Contains(t, ask(t, c, `{"id":2,"type":"get_states"}`), "unknown_command")
	require.Equal(t, []string{"ha-long-lived-token"}, srv.Tokens())
	require.Equal(t, 1, srv.Authenticated())
	// Home Assistant's keepalive is the WebSocket ping; the client answers.
	require.Equal(t, 1, srv.PingAll(waitLong))
	require.Equal(t, 0, rec.count(EventReconnecting))
}

func TestHomeAssistantAuthInvalidGetsAFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	src := &tokenSeq{prefix: "ha", allow: srv.Allow, refuse: map[int]bool{1: true}}
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: HomeAssistant{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	var ae *AuthError
	require.ErrorAs(t, ev.Err, &ae, "auth_invalid is an AuthError")
	require.Equal(t, "Invalid access token or password", ae.Message)
	require.Equal(t, ReasonRejected, rec.waitFor(t, 2, kind(EventConnecting)).Reason)
	require.Equal(t, []string{"ha-1", "ha-2"}, srv.Tokens(), "the refused token is never offered again")
	require.JSONEq(t, `{"id":7,"type":"pong"}`, ask(t, c, `{"id":7,"type":"ping"}`))
}

func TestHomeAssistantRefusedStaticTokenStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-ha-token-7f3c9a"
	srv := dialecttest.NewHomeAssistant(t)
	rec := newRecorder()
	logs := &syncBuffer{}
	c := started(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken(canary)},
		Dialect: HomeAssistant{},
		OnEvent: rec.on,
		Logger:  debugLogger(logs),
		Backoff: quickBackoff(),
	})
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	var ae *AuthError
	require.ErrorAs(t, c.Err(), &ae)
	require.Equal(t, 1, countOf(srv.Tokens(), canary), "a refused token is sent once, never again (Home Assistant bans IPs for repeated bad logins)")
	requireNoSecret(t, canary, rec, c, logs)
}

func TestHomeAssistantWithoutInBandTokenIsARefusal(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewHomeAssistant(t)
	c := started(t, srv.URL(), &Options{Dialect: HomeAssistant{}, MaxAuthFailures: 2, Backoff: quickBackoff()})
	waitDone(t, c)
	var ae *AuthError
	require.ErrorAs(t, c.Err(), &ae)
	require.Contains(t, ae.Message, "FirstMessageAuth")
	require.Empty(t, srv.Tokens(), "nothing was sent")
}

func TestHomeAssistantDialectUnit(t *testing.T) {
	d := HomeAssistant{}
	require.Nil(t, d.Subprotocols())
	for _, code := range []StatusCode{1000, 1008, 4401} {
		require.Equal(t, ActionDefault, d.ClassifyClose(code, ""), "Home Assistant has no close codes of its own")
	}
	require.Equal(t, InboundIgnore, d.Inspect(MessageText, []byte(`{"type":"auth_ok","ha_version":"1"}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"id":3,"type":"pong"}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"id":3,"type":"event","event":{"data":"auth_ok"}}`)).Kind)

	conn := &scriptConn{script: []string{`{"type":"auth_required","ha_version":"1"}`, `{"type":"auth_ok","ha_version":"1"}`}}
	_, err := d.Open(context.Background(), conn, `to"ken`)
	require.NoError(t, err)
	require.Len(t, conn.wrote, 1)
	require.JSONEq(t, `{"type":"auth","access_token":"to\"ken"}`, conn.wrote[0])

	conn = &scriptConn{script: []string{`{"type":"auth_ok"}`}}
	_, err = d.Open(context.Background(), conn, "tok")
	require.Error(t, err, "auth_required must come first")
	require.Empty(t, conn.wrote, "no token goes to a server that did not ask for it")

	conn = &scriptConn{script: []string{`{"type":"auth_required"}`, `close:1000`}}
	_, err = d.Open(context.Background(), conn, "tok")
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
}

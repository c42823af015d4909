package wsauth

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/dialecttest"
)

func TestSlackSocketModeConnectsReceivesAndAcks(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp-1-test")
	rec := newRecorder()
	c := connected(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp-1-test")},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
	})
	require.True(t, srv.Send("env-1", "hello bot"))
	env := receiveText(t, c)
	require.Contains(t, env, `"envelope_id":"env-1"`)
	require.Contains(t, env, `"hello bot"`)
	// Acknowledging is the application's job.
	require.NoError(t, c.SendText(testCtx(t), `{"envelope_id":"env-1"}`))
	require.True(t, srv.Await(waitLong, func() bool { return len(srv.Acks()) == 1 }))
	require.Equal(t, []string{"xapp-1-test"}, srv.Tokens())
	require.Equal(t, 1, srv.Opens())
	// Slack's keepalive is the WebSocket ping.
	require.Equal(t, 1, srv.PingAll(waitLong))
}

func TestSlackDisconnectRotatesToANewURL(t *testing.T) {
	t.Parallel()
	for i, reason := range []string{"warning", "refresh_requested"} {
		t.Run(reason, func(t *testing.T) {
			t.Parallel()
			srv := dialecttest.NewSlack(t)
			srv.Allow("xapp")
			rec := newRecorder()
			c := connected(t, srv.Placeholder(), &Options{
				Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp")},
				Dialect: SlackSocketMode{},
				OnEvent: rec.on,
			})
			require.Equal(t, 1, srv.Disconnect(reason))
			rec.waitFor(t, 1, kind(EventRotated))
			require.True(t, srv.Await(waitLong, func() bool { return srv.Live() == 1 }), "the old connection is closed after the switch")
			require.Equal(t, 2, srv.Opens(), "a new URL for the new connection")
			require.Equal(t, 2, srv.Connections())
			require.Equal(t, 0, rec.count(EventReconnecting), "make-before-break: no gap")
			id := fmt.Sprintf("env-after-%d", i)
			require.True(t, srv.Send(id, "after"))
			require.Contains(t, receiveText(t, c), id)
		})
	}
}

func TestSlackInvalidAuthGetsAFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	src := &tokenSeq{prefix: "xapp", allow: srv.Allow, refuse: map[int]bool{1: true}}
	rec := newRecorder()
	connected(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: src},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	var ae *AuthError
	require.ErrorAs(t, ev.Err, &ae)
	require.Equal(t, "invalid_auth", ae.Message)
	require.Equal(t, []string{"xapp-1", "xapp-2"}, srv.Tokens())
	require.Equal(t, 1, srv.Connections())
}

func TestSlackInvalidStaticTokenStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "xapp-canary-5d1f0c9e"
	srv := dialecttest.NewSlack(t)
	rec := newRecorder()
	logs := &syncBuffer{}
	c := started(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken(canary)},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
		Logger:  debugLogger(logs),
		Backoff: quickBackoff(),
	})
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, 1, countOf(srv.Tokens(), canary), "a refused token is never sent again")
	requireNoSecret(t, canary, rec, c, logs)
}

func TestSlackRefusedURLAsksForANewOneWithTheSameToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.RefuseDials(1)
	rec := newRecorder()
	connected(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp")},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, 401, ev.HTTPStatus)
	require.Equal(t, ActionReauth, ev.Action)
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
	rec := newRecorder()
	logs := &syncBuffer{}
	c := started(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp")},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
		Logger:  debugLogger(logs),
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 2, kind(EventReconnecting))
	require.Contains(t, ev.Err.Error(), "ticket=REDACTED", "the dial error names the URL, scrubbed")
	require.NoError(t, c.Close())
	issued := srv.Issued()
	require.GreaterOrEqual(t, len(issued), 2)
	for _, ticket := range issued {
		requireNoSecret(t, ticket, rec, c, logs)
	}
}

func TestSlackInsecureURLIsRefused(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.URLBase = "ws://wss-primary.slack.example/link/"
	c := started(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp")},
		Dialect: SlackSocketMode{},
		Backoff: quickBackoff(),
	})
	waitDone(t, c)
	require.ErrorIs(t, c.Err(), ErrInsecureTransport)
	require.Equal(t, 0, srv.Connections())
	require.False(t, strings.Contains(c.Err().Error(), "ticket="), "the refusal does not quote the URL")
}

func TestSlackTransientEndpointErrorIsRetried(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewSlack(t)
	srv.Allow("xapp")
	srv.FailOpen("internal_error")
	rec := newRecorder()
	connected(t, srv.Placeholder(), &Options{
		Auth:    &TicketURLAuth{Endpoint: srv.OpenURL(), Tokens: StaticToken("xapp")},
		Dialect: SlackSocketMode{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionRetry, ev.Action)
	require.Contains(t, ev.Err.Error(), "internal_error")
	require.Equal(t, []string{"xapp", "xapp"}, srv.Tokens())
}

func TestSlackDialectUnit(t *testing.T) {
	d := SlackSocketMode{}
	require.Equal(t, ActionDefault, d.ClassifyClose(1000, ""))
	in := d.Inspect(MessageText, []byte(`{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}`))
	require.Equal(t, InboundGoingAway, in.Kind)
	require.Equal(t, "refresh_requested", in.Message)
	require.Equal(t, InboundIgnore, d.Inspect(MessageText, []byte(`{"type":"hello","num_connections":1}`)).Kind)
	require.Equal(t, InboundData, d.Inspect(MessageText, []byte(`{"envelope_id":"e","type":"events_api","payload":{"event":{"type":"disconnect","text":"hello"}}}`)).Kind)

	conn := &scriptConn{script: []string{`{"type":"hello","num_connections":1}`}}
	_, err := d.Open(context.Background(), conn, "")
	require.NoError(t, err)
	require.Empty(t, conn.wrote, "the URL is the credential: nothing is sent")

	conn = &scriptConn{script: []string{`{"type":"disconnect","reason":"too_many_websockets"}`}}
	_, err = d.Open(context.Background(), conn, "")
	require.ErrorContains(t, err, "too_many_websockets")
	require.Equal(t, ActionRetry, DefaultClassify(Ending{Err: err, Phase: PhaseAuth}))
}

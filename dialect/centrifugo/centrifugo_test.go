package centrifugo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/dialecttest"
	"github.com/wsauth/wsauth/internal/testkit"
)

const centRPC = `{"id":1,"rpc":{"method":"echo","data":{"n":1}}}`

func TestCentrifugoConnectsAndCarriesCommands(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Allow("cf-token")
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("cf-token")},
		Dialect: &Dialect{ClientName: "wsauth-test"},
		OnEvent: rec.On,
	})
	require.Zero(t, rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventConnected)).Expiry, "no ttl, no expiry")
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, clienttest.Ask(t, c, centRPC))
	require.Equal(t, []string{"cf-token"}, srv.Tokens())

	// The server's ping, {}, is answered and never reaches the application.
	require.Equal(t, 1, srv.Ping())
	require.True(t, srv.Await(clienttest.WaitLong, func() bool { return srv.Pongs() == 1 }))
	require.JSONEq(t, `{"id":2,"rpc":{"data":"x"}}`, clienttest.Ask(t, c, `{"id":2,"rpc":{"method":"echo","data":"x"}}`))
}

func TestCentrifugoBatchedFramesAreSplit(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Batch = true
	srv.Allow("cf-token")
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("cf-token")},
		Dialect: &Dialect{},
	})
	// The publication that shared a frame with the connect reply is
	// delivered, not lost inside Open.
	require.Contains(t, clienttest.ReceiveText(t, c), `"connected"`)

	// A ping batched between two publications: both publications arrive as
	// messages of their own, in order, and the ping is answered.
	require.Equal(t, 1, srv.Ping())
	require.Contains(t, clienttest.ReceiveText(t, c), `"before-ping"`)
	require.Contains(t, clienttest.ReceiveText(t, c), `"after-ping"`)
	require.True(t, srv.Await(clienttest.WaitLong, func() bool { return srv.Pongs() == 1 }))
}

func TestCentrifugoRefreshKeepsShortSessionOnOneConnection(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = 3 * time.Second
	src := &clienttest.TokenSeq{Prefix: "cf", Allow: srv.Allow, TTL: time.Hour}
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: src},
		Dialect: &Dialect{},
		OnEvent: rec.On,
	})
	first := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventConnected))
	require.WithinDuration(t, time.Now().Add(3*time.Second), first.Expiry, 3*time.Second, "the ttl of the connect reply is the session lifetime")

	const refreshes = 4
	for i := 1; i <= refreshes; i++ {
		ev := rec.WaitFor(t, i, clienttest.Kind(wsauth.EventRefreshed))
		require.False(t, ev.Expiry.IsZero())
	}
	require.Equal(t, 1, srv.Connections(), "every refresh on the one connection")
	require.Equal(t, 0, rec.Of(wsauth.EventReconnecting), "zero reconnects")
	require.Equal(t, 0, rec.Of(wsauth.EventRefreshFailed))
	require.GreaterOrEqual(t, srv.Refreshes(), refreshes)
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, clienttest.Ask(t, c, centRPC))
}

func TestCentrifugoExpiredSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = time.Second
	src := &clienttest.TokenSeq{Prefix: "cf", Allow: srv.Allow, TTL: time.Hour}
	rec := clienttest.NewRecorder()
	clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: src},
		Dialect: &Dialect{},
		OnEvent: rec.On,
		// let the server close the session at expiry
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
		Renewal:   wsauth.RenewalPolicy{Strategy: wsauth.RenewNone},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	require.EqualValues(t, 3005, ev.Code, "connection expired")
	require.Equal(t, wsauth.ReasonSessionEnded, rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnecting)).Reason, "an ended session, not a rejection")
	rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens()[:2], "a fresh token after 3005")
}

func TestCentrifugoRefusedRefreshReconnectsBeforeExpiry(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = 3 * time.Second
	srv.FailRefreshes(109)
	src := &clienttest.TokenSeq{Prefix: "cf", Allow: srv.Allow, TTL: time.Hour}
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:    &wsauth.FirstMessageAuth{Tokens: src},
		Dialect: &Dialect{},
		OnEvent: rec.On,
	})
	failed := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventRefreshFailed))
	var ae *wsauth.AuthError
	require.ErrorAs(t, failed.Err, &ae)
	require.Contains(t, ae.Message, "109")
	require.Equal(t, wsauth.ReasonSessionEnded, rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnecting)).Reason)
	rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
	for _, e := range rec.All() {
		require.NotEqual(t, wsauth.StatusCode(3005), e.Code, "the fallback comes before the server's close at expiry")
	}
	require.Equal(t, 2, srv.Connections())
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, clienttest.Ask(t, c, centRPC))
}

func TestCentrifugoConnectErrorReplyIsARefusal(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Expire("cf-1")
	src := &clienttest.TokenSeq{Prefix: "cf", Allow: srv.Allow}
	rec := clienttest.NewRecorder()
	clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: src},
		Dialect:   &Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	var ce *Error
	require.ErrorAs(t, ev.Err, &ce)
	require.EqualValues(t, 109, ce.Code)
	var ae *wsauth.AuthError
	require.ErrorAs(t, ev.Err, &ae)
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens())
}

func TestCentrifugoInvalidTokenMidSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	src := &clienttest.TokenSeq{Prefix: "cf", Allow: srv.Allow}
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: src},
		Dialect:   &Dialect{},
		OnEvent:   rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	srv.Revoke("cf-1")
	require.Equal(t, 1, srv.CloseAll(3500, "invalid token"))
	ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
	require.Equal(t, wsauth.ActionReauth, ev.Action)
	require.EqualValues(t, 3500, ev.Code)
	rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens(), "a fresh token after 3500, the old one never again")
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, clienttest.Ask(t, c, centRPC))
}

func TestCentrifugoInvalidTokenCanaryStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-centrifugo-jwt-94d2e7"
	srv := dialecttest.NewCentrifugo(t)
	rec := clienttest.NewRecorder()
	logs := &testkit.Buffer{}
	c := clienttest.Started(t, srv.URL(), &wsauth.Options{
		Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken(canary)},
		Dialect:   &Dialect{},
		OnEvent:   rec.On,
		Logger:    testkit.DebugLogger(logs),
		Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
	})
	clienttest.WaitDone(t, c)
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.EqualValues(t, 3500, gu.Code, "disconnect 3500 invalid token")
	require.Equal(t, 1, clienttest.CountOf(srv.Tokens(), canary))
	clienttest.RequireNoSecret(t, canary, rec, c, logs)
}

func TestCentrifugoCloseCodesOverTheWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code wsauth.StatusCode
		want wsauth.Action
	}{
		{3001, wsauth.ActionRetry},
		{4000, wsauth.ActionRetry},
		{3503, wsauth.ActionStop},
		{4500, wsauth.ActionStop},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			srv := dialecttest.NewCentrifugo(t)
			srv.Allow("tok")
			rec := clienttest.NewRecorder()
			c := clienttest.Connected(t, srv.URL(), &wsauth.Options{
				Auth:      &wsauth.FirstMessageAuth{Tokens: wsauth.StaticToken("tok")},
				Dialect:   &Dialect{},
				OnEvent:   rec.On,
				Reconnect: wsauth.ReconnectPolicy{Backoff: clienttest.QuickBackoff()},
			})
			require.Equal(t, 1, srv.CloseAll(tc.code, "test"))
			if tc.want == wsauth.ActionStop {
				clienttest.WaitDone(t, c)
				var gu *wsauth.GaveUpError
				require.ErrorAs(t, c.Err(), &gu)
				require.Equal(t, "policy", gu.Why)
				require.Equal(t, tc.code, gu.Code)
				require.Equal(t, 1, srv.Connections())
				return
			}
			ev := rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventReconnecting))
			require.Equal(t, tc.want, ev.Action)
			require.Equal(t, tc.code, ev.Code)
			rec.WaitFor(t, 2, clienttest.Kind(wsauth.EventConnected))
		})
	}
}

func TestCentrifugoClassifyCloseTable(t *testing.T) {
	d := &Dialect{}
	for _, tc := range []struct {
		code wsauth.StatusCode
		want wsauth.Action
	}{
		{3000, wsauth.ActionRetry},  // connection closed
		{3001, wsauth.ActionRetry},  // shutdown
		{3004, wsauth.ActionRetry},  // internal server error
		{3005, wsauth.ActionReauth}, // connection expired
		{3006, wsauth.ActionRetry},  // subscription expired
		{3008, wsauth.ActionRetry},  // slow
		{3011, wsauth.ActionRetry},  // force reconnect
		{3012, wsauth.ActionRetry},  // no pong
		{3013, wsauth.ActionRetry},  // too many requests
		{3499, wsauth.ActionRetry},
		{3500, wsauth.ActionReauth}, // invalid token
		{3501, wsauth.ActionStop},   // bad request
		{3502, wsauth.ActionStop},   // stale
		{3503, wsauth.ActionStop},   // force disconnect
		{3504, wsauth.ActionStop},   // connection limit
		{3507, wsauth.ActionStop},   // permission denied
		{3509, wsauth.ActionStop},   // too many errors
		{3999, wsauth.ActionStop},
		{4000, wsauth.ActionRetry},
		{4499, wsauth.ActionRetry},
		{4500, wsauth.ActionStop},
		{4999, wsauth.ActionStop},
		{1000, wsauth.ActionDefault},
		{1008, wsauth.ActionDefault},
		{1011, wsauth.ActionDefault},
		{2999, wsauth.ActionDefault},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			require.Equal(t, tc.want, d.ClassifyClose(tc.code, ""))
		})
	}
}

func TestCentrifugoDialectUnit(t *testing.T) {
	d := &Dialect{ClientName: "bot", ClientVersion: "1.2"}

	// The client's own commands use the reserved id range.
	conn := &clienttest.ScriptConn{Script: []string{
		`{}`,
		`{"id":2147483649,"connect":{"client":"c1","version":"6","expires":true,"ttl":30}}` + "\n" + `{"push":{"channel":"a","pub":{"data":1}}}`,
	}}
	opened, err := d.Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, opened.ExpiresIn)
	require.Equal(t, []string{`{"push":{"channel":"a","pub":{"data":1}}}`}, clienttest.Strings(opened.Pending))
	require.Len(t, conn.Wrote, 2)
	require.JSONEq(t, `{"id":2147483649,"connect":{"token":"tok","name":"bot","version":"1.2"}}`, conn.Wrote[0])
	require.Equal(t, `{}`, conn.Wrote[1], "a ping during Open is answered")

	msg, err := d.RefreshMessage(`to"ken`)
	require.NoError(t, err)
	var cmd struct {
		ID      uint32 `json:"id"`
		Refresh struct {
			Token string `json:"token"`
		} `json:"refresh"`
	}
	require.NoError(t, json.Unmarshal(msg, &cmd))
	require.GreaterOrEqual(t, cmd.ID, ReservedIDs)
	require.Equal(t, `to"ken`, cmd.Refresh.Token)

	// Without a token the connect command still goes, empty.
	conn = &clienttest.ScriptConn{Script: []string{`{"id":2147483651,"connect":{}}`}}
	d2 := &Dialect{}
	d2.ids.Store(2)
	_, err = d2.Open(context.Background(), conn, wsauth.Proof{})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":2147483651,"connect":{}}`, conn.Wrote[0])

	// A temporary error is retried, not a refusal.
	conn = &clienttest.ScriptConn{Script: []string{`{"id":2147483649,"error":{"code":100,"message":"internal server error","temporary":true}}`}}
	_, err = (&Dialect{}).Open(context.Background(), conn, wsauth.Proof{InBand: "tok"})
	require.Error(t, err)
	var ae *wsauth.AuthError
	require.False(t, errors.As(err, &ae))
	require.Equal(t, wsauth.ActionRetry, wsauth.DefaultClassify(wsauth.Ending{Err: err, Phase: wsauth.PhaseAuth}))

	for _, tc := range []struct {
		in   string
		want wsauth.InboundKind
	}{
		{`{}`, wsauth.InboundReply},
		{` {} `, wsauth.InboundReply},
		{`{"id":2147483650,"refresh":{"client":"c","expires":true,"ttl":5}}`, wsauth.InboundRefreshOK},
		{`{"id":2147483650,"error":{"code":109,"message":"token expired"}}`, wsauth.InboundRefreshFailed},
		{`{"id":2147483650,"connect":{}}`, wsauth.InboundIgnore},
		{`{"id":7,"error":{"code":103,"message":"permission denied"}}`, wsauth.InboundData},
		{`{"id":7,"refresh":{}}`, wsauth.InboundData},
		{`{"id":7,"rpc":{"data":{}}}`, wsauth.InboundData},
		{`{"push":{"channel":"a","pub":{"data":{"refresh":"error"}}}}`, wsauth.InboundData},
		{`not json "id" "error"`, wsauth.InboundData},
	} {
		require.Equal(t, tc.want, d.Inspect(wsauth.MessageText, []byte(tc.in)).Kind, tc.in)
	}
	require.Equal(t, 5*time.Second, d.Inspect(wsauth.MessageText, []byte(`{"id":2147483650,"refresh":{"expires":true,"ttl":5}}`)).ExpiresIn)
	require.Equal(t, wsauth.InboundData, d.Inspect(wsauth.MessageBinary, []byte(`{}`)).Kind)

	require.Equal(t, [][]byte{[]byte("a")}, d.SplitFrame(wsauth.MessageText, []byte("a")))
	require.Equal(t, []string{"a", "{}", "b"}, clienttest.Strings(d.SplitFrame(wsauth.MessageText, []byte("a\n{}\n\nb\n"))))
}

package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/dialecttest"
)

const centRPC = `{"id":1,"rpc":{"method":"echo","data":{"n":1}}}`

func TestCentrifugoConnectsAndCarriesCommands(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Allow("cf-token")
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken("cf-token")},
		Dialect: &Centrifugo{ClientName: "wsauth-test"},
		OnEvent: rec.on,
	})
	require.Zero(t, rec.waitFor(t, 1, kind(EventConnected)).Expiry, "no ttl, no expiry")
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, ask(t, c, centRPC))
	require.Equal(t, []string{"cf-token"}, srv.Tokens())

	// The server's ping, {}, is answered and never reaches the application.
	require.Equal(t, 1, srv.Ping())
	require.True(t, srv.Await(waitLong, func() bool { return srv.Pongs() == 1 }))
	require.JSONEq(t, `{"id":2,"rpc":{"data":"x"}}`, ask(t, c, `{"id":2,"rpc":{"method":"echo","data":"x"}}`))
}

func TestCentrifugoBatchedFramesAreSplit(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Batch = true
	srv.Allow("cf-token")
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken("cf-token")},
		Dialect: &Centrifugo{},
	})
	// The publication that shared a frame with the connect reply is
	// delivered, not lost inside Open.
	require.Contains(t, receiveText(t, c), `"connected"`)

	// A ping batched between two publications: both publications arrive as
	// messages of their own, in order, and the ping is answered.
	require.Equal(t, 1, srv.Ping())
	require.Contains(t, receiveText(t, c), `"before-ping"`)
	require.Contains(t, receiveText(t, c), `"after-ping"`)
	require.True(t, srv.Await(waitLong, func() bool { return srv.Pongs() == 1 }))
}

func TestCentrifugoRefreshKeepsShortSessionOnOneConnection(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = 3 * time.Second
	src := &tokenSeq{prefix: "cf", allow: srv.Allow, ttl: time.Hour}
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
	})
	first := rec.waitFor(t, 1, kind(EventConnected))
	require.WithinDuration(t, time.Now().Add(3*time.Second), first.Expiry, 3*time.Second, "the ttl of the connect reply is the session lifetime")

	const refreshes = 4
	for i := 1; i <= refreshes; i++ {
		ev := rec.waitFor(t, i, kind(EventRefreshed))
		require.False(t, ev.Expiry.IsZero())
	}
	require.Equal(t, 1, srv.Connections(), "every refresh on the one connection")
	require.Equal(t, 0, rec.count(EventReconnecting), "zero reconnects")
	require.Equal(t, 0, rec.count(EventRefreshFailed))
	require.GreaterOrEqual(t, srv.Refreshes(), refreshes)
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, ask(t, c, centRPC))
}

func TestCentrifugoExpiredSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = time.Second
	src := &tokenSeq{prefix: "cf", allow: srv.Allow, ttl: time.Hour}
	rec := newRecorder()
	connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
		Renewal: RenewNone, // let the server close the session at expiry
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	require.EqualValues(t, 3005, ev.Code, "connection expired")
	require.Equal(t, ReasonSessionEnded, rec.waitFor(t, 2, kind(EventConnecting)).Reason, "an ended session, not a rejection")
	rec.waitFor(t, 2, kind(EventConnected))
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens()[:2], "a fresh token after 3005")
}

func TestCentrifugoRefusedRefreshReconnectsBeforeExpiry(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.TTL = 3 * time.Second
	srv.FailRefreshes(109)
	src := &tokenSeq{prefix: "cf", allow: srv.Allow, ttl: time.Hour}
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
	})
	failed := rec.waitFor(t, 1, kind(EventRefreshFailed))
	var ae *AuthError
	require.ErrorAs(t, failed.Err, &ae)
	require.Contains(t, ae.Message, "109")
	require.Equal(t, ReasonSessionEnded, rec.waitFor(t, 2, kind(EventConnecting)).Reason)
	rec.waitFor(t, 2, kind(EventConnected))
	for _, e := range rec.all() {
		require.NotEqual(t, StatusCode(3005), e.Code, "the fallback comes before the server's close at expiry")
	}
	require.Equal(t, 2, srv.Connections())
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, ask(t, c, centRPC))
}

func TestCentrifugoConnectErrorReplyIsARefusal(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	srv.Expire("cf-1")
	src := &tokenSeq{prefix: "cf", allow: srv.Allow}
	rec := newRecorder()
	connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	var ce *CentrifugoError
	require.ErrorAs(t, ev.Err, &ce)
	require.EqualValues(t, 109, ce.Code)
	var ae *AuthError
	require.ErrorAs(t, ev.Err, &ae)
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens())
}

func TestCentrifugoInvalidTokenMidSessionReauthenticatesWithFreshToken(t *testing.T) {
	t.Parallel()
	srv := dialecttest.NewCentrifugo(t)
	src := &tokenSeq{prefix: "cf", allow: srv.Allow}
	rec := newRecorder()
	c := connected(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: src},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
		Backoff: quickBackoff(),
	})
	srv.Revoke("cf-1")
	require.Equal(t, 1, srv.CloseAll(3500, "invalid token"))
	ev := rec.waitFor(t, 1, kind(EventReconnecting))
	require.Equal(t, ActionReauth, ev.Action)
	require.EqualValues(t, 3500, ev.Code)
	rec.waitFor(t, 2, kind(EventConnected))
	require.Equal(t, []string{"cf-1", "cf-2"}, srv.Tokens(), "a fresh token after 3500, the old one never again")
	require.JSONEq(t, `{"id":1,"rpc":{"data":{"n":1}}}`, ask(t, c, centRPC))
}

func TestCentrifugoInvalidTokenCanaryStopsWithoutLeaking(t *testing.T) {
	t.Parallel()
	const canary = "canary-centrifugo-jwt-94d2e7"
	srv := dialecttest.NewCentrifugo(t)
	rec := newRecorder()
	logs := &syncBuffer{}
	c := started(t, srv.URL(), &Options{
		Auth:    &FirstMessageAuth{Tokens: StaticToken(canary)},
		Dialect: &Centrifugo{},
		OnEvent: rec.on,
		Logger:  debugLogger(logs),
		Backoff: quickBackoff(),
	})
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.EqualValues(t, 3500, gu.Code, "disconnect 3500 invalid token")
	require.Equal(t, 1, countOf(srv.Tokens(), canary))
	requireNoSecret(t, canary, rec, c, logs)
}

func TestCentrifugoCloseCodesOverTheWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code StatusCode
		want Action
	}{
		{3001, ActionRetry},
		{4000, ActionRetry},
		{3503, ActionStop},
		{4500, ActionStop},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			srv := dialecttest.NewCentrifugo(t)
			srv.Allow("tok")
			rec := newRecorder()
			c := connected(t, srv.URL(), &Options{Auth: &FirstMessageAuth{Tokens: StaticToken("tok")}, Dialect: &Centrifugo{},
				OnEvent: rec.on, Backoff: quickBackoff()})
			require.Equal(t, 1, srv.CloseAll(tc.code, "test"))
			if tc.want == ActionStop {
				waitDone(t, c)
				var gu *GaveUpError
				require.ErrorAs(t, c.Err(), &gu)
				require.Equal(t, "policy", gu.Why)
				require.Equal(t, tc.code, gu.Code)
				require.Equal(t, 1, srv.Connections())
				return
			}
			ev := rec.waitFor(t, 1, kind(EventReconnecting))
			require.Equal(t, tc.want, ev.Action)
			require.Equal(t, tc.code, ev.Code)
			rec.waitFor(t, 2, kind(EventConnected))
		})
	}
}

func TestCentrifugoClassifyCloseTable(t *testing.T) {
	d := &Centrifugo{}
	for _, tc := range []struct {
		code StatusCode
		want Action
	}{
		{3000, ActionRetry},  // connection closed
		{3001, ActionRetry},  // shutdown
		{3004, ActionRetry},  // internal server error
		{3005, ActionReauth}, // connection expired
		{3006, ActionRetry},  // subscription expired
		{3008, ActionRetry},  // slow
		{3011, ActionRetry},  // force reconnect
		{3012, ActionRetry},  // no pong
		{3013, ActionRetry},  // too many requests
		{3499, ActionRetry},
		{3500, ActionReauth}, // invalid token
		{3501, ActionStop},   // bad request
		{3502, ActionStop},   // stale
		{3503, ActionStop},   // force disconnect
		{3504, ActionStop},   // connection limit
		{3507, ActionStop},   // permission denied
		{3509, ActionStop},   // too many errors
		{3999, ActionStop},
		{4000, ActionRetry},
		{4499, ActionRetry},
		{4500, ActionStop},
		{4999, ActionStop},
		{1000, ActionDefault},
		{1008, ActionDefault},
		{1011, ActionDefault},
		{2999, ActionDefault},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			require.Equal(t, tc.want, d.ClassifyClose(tc.code, ""))
		})
	}
}

func TestCentrifugoDialectUnit(t *testing.T) {
	d := &Centrifugo{ClientName: "bot", ClientVersion: "1.2"}

	// The client's own commands use the reserved id range.
	conn := &scriptConn{script: []string{
		`{}`,
		`{"id":2147483649,"connect":{"client":"c1","version":"6","expires":true,"ttl":30}}` + "\n" + `{"push":{"channel":"a","pub":{"data":1}}}`,
	}}
	opened, err := d.Open(context.Background(), conn, "tok")
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, opened.ExpiresIn)
	require.Equal(t, []string{`{"push":{"channel":"a","pub":{"data":1}}}`}, toStrings(opened.Pending))
	require.Len(t, conn.wrote, 2)
	require.JSONEq(t, `{"id":2147483649,"connect":{"token":"tok","name":"bot","version":"1.2"}}`, conn.wrote[0])
	require.Equal(t, `{}`, conn.wrote[1], "a ping during Open is answered")

	msg, err := d.RefreshMessage(`to"ken`)
	require.NoError(t, err)
	var cmd struct {
		ID      uint32 `json:"id"`
		Refresh struct {
			Token string `json:"token"`
		} `json:"refresh"`
	}
	require.NoError(t, json.Unmarshal(msg, &cmd))
	require.GreaterOrEqual(t, cmd.ID, CentrifugoReservedIDs)
	require.Equal(t, `to"ken`, cmd.Refresh.Token)

	// Without a token the connect command still goes, empty.
	conn = &scriptConn{script: []string{`{"id":2147483651,"connect":{}}`}}
	d2 := &Centrifugo{}
	d2.ids.Store(2)
	_, err = d2.Open(context.Background(), conn, "")
	require.NoError(t, err)
	require.JSONEq(t, `{"id":2147483651,"connect":{}}`, conn.wrote[0])

	// A temporary error is retried, not a refusal.
	conn = &scriptConn{script: []string{`{"id":2147483649,"error":{"code":100,"message":"internal server error","temporary":true}}`}}
	_, err = (&Centrifugo{}).Open(context.Background(), conn, "tok")
	require.Error(t, err)
	var ae *AuthError
	require.False(t, errors.As(err, &ae))
	require.Equal(t, ActionRetry, DefaultClassify(Ending{Err: err, Phase: PhaseAuth}))

	for _, tc := range []struct {
		in   string
		want InboundKind
	}{
		{`{}`, InboundReply},
		{` {} `, InboundReply},
		{`{"id":2147483650,"refresh":{"client":"c","expires":true,"ttl":5}}`, InboundRefreshOK},
		{`{"id":2147483650,"error":{"code":109,"message":"token expired"}}`, InboundRefreshFailed},
		{`{"id":2147483650,"connect":{}}`, InboundIgnore},
		{`{"id":7,"error":{"code":103,"message":"permission denied"}}`, InboundData},
		{`{"id":7,"refresh":{}}`, InboundData},
		{`{"id":7,"rpc":{"data":{}}}`, InboundData},
		{`{"push":{"channel":"a","pub":{"data":{"refresh":"error"}}}}`, InboundData},
		{`not json "id" "error"`, InboundData},
	} {
		require.Equal(t, tc.want, d.Inspect(MessageText, []byte(tc.in)).Kind, tc.in)
	}
	require.Equal(t, 5*time.Second, d.Inspect(MessageText, []byte(`{"id":2147483650,"refresh":{"expires":true,"ttl":5}}`)).ExpiresIn)
	require.Equal(t, InboundData, d.Inspect(MessageBinary, []byte(`{}`)).Kind)

	require.Equal(t, [][]byte{[]byte("a")}, d.SplitFrame(MessageText, []byte("a")))
	require.Equal(t, []string{"a", "{}", "b"}, toStrings(d.SplitFrame(MessageText, []byte("a\n{}\n\nb\n"))))
}

func toStrings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

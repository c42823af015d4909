package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// In-process tests of the pieces: flag parsing, events, token sources,
// output.

func env(kv ...string) stdio {
	m := map[string]string{}
	for _, e := range kv {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return stdio{in: strings.NewReader(""), out: io.Discard, err: io.Discard, getenv: func(k string) string { return m[k] }}
}

func TestParseConnect(t *testing.T) {
	const u = "wss://api.example.com:8443/ws?room=1"
	t.Run("defaults", func(t *testing.T) {
		c, err := parseConnect([]string{u}, env())
		require.NoError(t, err)
		require.Equal(t, "none", c.auth)
		require.Nil(t, c.source)
		require.Equal(t, wsauth.DefaultDialect, c.dialect)
		require.Equal(t, defaultMaxAuthFailures, c.maxAuthFailures)
		require.Equal(t, defaultBackoffInitial, c.backoffInitial)
		require.Equal(t, defaultBackoffMax, c.backoffMax)
		require.Equal(t, defaultPing, c.ping)
		require.Equal(t, []wsauth.StatusCode{1008}, c.reauthCodes)
		require.Equal(t, wsauth.RenewRefresh, c.renewal)
		require.Equal(t, eventsText, c.events)
		require.Equal(t, "text", c.output)
	})
	t.Run("flags after the URL", func(t *testing.T) {
		c, err := parseConnect([]string{u, "--auth", "ticket", "--token", "t0k3n"}, env())
		require.NoError(t, err)
		require.Equal(t, "ticket", c.auth)
		require.Equal(t, "--token", c.source.name)
		// The ticket endpoint defaults to the reference server's path on the
		// URL's host, over https for wss.
		require.Equal(t, "https://api.example.com:8443/api/ws-ticket", c.ticketURL)
	})
	t.Run("everything", func(t *testing.T) {
		c, err := parseConnect([]string{
			"--auth", "query", "--param", "access_token", "--token-file", "/run/token",
			"--origin", "https://app.example.com", "--header", "X-Trace: abc", "--header", "Authorization: Bearer s3cr3t-h3ad3r",
			"--subprotocol", "chat.v1", "--subprotocol", "chat.v2", "--reauth-codes", "1008, 4401,4403",
			"--max-auth-failures", "2", "--backoff-initial", "100ms", "--backoff-max", "2s", "--ping", "0",
			"--refresh-lead", "5s", "--renewal", "rotate", "--events", "json", "--output", "json", "--wait", "1s", u,
		}, env())
		require.NoError(t, err)
		require.Equal(t, "query", c.auth)
		require.Equal(t, "access_token", c.param)
		require.True(t, c.source.everyAttempt)
		require.Equal(t, "https://app.example.com", c.header.Get("Origin"))
		require.Equal(t, "abc", c.header.Get("X-Trace"))
		require.Equal(t, []string{"chat.v1", "chat.v2"}, c.subprotocols)
		require.Equal(t, []wsauth.StatusCode{1008, 4401, 4403}, c.reauthCodes)
		require.Equal(t, 2, c.maxAuthFailures)
		require.Equal(t, 100*time.Millisecond, c.backoffInitial)
		require.Equal(t, 2*time.Second, c.backoffMax)
		require.Zero(t, c.ping)
		require.Equal(t, 5*time.Second, c.refreshLead)
		require.Equal(t, wsauth.RenewRotate, c.renewal)
		require.Equal(t, time.Second, c.wait)
		// A credential in a header is scrubbed from the output.
		require.Equal(t, "Authorization: REDACTED", c.scrub.String("Authorization: Bearer s3cr3t-h3ad3r"))
		require.Equal(t, "token REDACTED", c.scrub.String("token s3cr3t-h3ad3r"))

		o := clientOptions(c, newEventSink(io.Discard, eventsNone, c.scrub))
		require.Negative(t, o.Liveness.PingInterval, "--ping 0 turns pings off")
		require.IsType(t, &freshEachAttempt{}, o.Auth, "a token file is read before every attempt")
		require.NotNil(t, o.Renewal.Tokens, "the refresher shares the cache")
	})
	t.Run("token from the environment", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "header", u}, env(envToken+"=from-env"))
		require.NoError(t, err)
		require.Equal(t, envToken, c.source.name)
		tok, err := c.source.fetch(context.Background())
		require.NoError(t, err)
		require.Equal(t, "from-env", tok.AccessToken)
	})
	t.Run("a flag beats the environment", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "header", "--token-file", "/x", u}, env(envToken+"=from-env"))
		require.NoError(t, err)
		require.Equal(t, "--token-file", c.source.name)
	})
	t.Run("cookie logs in with the token", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "cookie", "--token", "t0k3n", "--origin", "https://app.example.com", u}, env())
		require.NoError(t, err)
		require.Nil(t, c.source)
		require.JSONEq(t, `{"token":"t0k3n"}`, string(c.loginBody))
		require.Equal(t, "https://api.example.com:8443/api/login", c.loginURL)
		o := clientOptions(c, newEventSink(io.Discard, eventsNone, c.scrub))
		ca, ok := o.Auth.(*wsauth.CookieAuth)
		require.True(t, ok)
		require.Equal(t, "https://app.example.com", ca.Origin)
	})
	t.Run("cookie login body from the environment is scrubbed", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "cookie", u}, env(envLoginJSON+`={"username":"demo","password":"hunter22"}`))
		require.NoError(t, err)
		require.Equal(t, "pw REDACTED", c.scrub.String("pw hunter22"))
	})
	t.Run("cookie: a login body beats WSAUTH_TOKEN, and conflicts with --token", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "cookie", "--login-json", `{"username":"demo","password":"pw-pw-pw"}`, u},
			env(envToken+"=from-env"))
		require.NoError(t, err)
		require.Nil(t, c.source)
		require.JSONEq(t, `{"username":"demo","password":"pw-pw-pw"}`, string(c.loginBody))

		_, err = parseConnect([]string{"--auth", "cookie", "--login-json", `{}`, "--token", "t0k3n", u}, env())
		var ue *usageError
		require.ErrorAs(t, err, &ue)

		c, err = parseConnect([]string{"--auth", "cookie", u}, env(envToken+"=from-env"))
		require.NoError(t, err)
		require.JSONEq(t, `{"token":"from-env"}`, string(c.loginBody))
		require.Equal(t, "REDACTED", c.scrub.String("from-env"))
	})
	t.Run("oauth2 secret from the environment", func(t *testing.T) {
		c, err := parseConnect([]string{"--auth", "first-message", "--oauth2-token-url", "https://idp.example.com/token",
			"--client-id", "bot", "--scope", "read write", "--scope", "admin", u}, env(envClientSecret+"=cl13nt-s3cr3t"))
		require.NoError(t, err)
		require.Equal(t, "--oauth2-token-url", c.source.name)
		require.False(t, c.source.everyAttempt, "oauth2 tokens are cached until near expiry")
		require.Equal(t, "REDACTED", c.scrub.String("cl13nt-s3cr3t"))
		c.oauthHC.CloseIdleConnections()
	})
	t.Run("every dialect by name", func(t *testing.T) {
		for name, e := range dialects {
			c, err := parseConnect([]string{"--dialect", name, u}, env())
			require.NoError(t, err, name)
			require.IsType(t, e.make(), c.dialect, name)
		}
	})
	t.Run("errors are usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{},
			{"--auth", "ticket", u},
			{"--dialect", "nope", u},
			{"--ping", "-1s", u},
			{"--auth", "cookie", "--token-file", "/x", u},
			{"--param", "x", u},
			{"--login-url", "http://x/login", u},
			{"--bearer-prefix", "", "--auth", "subprotocol", "--token", "t0k3n", u},
			{"--subprotocol", "a b", u},
			{"--token-command", "true", "--token-command-timeout", "0s", "--auth", "header", u},
		} {
			_, err := parseConnect(args, env())
			var ue *usageError
			require.True(t, errors.As(err, &ue), "%v: %v", args, err)
		}
	})
	t.Run("an unreadable --cacert is not a usage error", func(t *testing.T) {
		_, err := parseConnect([]string{"--cacert", filepath.Join(t.TempDir(), "missing.pem"), u}, env())
		require.Error(t, err)
		var ue *usageError
		require.False(t, errors.As(err, &ue))
	})
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("a", "", "")
	b := fs.Bool("b", false, "")
	pos, err := parseInterspersed(fs, []string{"one", "-a", "x", "two", "--b", "--", "-three"})
	require.NoError(t, err)
	require.Equal(t, []string{"one", "two", "-three"}, pos)
	require.Equal(t, "x", *a)
	require.True(t, *b)
}

func TestEventRecords(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		ev   wsauth.Event
		want string
		text string
	}{
		{wsauth.Event{Kind: wsauth.EventConnecting, Time: at, Attempt: 1, Reason: wsauth.ReasonInitial},
			`{"time":"2026-01-02T03:04:05Z","event":"connecting","attempt":1,"why":"initial"}`,
			"2026-01-02T03:04:05.000Z connecting attempt=1 why=initial"},
		{wsauth.Event{Kind: wsauth.EventConnected, Time: at, Attempt: 1, Expiry: at.Add(90 * time.Second), Subprotocol: "chat.v1"},
			`{"time":"2026-01-02T03:04:05Z","event":"connected","attempt":1,"expiry":"2026-01-02T03:05:35Z","expires_in_ms":90000,"subprotocol":"chat.v1"}`,
			"2026-01-02T03:04:05.000Z connected attempt=1 expires_in=1m30s subprotocol=chat.v1"},
		{wsauth.Event{Kind: wsauth.EventReconnecting, Time: at, Attempt: 2, Action: wsauth.ActionReauth, Code: 1008,
			CloseReason: "Session expired", Delay: 0, Err: errors.New("closed")},
			`{"time":"2026-01-02T03:04:05Z","event":"reconnecting","attempt":2,"action":"reauth","delay_ms":0,"code":1008,"reason":"Session expired","error":"closed"}`,
			`2026-01-02T03:04:05.000Z reconnecting attempt=2 action=reauth delay=0s code=1008 reason="Session expired" error=closed`},
		{wsauth.Event{Kind: wsauth.EventReconnecting, Time: at, Attempt: 3, Action: wsauth.ActionRetry, HTTPStatus: 503, Delay: 1500 * time.Millisecond},
			`{"time":"2026-01-02T03:04:05Z","event":"reconnecting","attempt":3,"action":"retry","delay_ms":1500,"status":503}`,
			"2026-01-02T03:04:05.000Z reconnecting attempt=3 action=retry delay=1.5s status=503"},
		// Events without an attempt of their own carry the latest one.
		{wsauth.Event{Kind: wsauth.EventRefreshed, Time: at, Expiry: at.Add(time.Minute)},
			`{"time":"2026-01-02T03:04:05Z","event":"refreshed","attempt":3,"expiry":"2026-01-02T03:05:05Z","expires_in_ms":60000}`,
			"2026-01-02T03:04:05.000Z refreshed attempt=3 expires_in=1m0s"},
		// The count of unconfirmed sends, never the copies kept of them.
		{wsauth.Event{Kind: wsauth.EventUnconfirmed, Time: at, Unconfirmed: 2, Frames: []wsauth.Frame{{Type: wsauth.MessageText, Data: []byte("p4yl0ad")}}},
			`{"time":"2026-01-02T03:04:05Z","event":"unconfirmed","attempt":3,"unconfirmed":2}`,
			"2026-01-02T03:04:05.000Z unconfirmed attempt=3 unconfirmed=2"},
		{wsauth.Event{Kind: wsauth.EventStopped, Time: at, Err: errors.New(`gave up: "Bearer sup3r-s3cret" refused`)},
			`{"time":"2026-01-02T03:04:05Z","event":"stopped","attempt":3,"error":"gave up: \"Bearer REDACTED\" refused"}`,
			`2026-01-02T03:04:05.000Z stopped attempt=3 error="gave up: \"Bearer REDACTED\" refused"`},
	}
	var js, txt bytes.Buffer
	scrub := &scrubber{}
	scrub.Add("sup3r-s3cret")
	jsonSink, textSink := newEventSink(&js, eventsJSON, scrub), newEventSink(&txt, eventsText, scrub)
	for _, tc := range cases {
		js.Reset()
		txt.Reset()
		jsonSink.clientEvent(tc.ev)
		textSink.clientEvent(tc.ev)
		require.JSONEq(t, tc.want, js.String())
		require.Equal(t, 1, strings.Count(js.String(), "\n"), "one line per event")
		require.Equal(t, tc.text+"\n", txt.String())
	}

	var none bytes.Buffer
	quiet := newEventSink(&none, eventsNone, scrub)
	quiet.clientEvent(cases[0].ev)
	quiet.clientEvent(cases[6].ev)
	require.Empty(t, none.String(), "--events none prints no event, and the stop cause once, elsewhere")
	quiet.note("send_failed", "", errors.New("lost sup3r-s3cret"))
	require.Equal(t, "wsauth connect: send_failed: lost REDACTED\n", none.String())
}

func TestScrubberForms(t *testing.T) {
	s := &scrubber{}
	s.Add("a+b/c=d", "abc") // "abc" is too short to scrub
	require.Equal(t, "x REDACTED REDACTED REDACTED abc",
		s.String("x a+b/c=d a%2Bb%2Fc%3Dd YStiL2M9ZA abc"))
}

func TestSources(t *testing.T) {
	ctx := context.Background()
	iss, err := server.NewHMACIssuer([]byte(testSecret))
	require.NoError(t, err)
	jwt, err := iss.IssueWithExpiry("alice", time.Unix(2000000000, 0))
	require.NoError(t, err)

	t.Run("static", func(t *testing.T) {
		scrub := &scrubber{}
		src := staticSource("--token", jwt, scrub)
		tok, err := wsauth.NewTokenCache(wsauth.TokenFunc(src.fetch), 0).TokenContext(ctx)
		require.NoError(t, err)
		require.Equal(t, jwt, tok.AccessToken)
		require.Equal(t, time.Unix(2000000000, 0), tok.Expiry, "the client's cache reads a JWT's exp")
		require.Equal(t, "REDACTED", scrub.String(jwt))
	})
	t.Run("file is read on every call", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tok")
		src := fileSource(path, &scrubber{})
		_, err := src.fetch(ctx)
		require.Error(t, err)
		require.NoError(t, os.WriteFile(path, []byte("  first-token\n"), 0o600))
		tok, err := src.fetch(ctx)
		require.NoError(t, err)
		require.Equal(t, "first-token", tok.AccessToken)
		require.True(t, tok.Expiry.IsZero())
		require.NoError(t, os.WriteFile(path, []byte("second-token"), 0o600))
		tok, err = src.fetch(ctx)
		require.NoError(t, err)
		require.Equal(t, "second-token", tok.AccessToken)
		for _, bad := range []string{"", " \n", "two\nlines", strings.Repeat("x", maxTokenSize+1)} {
			require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
			_, err = src.fetch(ctx)
			require.Error(t, err)
			require.NotContains(t, err.Error(), "two", "errors never quote the file")
		}
	})
	t.Run("command", func(t *testing.T) {
		var stderr bytes.Buffer
		tok, err := commandSource("echo '  cmd-token  '; echo note >&2", time.Minute, &stderr, &scrubber{}).fetch(ctx)
		require.NoError(t, err)
		require.Equal(t, "cmd-token", tok.AccessToken)
		require.Equal(t, "note\n", stderr.String())

		_, err = commandSource("echo leaked-token; exit 3", time.Minute, io.Discard, &scrubber{}).fetch(ctx)
		require.ErrorContains(t, err, "exit status 3")
		require.NotContains(t, err.Error(), "leaked-token")

		start := time.Now()
		_, err = commandSource("exec sleep 60", 100*time.Millisecond, io.Discard, &scrubber{}).fetch(ctx)
		require.ErrorContains(t, err, "no token within 100ms")
		require.Less(t, time.Since(start), 50*time.Second, "the command was killed, not waited for")

		_, err = commandSource("true", time.Minute, io.Discard, &scrubber{}).fetch(ctx)
		require.ErrorContains(t, err, "empty")
	})
	t.Run("oauth2 refusals are HTTP errors the client classifies", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
		}))
		defer ts.Close()
		hc := ts.Client()
		defer hc.CloseIdleConnections()
		cfg := &clientcredentials.Config{ClientID: "bot", ClientSecret: "wr0ng-s3cret", TokenURL: ts.URL}
		src := oauth2Source(cfg, hc, &scrubber{})
		_, err := wsauth.NewTokenCache(wsauth.TokenFunc(src.fetch), 0).TokenContext(ctx)
		var he *wsauth.HTTPError
		require.True(t, errors.As(err, &he), "%v", err)
		require.Equal(t, "token", he.Op)
		require.Equal(t, http.StatusUnauthorized, he.StatusCode)
		require.Equal(t, wsauth.ActionReauth, wsauth.DefaultClassify(wsauth.Ending{Err: err, HTTPStatus: he.StatusCode}))
		require.NotContains(t, err.Error(), "wr0ng-s3cret")
	})
}

func TestPrinter(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b}
	require.NoError(t, p.print(wsauth.MessageText, []byte(`{"a":1}`)))
	require.NoError(t, p.print(wsauth.MessageBinary, []byte{0, 1, 2, 0xff}))
	require.Equal(t, "{\"a\":1}\nbase64:AAEC/w==\n", b.String())

	b.Reset()
	p.json = true
	require.NoError(t, p.print(wsauth.MessageText, []byte("two\nlines")))
	require.NoError(t, p.print(wsauth.MessageBinary, []byte{0, 1, 2, 0xff}))
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, got, 2, "one line per message, newlines and all")
	var m messageJSON
	require.NoError(t, json.Unmarshal([]byte(got[0]), &m))
	require.Equal(t, messageJSON{Type: "text", Data: "two\nlines"}, m)
	require.NoError(t, json.Unmarshal([]byte(got[1]), &m))
	require.Equal(t, messageJSON{Type: "binary", Data: "AAEC/w=="}, m)
}

func TestTrimEOL(t *testing.T) {
	for in, want := range map[string]string{"a\n": "a", "a\r\n": "a", "a": "a", "\n": "", "a\r": "a\r", "": ""} {
		require.Equal(t, want, trimEOL(in), "%q", in)
	}
}

func TestExitCode(t *testing.T) {
	require.Equal(t, exitOK, exitCode(nil))
	require.Equal(t, exitOK, exitCode(wsauth.ErrClosed))
	require.Equal(t, exitAuth, exitCode(&wsauth.GaveUpError{Why: "authentication", Err: errors.New("x")}))
	require.Equal(t, exitFailure, exitCode(&wsauth.GaveUpError{Why: "protocol", Err: errors.New("x")}))
	require.Equal(t, exitFailure, exitCode(errors.New("boom")))
}

func TestMintToken(t *testing.T) {
	tok, err := mintToken(&tokenFlags{secret: testSecret, sub: "bob", ttl: time.Minute}, nil, env().getenv)
	require.NoError(t, err)
	iss, err := server.NewHMACIssuer([]byte(testSecret))
	require.NoError(t, err)
	id, err := iss.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "bob", id.Subject)
	require.WithinDuration(t, time.Now().Add(time.Minute), id.Expiry, 5*time.Second)
}

func TestRunInProcess(t *testing.T) {
	var out, errOut bytes.Buffer
	s := stdio{in: strings.NewReader(""), out: &out, err: &errOut, getenv: func(string) string { return "" }}
	require.Equal(t, exitOK, run(context.Background(), []string{"token", "--secret", testSecret, "--sub", "x"}, s))
	require.Len(t, strings.Split(strings.TrimSpace(out.String()), "."), 3)
	out.Reset()
	require.Equal(t, exitUsage, run(context.Background(), []string{"connect", "--auth", "nope", "ws://127.0.0.1/ws"}, s))
	require.Contains(t, errOut.String(), "wsauth connect: --auth")
	require.Empty(t, out.String())
}

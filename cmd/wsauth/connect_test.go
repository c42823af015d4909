package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests run the wsauth binary against `wsauth serve`, both as
// subprocesses, the way a user's script would.

func TestConnectEveryAuthMode(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--origin", "https://app.example.com")
	cases := []struct {
		name    string
		subject string
		method  string // what the server says the connection authenticated with
		args    []string
		env     []string
		flag    bool // the token goes in --token
		useEnv  bool // the token goes in WSAUTH_TOKEN
		subprot string
	}{
		{name: "ticket", subject: "u-ticket", flag: true, method: "ticket", args: []string{"--auth", "ticket"}},
		{name: "query", subject: "u-query", flag: true, method: "query", args: []string{"--auth", "query"}},
		{name: "first-message", subject: "u-first", method: "first-message", args: []string{"--auth", "first-message"}, useEnv: true},
		{name: "header", subject: "u-header", flag: true, method: "header", args: []string{"--auth", "header"}},
		{name: "subprotocol", subject: "u-subprotocol", method: "subprotocol", flag: true,
			args: []string{"--auth", "subprotocol", "--subprotocol", "chat.v1"}, subprot: "chat.v1"},
		{name: "cookie-password", subject: "demo", method: "cookie",
			args: []string{"--auth", "cookie", "--origin", "https://app.example.com"},
			env:  []string{envLoginJSON + `={"username":"demo","password":"demo-password"}`}},
		{name: "cookie-token", subject: "u-cookie", method: "cookie", flag: true, args: []string{"--auth", "cookie"}},
		{name: "oauth2", subject: "demo-client", method: "first-message",
			args: []string{"--auth", "first-message", "--oauth2-token-url", srv.base + "/oauth/token", "--client-id", "demo-client"},
			env:  []string{envClientSecret + "=demo-client-secret"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok := mint(t, tc.subject)
			args := append([]string{"connect", "--events", "json"}, tc.args...)
			env := tc.env
			if tc.useEnv {
				env = append(env, envToken+"="+tok)
			}
			if tc.flag {
				args = append(args, "--token", tok)
			}
			p := start(t, env, append(args, srv.ws)...)

			i := waitEvent(t, p, 0, isEvent("connected"))
			var connected event
			require.NoError(t, json.Unmarshal([]byte(p.stderr.snapshot()[i]), &connected))
			require.Equal(t, tc.subprot, connected.Subprotocol)

			p.send("hello " + tc.name)
			p.stdout.waitLine(t, 0, "hello "+tc.name)
			p.closeStdin()
			p.requireExit(0)

			// The server saw who it should, authenticated how it should,
			// and the client's clean close.
			require.Equal(t, 1000, srv.waitEnded(t, tc.subject))
			acc := srv.accepted(t, tc.subject)
			require.NotEmpty(t, acc)
			require.Equal(t, tc.method, acc[0].str("method"))
			require.NotContains(t, p.stderr.text(), tok)
			require.NotContains(t, p.stdout.text(), tok)
		})
	}
}

func TestConnectAuthNoneAgainstAuthenticatingServerExits3(t *testing.T) {
	t.Parallel()
	srv := startServe(t)
	p := start(t, nil, "connect", "--auth", "none", "--max-auth-failures", "1", "--events", "json", srv.ws)
	// Without credentials the server takes the first message for the auth
	// message, or times out waiting for it: either way, 1008.
	p.send("hi")
	p.requireExit(exitAuth)
	i := waitEvent(t, p, 0, isEvent("stopped"))
	var stopped event
	require.NoError(t, json.Unmarshal([]byte(p.stderr.snapshot()[i]), &stopped))
	require.Contains(t, stopped.Error, "gave up (authentication)")
	require.Contains(t, stopped.Error, "1008")
	require.Empty(t, strings.TrimSpace(p.stdout.text()), "nothing may be echoed to an unauthenticated client")
}

func TestConnectLinesAfterForced1008AreDelivered(t *testing.T) {
	t.Parallel()
	srv := startServe(t)
	tok := mint(t, "u-1008")
	p := start(t, nil, "connect", "--auth", "ticket", "--token", tok, "--events", "json", "--backoff-initial", "50ms", srv.ws)
	waitEvent(t, p, 0, isEvent("connected"))
	p.send("before")
	p.stdout.waitLine(t, 0, "before")

	// Keep the client out for a while after the 1008, so that the next
	// line is written while it has no connection at all: the next two
	// handshakes get 503 (Retry-After: 1).
	srv.control(t, "refuse", map[string]any{"status": 503, "count": 2})
	mark := len(p.stderr.snapshot())
	srv.waitStarted(t, "u-1008")
	require.Equal(t, 1, srv.control(t, "close-all", map[string]any{"code": 1008, "reason": "test says reauth"}))
	r := waitEvent(t, p, mark, func(e event) bool {
		return e.Event == "reconnecting" && e.Code == 1008 && e.Reason == "test says reauth" && e.Action == "reauth" && e.DelayMS != nil
	})
	p.send("after")
	refused := waitEvent(t, p, r, func(e event) bool { return e.Event == "reconnecting" && e.Status == 503 })
	waitEvent(t, p, refused, isEvent("connected"))
	p.stdout.waitLine(t, 0, "after")

	p.closeStdin()
	p.requireExit(0)
	srv.waitLog(t, "the second connection's clean close", func(r logRecord) bool {
		return r.str("msg") == "connection ended" && r.str("subject") == "u-1008" && r.num("close_code") == 1000
	})
	require.Len(t, srv.accepted(t, "u-1008"), 2, "one connection before the 1008, one after")
	require.Equal(t, "before\nafter\n", p.stdout.text(), "each line echoed once, in order")

	// Every line of --events json is a JSON object with time, event and
	// attempt, and the story is told in order.
	var names []string
	for _, line := range p.stderr.snapshot() {
		var e event
		require.NoError(t, json.Unmarshal([]byte(line), &e), "not JSON: %q", line)
		require.False(t, e.Time.IsZero(), line)
		require.NotEmpty(t, e.Event, line)
		require.NotNil(t, e.Attempt, line)
		names = append(names, e.Event)
	}
	requireSubsequence(t, names, "connecting", "authenticating", "connected", "reconnecting",
		"connecting", "reconnecting", "connecting", "authenticating", "connected", "closing", "stopped")
	require.NotContains(t, p.stderr.text(), tok)
}

func TestConnectRevokedTokenExits3(t *testing.T) {
	t.Parallel()
	srv := startServe(t)
	tok := mint(t, "u-revoked")
	p := start(t, nil, "connect", "--auth", "ticket", "--token", tok, "--events", "json", "--backoff-initial", "20ms", srv.ws)
	waitEvent(t, p, 0, isEvent("connected"))
	srv.waitStarted(t, "u-revoked")
	require.Equal(t, 1, srv.control(t, "revoke", map[string]string{"subject": "u-revoked"}))
	waitEvent(t, p, 0, func(e event) bool { return e.Event == "reconnecting" && e.Code == 1008 && e.Reason == "Revoked" })
	p.requireExit(exitAuth)
	i := waitEvent(t, p, 0, isEvent("stopped"))
	require.Contains(t, p.stderr.snapshot()[i], "gave up (authentication)")
}

func TestConnectTokenFileIsReadEveryAttempt(t *testing.T) {
	t.Parallel()
	t.Run("a new token in the file is used after a 1008", func(t *testing.T) {
		t.Parallel()
		srv := startServe(t)
		file := filepath.Join(t.TempDir(), "token")
		writeFileAtomic(t, file, mint(t, "u-file-old")+"\n")
		p := start(t, nil, "connect", "--auth", "header", "--token-file", file, "--events", "json", "--backoff-initial", "50ms", srv.ws)
		waitEvent(t, p, 0, isEvent("connected"))
		p.send("one")
		p.stdout.waitLine(t, 0, "one")

		writeFileAtomic(t, file, mint(t, "u-file-new")+"\n")
		mark := len(p.stderr.snapshot())
		srv.waitStarted(t, "u-file-old")
		require.Equal(t, 1, srv.control(t, "close-all", map[string]any{"code": 1008, "reason": "rotate"}))
		// A line racing the server's close frame could be handed to the
		// dying connection; once the client has seen the 1008, lines wait
		// for the new one.
		waitEvent(t, p, mark, func(e event) bool { return e.Event == "reconnecting" && e.Code == 1008 })
		p.send("two")
		p.stdout.waitLine(t, 0, "two")
		acc := srv.accepted(t, "u-file-new")
		require.Len(t, acc, 1)
		require.Equal(t, "header", acc[0].str("method"))

		p.closeStdin()
		p.requireExit(0)
		require.Equal(t, 1000, srv.waitEnded(t, "u-file-new"))
	})
	t.Run("a rejected token in the file is never offered again", func(t *testing.T) {
		t.Parallel()
		srv := startServe(t)
		file := filepath.Join(t.TempDir(), "token")
		writeFileAtomic(t, file, mint(t, "u-file-stale"))
		p := start(t, nil, "connect", "--auth", "header", "--token-file", file, "--events", "json",
			"--backoff-initial", "20ms", "--max-auth-failures", "3", srv.ws)
		waitEvent(t, p, 0, isEvent("connected"))
		srv.waitStarted(t, "u-file-stale")
		// A 1008 on the working session is no refusal: the token in the
		// file is offered again, once, and the server now refuses it.
		require.Equal(t, 1, srv.control(t, "revoke", map[string]string{"subject": "u-file-stale"}))
		waitEvent(t, p, 0, func(e event) bool { return e.Event == "reconnecting" && e.Status == 401 })
		require.Equal(t, 0, srv.control(t, "unrevoke", map[string]string{"subject": "u-file-stale"}))
		p.requireExit(exitAuth)
		// The server accepts the token again after the unrevoke: one more
		// accepted handshake would mean it was offered after its refusal.
		require.Len(t, srv.accepted(t, "u-file-stale"), 1)
	})
}

func TestConnectTokenCommand(t *testing.T) {
	t.Parallel()
	t.Run("runs on every attempt", func(t *testing.T) {
		t.Parallel()
		srv := startServe(t)
		count := filepath.Join(t.TempDir(), "runs")
		command := fmt.Sprintf("echo run >> %s; exec %s token --secret %s --sub u-cmd --ttl 1h",
			shellQuote(count), shellQuote(binary), shellQuote(testSecret))
		p := start(t, nil, "connect", "--auth", "query", "--token-command", command, "--events", "json", "--backoff-initial", "50ms", srv.ws)
		waitEvent(t, p, 0, isEvent("connected"))
		p.send("one")
		p.stdout.waitLine(t, 0, "one")
		mark := len(p.stderr.snapshot())
		srv.waitStarted(t, "u-cmd")
		require.Equal(t, 1, srv.control(t, "close-all", map[string]any{"code": 1008, "reason": "again"}))
		waitEvent(t, p, mark, func(e event) bool { return e.Event == "reconnecting" && e.Code == 1008 })
		p.send("two")
		p.stdout.waitLine(t, 0, "two")
		p.closeStdin()
		p.requireExit(0)

		runs, err := os.ReadFile(count)
		require.NoError(t, err)
		require.GreaterOrEqual(t, strings.Count(string(runs), "run\n"), 2)
		require.Len(t, srv.accepted(t, "u-cmd"), 2)
	})
	t.Run("failures and timeouts are reported and retried", func(t *testing.T) {
		t.Parallel()
		srv := startServe(t)
		p := start(t, nil, "connect", "--auth", "header", "--token-command", "exec sleep 60",
			"--token-command-timeout", "200ms", "--backoff-initial", "50ms", "--backoff-max", "100ms", "--events", "json", srv.ws)
		waitEvent(t, p, 0, func(e event) bool {
			return e.Event == "reconnecting" && e.Action == "retry" && strings.Contains(e.Error, "no token within 200ms")
		})
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		p.requireExit(0)
		waitEvent(t, p, 0, func(e event) bool { return e.Event == "closing" && e.Cause == "signal" })

		q := start(t, nil, "connect", "--auth", "header", "--token-command", "echo oops >&2; exit 7",
			"--backoff-initial", "50ms", "--events", "json", srv.ws)
		waitEvent(t, q, 0, func(e event) bool { return e.Event == "reconnecting" && strings.Contains(e.Error, "exit status 7") })
		q.stderr.waitLine(t, 0, "oops") // the command's own stderr passes through
		require.NoError(t, q.cmd.Process.Signal(syscall.SIGTERM))
		q.requireExit(0)
	})
}

func TestConnectNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	// Rate limits are not under test here, and 27 clients refused at once
	// would only be slowed down by them.
	srv := startServe(t, "--no-rate-limits")
	const canary = "canary-SECRET-7f3a9c1e"
	forms := []string{canary, url.QueryEscape(canary), base64.RawURLEncoding.EncodeToString([]byte(canary))}
	fast := []string{"--max-auth-failures", "2", "--backoff-initial", "10ms", "--backoff-max", "50ms"}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFileAtomic(t, tokenFile, canary)
	cases := []struct {
		name string
		args []string
		env  []string
	}{
		{name: "ticket", args: []string{"--auth", "ticket", "--token", canary}},
		{name: "query", args: []string{"--auth", "query", "--token", canary}},
		{name: "first-message", args: []string{"--auth", "first-message"}, env: []string{envToken + "=" + canary}},
		{name: "header", args: []string{"--auth", "header", "--token-file", tokenFile}},
		{name: "subprotocol", args: []string{"--auth", "subprotocol", "--subprotocol", "chat.v1", "--token", canary}},
		{name: "cookie", args: []string{"--auth", "cookie", "--login-json", `{"username":"demo","password":"` + canary + `"}`}},
		{name: "cookie-token", args: []string{"--auth", "cookie", "--token", canary}},
		{name: "oauth2", args: []string{"--auth", "header", "--oauth2-token-url", srv.base + "/oauth/token", "--client-id", "demo-client"},
			env: []string{envClientSecret + "=" + canary}},
		{name: "header-flag", args: []string{"--auth", "none", "--header", "Authorization: Bearer " + canary}},
	}
	for _, tc := range cases {
		for _, format := range []string{eventsJSON, eventsText, eventsNone} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				args := append(append([]string{"connect", "--events", format}, fast...), tc.args...)
				p := start(t, tc.env, append(args, srv.ws)...)
				// A line to send makes the refusal quick for --auth none,
				// and must wait unsent for the others.
				p.send("hello")
				p.requireExit(exitAuth)
				for _, f := range forms {
					require.NotContains(t, p.stderr.text(), f)
					require.NotContains(t, p.stdout.text(), f)
				}
				require.NotEmpty(t, strings.TrimSpace(p.stderr.text()), "the failure must be explained")
			})
		}
	}
	t.Cleanup(func() {
		for _, f := range forms {
			if strings.Contains(srv.stderr.text(), f) {
				t.Errorf("serve logged a secret")
			}
		}
	})
}

func TestTokenIsAcceptedByServe(t *testing.T) {
	t.Parallel()
	srv := startServe(t)
	tok := mint(t, "u-minted")
	require.Len(t, strings.Split(tok, "."), 3, "a JWT in compact form")
	require.NotEqual(t, tok, mint(t, "u-minted"), "every run mints a new token")

	// The secret may come from the environment as well.
	code, out, errOut := runBin(t, []string{envSecret + "=" + testSecret}, "token", "--sub", "u-minted-env")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(out, "\n"), "just the token, on one line")
	envTok := strings.TrimSpace(out)

	for _, tk := range []string{tok, envTok} {
		p := start(t, nil, "connect", "--auth", "header", "--token", tk, "--events", "none", srv.ws)
		p.send("minted")
		p.stdout.waitLine(t, 0, "minted")
		p.closeStdin()
		p.requireExit(0)
	}
	require.Len(t, srv.accepted(t, "u-minted"), 1)
	require.Len(t, srv.accepted(t, "u-minted-env"), 1)
}

func TestServeTLSWithCACert(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSignedCert(t)
	srv := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	require.True(t, strings.HasPrefix(srv.ws, "wss://"), srv.ws)
	tok := mint(t, "u-tls")
	p := start(t, nil, "connect", "--auth", "ticket", "--token", tok, "--cacert", certFile, "--events", "json", "--output", "json", srv.ws)
	p.send("over TLS")
	p.stdout.waitLine(t, 0, `{"type":"text","data":"over TLS"}`)
	p.closeStdin()
	p.requireExit(0)
	require.Equal(t, 1000, srv.waitEnded(t, "u-tls"))
}

func TestServeShutsDownGracefully(t *testing.T) {
	t.Parallel()
	srv := startServe(t)
	tok := mint(t, "u-shutdown")
	p := start(t, nil, "connect", "--auth", "header", "--token", tok, "--events", "json", "--backoff-initial", "50ms", srv.ws)
	waitEvent(t, p, 0, isEvent("connected"))
	srv.waitStarted(t, "u-shutdown")

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	srv.requireExit(0)
	// WebSockets are closed by the server (1001), not left to die with the
	// process.
	waitEvent(t, p, 0, func(e event) bool {
		return e.Event == "reconnecting" && e.Code == 1001 && e.Reason == "Server shutting down"
	})
	srv.waitLog(t, "stopped", func(r logRecord) bool { return r.str("msg") == "stopped" })

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.requireExit(0)
}

func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes several seconds")
	}
	t.Parallel()
	code, out, errOut := runBin(t, nil, "demo")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	require.Contains(t, out, "steps behaved")
	require.NotContains(t, out, "\x1b[", "no colour when stdout is not a terminal")
}

// requireSubsequence checks that want appears in got in order, not
// necessarily adjacent.
func requireSubsequence(t testing.TB, got []string, want ...string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	require.Equal(t, len(want), i, "want %v in order within %v", want, got)
}

// writeFileAtomic replaces a file the way a sidecar rotating a token
// should: write aside, rename over.
func writeFileAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

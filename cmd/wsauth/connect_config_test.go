package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/centrifugo"
)

// Unit tests of connect's flag groups, one function each, with the exact
// messages of their usage errors.

// groupFlags are connect's flags with args parsed and the others at their
// defaults.
func groupFlags(t *testing.T, args ...string) *connectFlags {
	t.Helper()
	fs, f := connectCommand().flags()
	fs.SetOutput(io.Discard)
	require.NoError(t, fs.Parse(args))
	return f.(*connectFlags)
}

// groupConfig is the configuration the groups after the URL start from.
func groupConfig(t *testing.T, rawURL, auth string) *connectConfig {
	t.Helper()
	c := &connectConfig{scrub: &scrubber{}, header: http.Header{}}
	require.NoError(t, c.setURL([]string{rawURL}))
	c.auth = auth
	return c
}

// requireUsage checks that err is a usage error saying want.
func requireUsage(t *testing.T, err error, want string) {
	t.Helper()
	var ue *usageError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, want, ue.Error())
}

func TestConnectURLGroup(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing the WebSocket URL"},
		{[]string{"wss://h/ws", "x"}, `one URL expected, got 2 arguments: ["wss://h/ws" "x"]`},
		// A token written into the URL never shows, not even here.
		{[]string{"wss://h/ws?access_token=s3cr3t-in-url", "wss://h/ws?api_key=an0ther-k3y&room=1"},
			`one URL expected, got 2 arguments: ["wss://h/ws?access_token=REDACTED" "wss://h/ws?api_key=REDACTED&room=1"]`},
		{[]string{"wss://h/ws\x7f"}, "the URL does not parse"},
		{[]string{"ftp://h/ws?token=s3cr3t-in-url"}, "URL must start with ws://, wss://, http:// or https://, got ftp://h/ws?token=REDACTED"},
		{[]string{"wss:///ws?ticket=s3cr3t-in-url"}, "URL wss:///ws?ticket=REDACTED has no host"},
	} {
		c := &connectConfig{scrub: &scrubber{}}
		requireUsage(t, c.setURL(tc.args), tc.want)
	}

	c := &connectConfig{scrub: &scrubber{}}
	require.NoError(t, c.setURL([]string{"wss://api.example.com/ws?token=s3cr3t-in-url&room=1"}))
	require.Equal(t, "api.example.com", c.url.Host)
	require.Equal(t, "dial REDACTED failed", c.scrub.String("dial s3cr3t-in-url failed"))
}

func TestConnectAuthModeGroup(t *testing.T) {
	const u = "wss://user:pw@api.example.com:8443/ws?room=1#top"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth", "magic"}, `--auth "magic": want one of ticket, query, first-message, cookie, header, subprotocol, none`},
		{[]string{"--auth", "query", "--ticket-url", "https://h/t"}, "--ticket-url goes with --auth ticket"},
		{[]string{"--auth", "header", "--param", "t"}, "--param goes with --auth ticket or --auth query"},
		{[]string{"--auth", "ticket", "--ticket-url", "ftp://h/t"}, `--ticket-url "ftp://h/t" is not an http(s) URL`},
		{[]string{"--auth", "ticket", "--ticket-url", "/api/ws-ticket?token=s3cr3t-t0k3n"}, `--ticket-url "/api/ws-ticket?token=REDACTED" is not an http(s) URL`},
		{[]string{"--bearer-prefix", ""}, "--bearer-prefix must not be empty"},
	} {
		c := groupConfig(t, u, "")
		requireUsage(t, c.setAuthMode(groupFlags(t, tc.args...)), tc.want)
	}

	c := groupConfig(t, u, "")
	require.NoError(t, c.setAuthMode(groupFlags(t, "--auth", "ticket", "--param", "tk")))
	require.Equal(t, "ticket", c.auth)
	require.Equal(t, "tk", c.param)
	require.Equal(t, "https://api.example.com:8443/api/ws-ticket", c.ticketURL, "the URL's origin, without query, fragment or user")
	require.Equal(t, wsauth.KubernetesBearerPrefix, c.bearerPrefix)

	c = groupConfig(t, "ws://127.0.0.1:8080/ws", "")
	require.NoError(t, c.setAuthMode(groupFlags(t, "--auth", "ticket", "--ticket-url", "http://127.0.0.1:9/t")))
	require.Equal(t, "http://127.0.0.1:9/t", c.ticketURL)
	c = groupConfig(t, "ws://127.0.0.1:8080/ws", "")
	require.NoError(t, c.setAuthMode(groupFlags(t, "--auth", "query", "--bearer-prefix", wsauth.PhoenixBearerPrefix)))
	require.Empty(t, c.ticketURL)
	require.Equal(t, wsauth.PhoenixBearerPrefix, c.bearerPrefix)
}

func TestConnectTransportGroup(t *testing.T) {
	c := groupConfig(t, "wss://h/ws", "none")
	require.NoError(t, c.setTransport(groupFlags(t)))
	require.Nil(t, c.tlsConfig, "the system roots")
	require.False(t, c.insecure)

	dir := t.TempDir()
	err := c.setTransport(groupFlags(t, "--cacert", filepath.Join(dir, "missing.pem")))
	require.ErrorContains(t, err, "--cacert: ")
	require.NotErrorAs(t, err, new(*usageError), "an unreadable file is no usage error")

	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	require.EqualError(t, c.setTransport(groupFlags(t, "--cacert", notPEM)), "--cacert "+notPEM+": no PEM certificate in it")

	certFile, _ := selfSignedCert(t)
	require.NoError(t, c.setTransport(groupFlags(t, "--cacert", certFile, "--insecure")))
	require.NotNil(t, c.tlsConfig.RootCAs)
	require.True(t, c.insecure)
}

func TestConnectTokenSourceGroup(t *testing.T) {
	const u = "wss://h/ws"
	for _, tc := range []struct {
		auth string
		args []string
		env  []string
		want string
	}{
		{"header", []string{"--token", "t0k3n", "--token-file", "/f", "--token-command", "true"}, nil, "--token and --token-file and --token-command: give one token source"},
		{"header", []string{"--token", "t0k3n", "--client-id", "c"}, nil, "--client-id, --client-secret and --scope go with --oauth2-token-url"},
		{"header", []string{"--scope", "read"}, nil, "--client-id, --client-secret and --scope go with --oauth2-token-url"},
		{"header", []string{"--token-command", "true", "--token-command-timeout", "-1s"}, nil, "--token-command-timeout must be positive"},
		{"header", []string{"--oauth2-token-url", "ftp://idp/token"}, nil, `--oauth2-token-url "ftp://idp/token" is not an http(s) URL`},
		{"header", []string{"--oauth2-token-url", "/token?client_secret=s3cr3t-s3cr3t"}, nil, `--oauth2-token-url "/token?client_secret=REDACTED" is not an http(s) URL`},
		{"header", []string{"--oauth2-token-url", "https://idp/token", "--client-secret", "s3cr3t"}, nil, "--oauth2-token-url needs --client-id and a secret (--client-secret or WSAUTH_CLIENT_SECRET)"},
		{"none", []string{"--token-file", "/f"}, nil, "--token-file given with --auth none: choose how the token travels with --auth (ticket, query, first-message, cookie, header, subprotocol)"},
		{"ticket", nil, nil, "--auth ticket needs a token: --token, --token-file, --token-command, --oauth2-token-url or WSAUTH_TOKEN"},
		{"header", nil, []string{envToken + "=  "}, "--auth header needs a token: --token, --token-file, --token-command, --oauth2-token-url or WSAUTH_TOKEN"},
	} {
		c := groupConfig(t, u, tc.auth)
		_, err := c.setTokenSource(groupFlags(t, tc.args...), env(tc.env...))
		requireUsage(t, err, tc.want)
	}

	t.Run("one source each", func(t *testing.T) {
		for _, tc := range []struct {
			args         []string
			name         string
			everyAttempt bool
		}{
			{[]string{"--token", "t0k3n-t0k3n"}, "--token", false},
			{[]string{"--token-file", "/run/token"}, "--token-file", true},
			{[]string{"--token-command", "echo x"}, "--token-command", true},
		} {
			c := groupConfig(t, u, "header")
			chosen, err := c.setTokenSource(groupFlags(t, tc.args...), env(envToken+"=from-env"))
			require.NoError(t, err)
			require.Equal(t, tc.name, c.source.name)
			require.Equal(t, tc.everyAttempt, c.source.everyAttempt)
			require.Equal(t, []string{tc.name}, chosen.flags)
			require.Equal(t, "from-env", chosen.env)
		}
		c := groupConfig(t, u, "header")
		_, err := c.setTokenSource(groupFlags(t, "--token", "t0k3n-t0k3n"), env())
		require.NoError(t, err)
		require.Equal(t, "REDACTED", c.scrub.String("t0k3n-t0k3n"))
	})
	t.Run("WSAUTH_TOKEN only for a mode that carries a token", func(t *testing.T) {
		c := groupConfig(t, u, "first-message")
		chosen, err := c.setTokenSource(groupFlags(t), env(envToken+"= from-env "))
		require.NoError(t, err)
		require.Equal(t, envToken, c.source.name)
		require.Empty(t, chosen.flags)
		for _, mode := range []string{"none", "cookie"} {
			c := groupConfig(t, u, mode)
			chosen, err := c.setTokenSource(groupFlags(t), env(envToken+"=from-env"))
			require.NoError(t, err)
			require.Nil(t, c.source, mode)
			require.Equal(t, "from-env", chosen.env, "the cookie login may use it")
		}
	})
	t.Run("oauth2", func(t *testing.T) {
		c := groupConfig(t, u, "header")
		_, err := c.setTokenSource(groupFlags(t, "--oauth2-token-url", "https://idp.example.com/token", "--client-id", "bot",
			"--scope", "read write", "--scope", "admin"), env(envClientSecret+"=cl13nt-s3cr3t"))
		require.NoError(t, err)
		defer c.oauthHC.CloseIdleConnections()
		require.Equal(t, "--oauth2-token-url", c.source.name)
		require.NotNil(t, c.oauthHC.CheckRedirect, "redirects only within the token endpoint's origin")
		require.Equal(t, 30*time.Second, c.oauthHC.Timeout)
		require.Equal(t, "REDACTED", c.scrub.String("cl13nt-s3cr3t"))
	})
}

func TestConnectCookieLoginGroup(t *testing.T) {
	const u = "wss://api.example.com:8443/ws?room=1"
	for _, tc := range []struct {
		auth string
		args []string
		env  []string
		want string
	}{
		{"header", []string{"--token", "t0k3n", "--login-url", "https://h/login"}, nil, "--login-url and --login-json go with --auth cookie"},
		{"none", []string{"--login-json", "{}"}, nil, "--login-url and --login-json go with --auth cookie"},
		{"cookie", []string{"--login-url", "ftp://h/login"}, nil, `--login-url "ftp://h/login" is not an http(s) URL`},
		{"cookie", []string{"--login-json", "{}", "--token", "t0k3n"}, nil, "--auth cookie logs in with a login body or with --token, not both"},
		{"cookie", []string{"--token-file", "/f"}, []string{envLoginJSON + "={}"}, "--auth cookie logs in with a login body or with --token-file, not both"},
		{"cookie", []string{"--login-json", "[1]"}, nil, "--login-json must be a JSON object"},
		{"cookie", []string{"--token-command", "true"}, nil, "--auth cookie logs in with --login-json, WSAUTH_LOGIN_JSON, or a fixed --token; --token-command cannot be used"},
		{"cookie", nil, nil, "--auth cookie needs a login body: --login-json, WSAUTH_LOGIN_JSON, --token or WSAUTH_TOKEN"},
	} {
		c := groupConfig(t, u, tc.auth)
		f := groupFlags(t, tc.args...)
		s := env(tc.env...)
		chosen, err := c.setTokenSource(f, s)
		require.NoError(t, err)
		requireUsage(t, c.setCookieLogin(f, chosen, s.getenv), tc.want)
	}

	login := func(t *testing.T, args []string, kv ...string) *connectConfig {
		t.Helper()
		c := groupConfig(t, u, "cookie")
		f, s := groupFlags(t, args...), env(kv...)
		chosen, err := c.setTokenSource(f, s)
		require.NoError(t, err)
		require.NoError(t, c.setCookieLogin(f, chosen, s.getenv))
		require.Nil(t, c.source, "the cookie jar is the credential")
		return c
	}
	c := login(t, []string{"--login-json", `{"username":"demo","password":"pw-pw-pw","remember":true}`})
	require.Equal(t, "https://api.example.com:8443/api/login", c.loginURL)
	require.JSONEq(t, `{"username":"demo","password":"pw-pw-pw","remember":true}`, string(c.loginBody))
	require.Equal(t, "REDACTED", c.scrub.String("pw-pw-pw"))
	// Strings at any depth are secrets: a login body may nest them.
	c = login(t, []string{"--login-json", `{"auth":{"user":"demo","password":"n3st3d-pw"},"otp":["123456"],"n":5}`})
	require.Equal(t, "REDACTED REDACTED", c.scrub.String("n3st3d-pw 123456"))
	c = login(t, nil, envLoginJSON+`={"password":"hunter22"}`, envToken+"=from-env")
	require.JSONEq(t, `{"password":"hunter22"}`, string(c.loginBody), "a login body beats WSAUTH_TOKEN")
	c = login(t, []string{"--token", "t0k3n-t0k3n", "--login-url", "http://127.0.0.1:1/in"})
	require.Equal(t, "http://127.0.0.1:1/in", c.loginURL)
	require.JSONEq(t, `{"token":"t0k3n-t0k3n"}`, string(c.loginBody))
	c = login(t, nil, envToken+"=from-env")
	require.JSONEq(t, `{"token":"from-env"}`, string(c.loginBody))
	require.Equal(t, "REDACTED", c.scrub.String("from-env"))

	c = groupConfig(t, u, "ticket")
	require.NoError(t, c.setCookieLogin(groupFlags(t), tokenChoice{}, env().getenv))
	require.Empty(t, c.loginURL)
	require.Nil(t, c.loginBody)
}

func TestConnectConnectionGroup(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// A malformed header is not echoed: it may be a bare credential.
		{[]string{"--header", "Bearer s3cr3t-no-colon"}, "--header wants Name: value"},
		{[]string{"--header", ": s3cr3t-no-name"}, "--header wants Name: value"},
		{[]string{"--header", "Two words: s3cr3t"}, "--header wants Name: value"},
		{[]string{"--header", "X: s3cr3t\r\nInjected: b"}, "--header wants Name: value"},
		{[]string{"--subprotocol", "a b"}, `--subprotocol "a b" is not a subprotocol name`},
		{[]string{"--subprotocol", "a,b"}, `--subprotocol "a,b" is not a subprotocol name`},
		{[]string{"--subprotocol", ""}, `--subprotocol "" is not a subprotocol name`},
		{[]string{"--dialect", "klingon"}, `--dialect "klingon": want one of ` + dialectNames()},
		{[]string{"--ping", "-1s"}, "--ping must not be negative (0 turns pings off)"},
	} {
		c := groupConfig(t, "wss://h/ws", "none")
		requireUsage(t, c.setConnection(groupFlags(t, tc.args...)), tc.want)
	}

	// --auth first-message needs a dialect that has an auth message.
	for _, name := range []string{"plain", "slack"} {
		c := groupConfig(t, "wss://h/ws", "first-message")
		requireUsage(t, c.setConnection(groupFlags(t, "--dialect", name)),
			"--auth first-message needs a dialect with an auth message: --dialect "+name+
				" has none (centrifugo, graphql-ws, homeassistant, wsauth have one)")
	}
	for _, name := range []string{"wsauth", "homeassistant", "graphql-ws", "centrifugo"} {
		c := groupConfig(t, "wss://h/ws", "first-message")
		require.NoError(t, c.setConnection(groupFlags(t, "--dialect", name)), name)
	}
	for _, auth := range []string{"ticket", "header", "none"} {
		c := groupConfig(t, "wss://h/ws", auth)
		require.NoError(t, c.setConnection(groupFlags(t, "--dialect", "plain")), auth)
	}

	c := groupConfig(t, "wss://h/ws", "none")
	require.NoError(t, c.setConnection(groupFlags(t, "--origin", "https://app.example.com",
		"--header", "X-Trace: abc", "--header", "X-Api-Key:  k3y-k3y-k3y ", "--header", "Authorization: Bearer s3cr3t-h3ad3r",
		"--subprotocol", "chat.v1", "--subprotocol", "chat.v2", "--dialect", "centrifugo", "--ping", "0")))
	require.Equal(t, "https://app.example.com", c.origin)
	require.Equal(t, http.Header{"Origin": {"https://app.example.com"}, "X-Trace": {"abc"}, "X-Api-Key": {"k3y-k3y-k3y"},
		"Authorization": {"Bearer s3cr3t-h3ad3r"}}, c.header)
	require.Equal(t, "key REDACTED, Authorization: REDACTED, token REDACTED",
		c.scrub.String("key k3y-k3y-k3y, Authorization: Bearer s3cr3t-h3ad3r, token s3cr3t-h3ad3r"))
	require.Equal(t, []string{"chat.v1", "chat.v2"}, c.subprotocols)
	require.IsType(t, &centrifugo.Dialect{}, c.dialect)
	require.Zero(t, c.ping)

	c = groupConfig(t, "wss://h/ws", "none")
	require.NoError(t, c.setConnection(groupFlags(t)))
	require.Empty(t, c.header)
	require.Equal(t, wsauth.DefaultDialect, c.dialect)
	require.Equal(t, defaultPing, c.ping)
}

func TestConnectReconnectGroup(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reauth-codes", "1008,banana"}, `--reauth-codes: "banana" is not a close code (1000-4999)`},
		{[]string{"--reauth-codes", "999"}, `--reauth-codes: "999" is not a close code (1000-4999)`},
		{[]string{"--reauth-codes", "5000"}, `--reauth-codes: "5000" is not a close code (1000-4999)`},
		{[]string{"--max-auth-failures", "0"}, "--max-auth-failures must be at least 1"},
		{[]string{"--backoff-initial", "0s"}, "--backoff-initial must be positive and at most --backoff-max"},
		{[]string{"--backoff-initial", "2s", "--backoff-max", "1s"}, "--backoff-initial must be positive and at most --backoff-max"},
		{[]string{"--refresh-lead", "-1s"}, "--refresh-lead must not be negative"},
		{[]string{"--renewal", "sometimes"}, `--renewal "sometimes": want refresh, rotate, reconnect or none`},
	} {
		c := groupConfig(t, "wss://h/ws", "none")
		requireUsage(t, c.setReconnect(groupFlags(t, tc.args...)), tc.want)
	}

	c := groupConfig(t, "wss://h/ws", "none")
	require.NoError(t, c.setReconnect(groupFlags(t)))
	require.Equal(t, []wsauth.StatusCode{1008}, c.reauthCodes)
	require.Equal(t, defaultMaxAuthFailures, c.maxAuthFailures)
	require.Equal(t, defaultBackoffInitial, c.backoffInitial)
	require.Equal(t, defaultBackoffMax, c.backoffMax)
	require.Zero(t, c.refreshLead)
	require.Equal(t, wsauth.RenewRefresh, c.renewal)

	require.NoError(t, c.setReconnect(groupFlags(t, "--reauth-codes", " 4401, ,4403 ", "--max-auth-failures", "1",
		"--backoff-initial", "1s", "--backoff-max", "1s", "--refresh-lead", "5s")))
	require.Equal(t, []wsauth.StatusCode{4401, 4403}, c.reauthCodes)
	require.Equal(t, time.Second, c.backoffMax)
	require.NoError(t, c.setReconnect(groupFlags(t, "--reauth-codes", "")))
	require.Empty(t, c.reauthCodes, "no override: the client's table alone, where 1008 means reauth")
	for name, want := range map[string]wsauth.Renewal{"refresh": wsauth.RenewRefresh, "rotate": wsauth.RenewRotate,
		"reconnect": wsauth.RenewReconnect, "none": wsauth.RenewNone} {
		require.NoError(t, c.setReconnect(groupFlags(t, "--renewal", name)))
		require.Equal(t, want, c.renewal, name)
	}
}

// TestReauthCodesOverrideTheClassification: --reauth-codes is a
// ReconnectPolicy.Classify override: its codes mean "fresh credentials",
// whatever the dialect says of them; every other ending is left to the
// client's table.
func TestReauthCodesOverrideTheClassification(t *testing.T) {
	classify := reauthOn([]wsauth.StatusCode{1008, 4500})
	require.Equal(t, wsauth.ActionReauth, classify(wsauth.Ending{Code: 4500, CloseMeaning: wsauth.ActionRetry}))
	require.Equal(t, wsauth.ActionReauth, classify(wsauth.Ending{Code: 1008, Phase: wsauth.PhaseConnected}))
	require.Equal(t, wsauth.ActionDefault, classify(wsauth.Ending{Code: 1011}))
	require.Equal(t, wsauth.ActionDefault, classify(wsauth.Ending{HTTPStatus: 401}))
	require.Nil(t, reauthOn(nil), "no codes, no override")
}

func TestConnectOutputGroup(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--events", "xml"}, `--events "xml": want text, json or none`},
		{[]string{"--output", "yaml"}, `--output "yaml": want text or json`},
		{[]string{"--wait", "-1s"}, "--wait must not be negative"},
	} {
		c := groupConfig(t, "wss://h/ws", "none")
		requireUsage(t, c.setOutput(groupFlags(t, tc.args...)), tc.want)
	}
	c := groupConfig(t, "wss://h/ws", "none")
	require.NoError(t, c.setOutput(groupFlags(t)))
	require.Equal(t, eventsText, c.events)
	require.Equal(t, "text", c.output)
	require.Zero(t, c.wait)
	require.NoError(t, c.setOutput(groupFlags(t, "--events", "none", "--output", "json", "--wait", "2s")))
	require.Equal(t, eventsNone, c.events)
	require.Equal(t, "json", c.output)
	require.Equal(t, 2*time.Second, c.wait)
}

// TestConnectGroupsShareTheScrubber: what one group registers as secret,
// every message printed later scrubs.
func TestConnectGroupsShareTheScrubber(t *testing.T) {
	c, err := parseConnect([]string{"--auth", "header", "--token", "t0k3n-t0k3n", "--header", "Cookie: sess=c00k13-c00k13",
		"wss://h/ws?api_key=k3y-in-url"}, env())
	require.NoError(t, err)
	out := c.scrub.String("t0k3n-t0k3n sess=c00k13-c00k13 k3y-in-url")
	require.NotContains(t, out, "t0k3n")
	require.NotContains(t, out, "c00k13")
	require.NotContains(t, out, "k3y-in-url")
	require.True(t, strings.HasPrefix(out, "REDACTED"), out)
}

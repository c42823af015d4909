package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runBin(t, nil, "help")
	require.Equal(t, 0, code)
	for _, c := range commands() {
		require.Contains(t, out, "  "+c.name+" ")
	}
	require.Contains(t, out, "3 gave up on authentication")

	for _, c := range commands() {
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "--help"}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				fs, _ := c.flags()
				code, out, errOut := runBin(t, nil, args...)
				require.Equal(t, 0, code, "%v: %s", args, errOut)
				require.Contains(t, out, "Usage: wsauth "+c.name)
				// Every flag is listed, with its default.
				fs.VisitAll(func(f *flag.Flag) {
					require.Contains(t, out, "\n  --"+f.Name, "%v lists --%s", args, f.Name)
				})
				require.Equal(t, countFlags(fs), strings.Count(out, "(default: "), "%v: one default per flag", args)
			})
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		code, out, _ := runBin(t, nil, args...)
		require.Equal(t, 0, code)
		require.Contains(t, out, "Commands:")
	}
	code, out, _ = runBin(t, nil, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "wsauth "), out)
}

func countFlags(fs *flag.FlagSet) int {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

// Every flag appears in exactly one help group, so none goes undocumented.
func TestHelpGroupsCoverEveryFlag(t *testing.T) {
	for _, c := range commands() {
		fs, _ := c.flags()
		seen := map[string]int{}
		for _, g := range c.groups {
			for _, n := range g.names {
				seen[n]++
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			require.Equal(t, 1, seen[f.Name], "%s --%s in the help groups", c.name, f.Name)
		})
		require.Len(t, seen, countFlags(fs), "%s: the help names flags that do not exist", c.name)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	const u = "ws://127.0.0.1:1/ws"
	cases := []struct {
		args []string
		want []string
	}{
		{nil, []string{"Commands:"}},
		{[]string{"frobnicate"}, []string{`no command "frobnicate"`}},
		{[]string{"help", "frobnicate"}, []string{`no command "frobnicate"`}},
		{[]string{"connect"}, []string{"missing the WebSocket URL"}},
		{[]string{"connect", u, u}, []string{"one URL expected"}},
		{[]string{"connect", "ftp://127.0.0.1/ws"}, []string{"ws://"}},
		{[]string{"connect", "--bogus", u}, []string{"flag provided but not defined: -bogus"}},
		{[]string{"connect", "--auth", "magic", u}, []string{`--auth "magic"`, "first-message"}},
		{[]string{"connect", "--auth", "header", u}, []string{"needs a token"}},
		{[]string{"connect", "--auth", "header", "--token", "t0k3n", "--token-file", "/nonexistent", u}, []string{"give one token source"}},
		{[]string{"connect", "--token", "t0k3n", u}, []string{"--auth none"}},
		{[]string{"connect", "--auth", "cookie", u}, []string{"login body"}},
		{[]string{"connect", "--auth", "cookie", "--login-json", "not json", u}, []string{"JSON object"}},
		{[]string{"connect", "--auth", "ticket", "--token", "t0k3n", "--ticket-url", "ftp://x", u}, []string{"--ticket-url"}},
		{[]string{"connect", "--auth", "header", "--oauth2-token-url", "http://127.0.0.1:1/token", u}, []string{"--client-id"}},
		{[]string{"connect", "--client-id", "x", u}, []string{"--oauth2-token-url"}},
		{[]string{"connect", "--dialect", "klingon", u}, []string{`--dialect "klingon"`, dialectNames()}},
		{[]string{"connect", "--reauth-codes", "1008,banana", u}, []string{"banana"}},
		{[]string{"connect", "--events", "xml", u}, []string{"--events"}},
		{[]string{"connect", "--output", "yaml", u}, []string{"--output"}},
		{[]string{"connect", "--renewal", "sometimes", u}, []string{"--renewal"}},
		{[]string{"connect", "--max-auth-failures", "0", u}, []string{"--max-auth-failures"}},
		{[]string{"connect", "--backoff-initial", "1m", "--backoff-max", "1s", u}, []string{"--backoff-initial"}},
		{[]string{"connect", "--header", "no colon", u}, []string{"--header wants Name: value"}},
		{[]string{"connect", "--auth", "first-message", "--token", "t0k3n", "--dialect", "plain", u}, []string{"--auth first-message needs a dialect with an auth message", "--dialect plain"}},
		{[]string{"connect", "--auth", "first-message", "--token", "t0k3n", "--dialect", "slack", u}, []string{"--dialect slack has none"}},
		{[]string{"connect", "--auth", "header", "--token", "t0k3n", "ws://example.com/ws"}, []string{"--insecure"}},
		{[]string{"token"}, []string{"--secret"}},
		{[]string{"token", "--secret", "short"}, []string{"at least 16 bytes"}},
		{[]string{"token", "--secret", testSecret, "--ttl", "-1s"}, []string{"--ttl"}},
		{[]string{"serve", "--secret", "short"}, []string{"at least 16 bytes"}},
		{[]string{"serve", "--tls-cert", "cert.pem"}, []string{"go together"}},
		{[]string{"serve", "--user", "nopassword"}, []string{"NAME:SECRET"}},
		{[]string{"serve", "--origin", "http://127.0.0.1:*"}, []string{"origin"}},
		{[]string{"serve", "extra"}, []string{"no arguments"}},
		{[]string{"demo", "extra"}, []string{"no arguments"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runBin(t, nil, tc.args...)
			require.Equal(t, exitUsage, code, "stderr: %s", errOut)
			require.Empty(t, out)
			for _, w := range tc.want {
				require.Contains(t, errOut, w)
			}
		})
	}
}

// A --header without its colon may be a bare credential pasted in the
// wrong place: the usage error says what is wanted and never echoes it.
func TestMalformedHeaderIsNotEchoed(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"Bearer s3cr3t-h3ad3r-value", "s3cr3t-h3ad3r-value", "X-Key: s3cr3t-h3ad3r-value\r\nInjected: b"} {
		code, out, errOut := runBin(t, nil, "connect", "--header", h, "ws://127.0.0.1:1/ws")
		require.Equal(t, exitUsage, code, "stderr: %s", errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, "--header wants Name: value")
		require.NotContains(t, errOut, "s3cr3t")
		require.NotContains(t, errOut, "h3ad3r")
	}
}

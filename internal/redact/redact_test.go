package redact

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const canary = `canary<s3cret>"token"&more`

func TestEveryEncodingIsScrubbed(t *testing.T) {
	var s Set
	s.Add(canary)
	for _, form := range []string{
		canary,
		url.QueryEscape(canary),
		url.PathEscape(canary),
		`canary\u003cs3cret\u003e\"token\"\u0026more`, // encoding/json's default, HTML-escaped
		`canary<s3cret>\"token\"&more`,                // JSON without HTML escaping
		base64.StdEncoding.EncodeToString([]byte(canary)),
		base64.RawURLEncoding.EncodeToString([]byte(canary)),
	} {
		out := s.String("the server echoed " + form + " back")
		require.Equal(t, "the server echoed REDACTED back", out, form)
	}
}

func TestCutScrubsBeforeCutting(t *testing.T) {
	var s Set
	s.Add("0123456789abcdef-secret")
	body := strings.Repeat("x", 500) + "0123456789abcdef-secret" + strings.Repeat("y", 100)
	got := s.Cut(body, 512)
	require.LessOrEqual(t, len(got), 512)
	require.NotContains(t, got, "0123456789")
	require.True(t, strings.HasSuffix(got, "REDACTED"+strings.Repeat("y", 512-500-len("REDACTED"))))
	require.Equal(t, "é", s.Cut("éé", 3), "never cut inside a rune")
	require.Equal(t, "a?b", s.Cut("a\xffb", 10), "invalid UTF-8 replaced")
}

func TestURLRedactsCredentialParametersByName(t *testing.T) {
	var s Set
	s.AddParam("t")
	u, err := url.Parse("wss://user:pa55word@host/ws?t=1234567&token=abcdefg&access_token=q&api_key=k&X-Amz-Signature=z&room=lobby")
	require.NoError(t, err)
	out := s.URL(u)
	for _, leak := range []string{"1234567", "abcdefg", "access_token=q", "api_key=k", "Signature=z", "pa55word", "user"} {
		require.NotContains(t, out, leak)
	}
	require.Contains(t, out, "room=lobby")

	var fromURL Set
	fromURL.AddURL(u)
	require.Equal(t, "token REDACTED and password REDACTED", fromURL.String("token abcdefg and password pa55word"))
	require.Equal(t, "room lobby", fromURL.String("room lobby"), "innocent parameters stay")
	for _, name := range []string{"token", "access_token", "id_token", "API_KEY", "apikey", "ticket", "client_secret", "password", "pwd", "sig", "session_id", "jwt", "auth"} {
		require.True(t, CredentialParam(name), name)
	}
	for _, name := range []string{"room", "page", "v", "format"} {
		require.False(t, CredentialParam(name), name)
	}
}

func TestErrorScrubsAndKeepsWhatTheCallerNeeds(t *testing.T) {
	var s Set
	s.Add("canary-secret-token")
	s.AddParam("ticket")
	u := "ws://127.0.0.1:1/ws?ticket=canary-secret-token&room=lobby"
	ue := &url.Error{Op: "Get", URL: u, Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	clean := s.Error(fmt.Errorf("failed to WebSocket dial: %w", ue))
	require.NotContains(t, clean.Error(), "canary-secret-token")
	require.Contains(t, clean.Error(), "ticket=REDACTED")
	var op *net.OpError
	require.ErrorAs(t, clean, &op, "the safe cause stays reachable")

	sentinel := errors.New("sentinel")
	plain := fmt.Errorf("server said canary-secret-token is bad: %w", sentinel)
	out := s.Error(plain, sentinel)
	require.Equal(t, "server said REDACTED is bad: sentinel", out.Error())
	require.ErrorIs(t, out, sentinel)
	require.ErrorIs(t, s.Error(fmt.Errorf("canary-secret-token: %w", context.DeadlineExceeded)), context.DeadlineExceeded)

	untouched := errors.New("nothing secret here")
	require.Same(t, untouched, s.Error(untouched))
	var none *Set
	require.Equal(t, "x canary-secret-token", none.String("x canary-secret-token"), "a nil set redacts nothing")
}

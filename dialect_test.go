package wsauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// Helpers shared by the tests of the built-in dialects, which run against
// the protocol servers of internal/dialecttest.

// tokenSeq hands out prefix-1, prefix-2, … and tells the service about
// each one it hands out (allow), as a token endpoint that mints valid
// tokens would; tokens numbered in refuse are handed out without being
// allowed.
type tokenSeq struct {
	prefix string
	allow  func(...string)
	refuse map[int]bool
	ttl    time.Duration

	mu     sync.Mutex
	n      int
	handed []string
}

func (s *tokenSeq) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	tok := fmt.Sprintf("%s-%d", s.prefix, s.n)
	if s.allow != nil && !s.refuse[s.n] {
		s.allow(tok)
	}
	s.handed = append(s.handed, tok)
	out := &oauth2.Token{AccessToken: tok, TokenType: "Bearer"}
	if s.ttl > 0 {
		out.Expiry = time.Now().Add(s.ttl)
	}
	return out, nil
}

// quickBackoff keeps the dialect tests' reconnects short.
func quickBackoff() *FullJitter {
	return &FullJitter{Initial: 20 * time.Millisecond, Multiplier: 2, Max: 200 * time.Millisecond}
}

// started starts a client that connects in the background and is closed
// at the end of the test.
func started(t *testing.T, rawURL string, o *Options) *Client {
	t.Helper()
	c, err := New(rawURL, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// connected dials a client, waits for its first connection and closes it
// at the end of the test.
func connected(t *testing.T, rawURL string, o *Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), rawURL, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// receiveText returns the next message, which must be text.
func receiveText(t *testing.T, c *Client) string {
	t.Helper()
	typ, data, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, MessageText, typ)
	return string(data)
}

// requireNoSecret checks that secret appears in none of the client's
// events, its stop cause, or its log.
func requireNoSecret(t *testing.T, secret string, rec *recorder, c *Client, logs *syncBuffer) {
	t.Helper()
	for _, e := range rec.all() {
		require.NotContains(t, e.String(), secret, "event %s", e.Kind)
		if e.Err != nil {
			require.NotContains(t, fmt.Sprintf("%v %+v %#v", e.Err, e.Err, e.Err), secret)
		}
	}
	if err := c.Err(); err != nil {
		require.NotContains(t, err.Error(), secret)
	}
	if logs != nil {
		require.NotContains(t, logs.String(), secret)
	}
}

// countOf counts s in list.
func countOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// scriptConn is an in-memory peer for unit tests of a dialect's Open: it
// hands out scripted server messages and records what the dialect writes.
// A scripted message "close:<code>" ends the read with a CloseError.
type scriptConn struct {
	subprotocol string
	provisional bool
	script      []string
	wrote       []string
}

func (s *scriptConn) Read(ctx context.Context) (MessageType, []byte, error) {
	if len(s.script) == 0 {
		return 0, nil, errors.New("script: no more messages")
	}
	m := s.script[0]
	s.script = s.script[1:]
	if code, ok := strings.CutPrefix(m, "close:"); ok {
		var n int
		fmt.Sscanf(code, "%d", &n)
		return 0, nil, &CloseError{Code: StatusCode(n)}
	}
	return MessageText, []byte(m), nil
}

func (s *scriptConn) Write(ctx context.Context, typ MessageType, p []byte) error {
	s.wrote = append(s.wrote, string(p))
	return nil
}

func (s *scriptConn) Subprotocol() string { return s.subprotocol }

func (s *scriptConn) Provisional() bool { return s.provisional }

func TestBuiltinDialectsByName(t *testing.T) {
	want := map[string]Dialect{
		"wsauth":        DefaultDialect,
		"plain":         PlainDialect,
		"homeassistant": HomeAssistant{},
		"graphql-ws":    GraphQLWS{},
		"centrifugo":    &Centrifugo{},
		"slack":         SlackSocketMode{},
	}
	require.Len(t, DialectNames(), len(want))
	for name, d := range want {
		got, ok := DialectNamed(name)
		require.True(t, ok, name)
		require.Equal(t, name, got.Name())
		require.IsType(t, d, got)
	}
	for _, d := range []Dialect{HomeAssistant{}, GraphQLWS{}, &Centrifugo{}, SlackSocketMode{}} {
		_, err := d.RefreshMessage("tok")
		if d.Name() == "centrifugo" {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, ErrRefreshUnsupported, d.Name())
		}
	}
}

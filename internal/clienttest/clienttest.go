// Package clienttest holds the helpers the dialect packages' tests share:
// starting clients against the protocol servers of internal/dialecttest,
// waiting on their events, and checking that no secret leaked.
package clienttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/testkit"
)

// WaitLong bounds every wait on an event.
const WaitLong = testkit.WaitLong

// Ctx is a context for one test, bounded generously.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*WaitLong)
	t.Cleanup(cancel)
	return ctx
}

// Recorder collects a client's events; On is its Options.OnEvent.
type Recorder struct{ *testkit.Log[wsauth.Event] }

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{testkit.NewLog[wsauth.Event]()} }

// On records e.
func (r *Recorder) On(e wsauth.Event) { r.Add(e) }

// Kind matches events of kind k.
func Kind(k wsauth.EventKind) func(wsauth.Event) bool {
	return func(e wsauth.Event) bool { return e.Kind == k }
}

// Of counts the events of kind k.
func (r *Recorder) Of(k wsauth.EventKind) int { return r.Count(Kind(k)) }

// QuickBackoff keeps the dialect tests' reconnects short.
func QuickBackoff() *wsauth.FullJitter {
	return &wsauth.FullJitter{Initial: 20 * time.Millisecond, Multiplier: 2, Max: 200 * time.Millisecond}
}

// Started starts a client that connects in the background and is closed
// at the end of the test.
func Started(t testing.TB, rawURL string, o *wsauth.Options) *wsauth.Client {
	t.Helper()
	c, err := wsauth.New(rawURL, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// Connected dials a client, waits for its first connection and closes it
// at the end of the test.
func Connected(t testing.TB, rawURL string, o *wsauth.Options) *wsauth.Client {
	t.Helper()
	c, err := wsauth.Dial(Ctx(t), rawURL, o)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// ReceiveText returns the next message, which must be text.
func ReceiveText(t testing.TB, c *wsauth.Client) string {
	t.Helper()
	typ, data, err := c.Receive(Ctx(t))
	require.NoError(t, err)
	require.Equal(t, wsauth.MessageText, typ)
	return string(data)
}

// Ask sends a text message and returns the answer.
func Ask(t testing.TB, c *wsauth.Client, msg string) string {
	t.Helper()
	require.NoError(t, c.SendText(Ctx(t), msg))
	return ReceiveText(t, c)
}

// WaitDone waits for the client to stop on its own.
func WaitDone(t testing.TB, c *wsauth.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(WaitLong):
		t.Fatalf("client did not stop; state %s", c.State())
	}
}

// RequireNoSecret checks that secret appears in none of the client's
// events, its stop cause, or its log.
func RequireNoSecret(t testing.TB, secret string, rec *Recorder, c *wsauth.Client, logs *testkit.Buffer) {
	t.Helper()
	for _, e := range rec.All() {
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

// CountOf counts s in list.
func CountOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// TokenSeq hands out Prefix-1, Prefix-2, … and tells the service about
// each one it hands out (Allow), as a token endpoint that mints valid
// tokens would; tokens numbered in Refuse are handed out without being
// allowed.
type TokenSeq struct {
	Prefix string
	Allow  func(...string)
	Refuse map[int]bool
	TTL    time.Duration

	mu sync.Mutex
	n  int
}

// Token implements oauth2.TokenSource.
func (s *TokenSeq) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	tok := fmt.Sprintf("%s-%d", s.Prefix, s.n)
	if s.Allow != nil && !s.Refuse[s.n] {
		s.Allow(tok)
	}
	out := &oauth2.Token{AccessToken: tok, TokenType: "Bearer"}
	if s.TTL > 0 {
		out.Expiry = time.Now().Add(s.TTL)
	}
	return out, nil
}

// ScriptConn is an in-memory peer for unit tests of a dialect's Open: it
// hands out scripted server messages and records what the dialect writes.
// A scripted message "close:<code>" ends the read with a CloseError.
type ScriptConn struct {
	Proto  string
	Script []string
	Wrote  []string
}

// Read implements wsauth.Conn.
func (s *ScriptConn) Read(ctx context.Context) (wsauth.MessageType, []byte, error) {
	if len(s.Script) == 0 {
		return 0, nil, errors.New("script: no more messages")
	}
	m := s.Script[0]
	s.Script = s.Script[1:]
	var code int
	if _, err := fmt.Sscanf(m, "close:%d", &code); err == nil {
		return 0, nil, &wsauth.CloseError{Code: wsauth.StatusCode(code)}
	}
	return wsauth.MessageText, []byte(m), nil
}

// Write implements wsauth.Conn.
func (s *ScriptConn) Write(_ context.Context, _ wsauth.MessageType, p []byte) error {
	s.Wrote = append(s.Wrote, string(p))
	return nil
}

// Subprotocol implements wsauth.Conn.
func (s *ScriptConn) Subprotocol() string { return s.Proto }

// Strings turns messages into strings, for comparing.
func Strings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return slices.Clip(out)
}

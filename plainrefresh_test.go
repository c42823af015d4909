package wsauth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"
)

// shortTokens is an OAuth 2.0 client-credentials endpoint and a WebSocket
// server written the way an application would: ?token= checked after the
// upgrade, no auth_ok, the session closed with 1008 "Session expired" when
// its token runs out, and the default refresh messages extending it.
type shortTokens struct {
	ttl     time.Duration
	fetches atomic.Int64
	mu      sync.Mutex
	expiry  map[string]time.Time
	refresh atomic.Int64
}

func (s *shortTokens) issue() (string, time.Time) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok, exp := hex.EncodeToString(b), time.Now().Add(s.ttl)
	s.mu.Lock()
	if s.expiry == nil {
		s.expiry = map[string]time.Time{}
	}
	s.expiry[tok] = exp
	s.mu.Unlock()
	return tok, exp
}

func (s *shortTokens) valid(tok string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.expiry[tok]
	return exp, ok && time.Now().Before(exp)
}

func (s *shortTokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth/token" {
		s.fetches.Add(1)
		tok, _ := s.issue()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": s.ttl.Seconds()})
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	exp, ok := s.valid(r.URL.Query().Get("token"))
	if !ok {
		ws.Close(websocket.StatusPolicyViolation, "Unauthorized")
		return
	}
	ctx := r.Context()
	type msg struct {
		typ  websocket.MessageType
		data []byte
		err  error
	}
	in := make(chan msg)
	go func() {
		for {
			typ, data, err := ws.Read(ctx)
			select {
			case in <- msg{typ, data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	expired := time.NewTimer(time.Until(exp))
	defer expired.Stop()
	for {
		select {
		case <-expired.C:
			ws.Close(websocket.StatusPolicyViolation, "Session expired")
			return
		case m := <-in:
			if m.err != nil {
				return
			}
			var req struct{ Type, Token string }
			if json.Unmarshal(m.data, &req) == nil && req.Type == "refresh" {
				reply := `{"type":"refresh_failed","reason":"invalid token"}`
				if e, ok := s.valid(req.Token); ok {
					s.refresh.Add(1)
					exp = e
					expired.Reset(time.Until(exp))
					reply = `{"type":"refresh_ok","expires_in":` + jsonSeconds(time.Until(exp)) + `}`
				}
				if ws.Write(ctx, websocket.MessageText, []byte(reply)) != nil {
					return
				}
				continue
			}
			if ws.Write(ctx, m.typ, m.data) != nil {
				return
			}
		}
	}
}

func jsonSeconds(d time.Duration) string {
	b, _ := json.Marshal(d.Seconds())
	return string(b)
}

func TestRefreshFromTheTokensOwnExpiryWithoutAServerVerdict(t *testing.T) {
	// Three-second tokens leave a refresh over a second to be answered even
	// on a loaded machine; interop/ runs the two-second version.
	app := &shortTokens{ttl: 3 * time.Second}
	url := serve(t, app)
	httpURL := "http" + url[len("ws"):len(url)-len("/ws")]
	cfg := &clientcredentials.Config{ClientID: "bot", ClientSecret: "s3cret", TokenURL: httpURL + "/oauth/token"}
	rec := newRecorder()
	c, err := Dial(testCtx(t), url, &Options{Auth: &QueryAuth{Tokens: TokenFunc(cfg.Token)}, OnEvent: rec.on})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, VerdictWindow, rec.waitFor(t, 1, kind(EventConnected)).Verdict)

	// Four refreshes of traffic on one connection: every refresh
	// carries a token fetched as the last one ran out.
	for i := 0; rec.count(EventRefreshed) < 4; i++ {
		echo(t, c, "message")
		require.Zero(t, rec.count(EventReconnecting), "events: %v", rec.all())
	}
	require.Zero(t, rec.count(EventReconnecting))
	require.GreaterOrEqual(t, app.refresh.Load(), int64(4))
	require.GreaterOrEqual(t, app.fetches.Load(), int64(5), "a fresh token for the connection and for each refresh")
}

package wsauth

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/redact"
)

var redactForms = redact.Forms

// catcher is a server of another origin that records everything that
// reaches it: a redirect must never bring it a credential.
type catcher struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []string
}

func newCatcher(t *testing.T) *catcher {
	k := &catcher{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		k.mu.Lock()
		k.got = append(k.got, r.Method+" "+r.URL.String()+" "+headerDump(r.Header)+" "+string(body))
		k.mu.Unlock()
		if r.Header.Get("Upgrade") != "" {
			ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v1"}})
			if err != nil {
				return
			}
			defer ws.CloseNow()
			_, data, err := ws.Read(r.Context())
			if err == nil {
				k.mu.Lock()
				k.got = append(k.got, "message "+string(data))
				k.mu.Unlock()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ticket":"caught-ticket","expires_in":30}`)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func headerDump(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		b.WriteString(k + "=" + strings.Join(vs, ",") + ";")
	}
	return b.String()
}

func (k *catcher) requests() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got...)
}

// redirector answers every request with a redirect to target, keeping the
// path and query, with the given status.
func redirector(t *testing.T, status int, target string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.RequestURI(), status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsOf(u string) string { return "ws" + strings.TrimPrefix(u, "http") }

// TestAttackTable is the client's side of the threat model: one row per
// attack, with what must happen. The server's rows are in package server.
func TestAttackTable(t *testing.T) {
	const canary = "canary-s3cret-credential"
	type outcome struct {
		err    error  // errors.Is
		status int    // an HTTPError with this status
		stop   string // GaveUpError.Why
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, evil *catcher) (*Client, error)
		want outcome
	}{
		{
			name: "handshake redirected to another host: no bearer subprotocol, header or first message follows",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusTemporaryRedirect, evil.srv.URL)
				return dialOnce(t, wsOf(a.URL)+"/ws", &Options{
					Auth:   &SubprotocolAuth{Tokens: StaticToken(canary), Subprotocol: "chat.v1"},
					Header: http.Header{"X-Api-Key": {canary}},
				})
			},
			want: outcome{status: http.StatusTemporaryRedirect, stop: "policy"},
		},
		{
			name: "handshake redirected: the first-message token is never sent",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusFound, evil.srv.URL)
				return dialOnce(t, wsOf(a.URL)+"/ws", &Options{Auth: &FirstMessageAuth{Tokens: StaticToken(canary)}})
			},
			want: outcome{status: http.StatusFound, stop: "policy"},
		},
		{
			name: "handshake redirected: the query token reaches no one, not even through Referer or the error",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusMovedPermanently, evil.srv.URL)
				return dialOnce(t, wsOf(a.URL)+"/ws", &Options{Auth: &QueryAuth{Tokens: StaticToken(canary)}})
			},
			want: outcome{status: http.StatusMovedPermanently, stop: "policy"},
		},
		{
			name: "handshake redirected to the same host on another port: no Authorization",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusTemporaryRedirect, strings.Replace(evil.srv.URL, "127.0.0.1", "localhost", 1))
				return dialOnce(t, wsOf(a.URL)+"/ws", &Options{Auth: &HeaderAuth{Tokens: StaticToken(canary)}})
			},
			want: outcome{status: http.StatusTemporaryRedirect, stop: "policy"},
		},
		{
			name: "ticket endpoint redirected to another origin: the bearer token stays home",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusTemporaryRedirect, evil.srv.URL)
				return dialOnce(t, wsOf(evil.srv.URL)+"/ws", &Options{Auth: &TicketAuth{Endpoint: a.URL + "/api/ws-ticket", Tokens: StaticToken(canary)}})
			},
			want: outcome{err: ErrRedirect, stop: "policy"},
		},
		{
			name: "login redirected with 307 to another origin: the password is not replayed there",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusTemporaryRedirect, evil.srv.URL)
				return dialOnce(t, wsOf(evil.srv.URL)+"/ws", &Options{Auth: &CookieAuth{LoginURL: a.URL + "/api/login",
					LoginBody: []byte(`{"username":"alice","password":"` + canary + `"}`)}})
			},
			want: outcome{err: ErrRedirect, stop: "policy"},
		},
		{
			name: "a provider's own HTTP client gets the policy too",
			run: func(t *testing.T, evil *catcher) (*Client, error) {
				a := redirector(t, http.StatusTemporaryRedirect, evil.srv.URL)
				return dialOnce(t, wsOf(evil.srv.URL)+"/ws", &Options{Auth: &TicketAuth{Endpoint: a.URL + "/t", Tokens: StaticToken(canary), HTTPClient: &http.Client{}}})
			},
			want: outcome{err: ErrRedirect, stop: "policy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evil := newCatcher(t)
			c, err := tc.run(t, evil)
			require.Error(t, err)
			require.Empty(t, evil.requests(), "the other origin was contacted")
			if tc.want.err != nil {
				require.ErrorIs(t, err, tc.want.err)
			}
			if tc.want.status != 0 {
				var he *HTTPError
				require.ErrorAs(t, err, &he)
				require.Equal(t, tc.want.status, he.StatusCode)
				require.NotEmpty(t, he.Location, "the error says where the redirect pointed")
			}
			var gu *GaveUpError
			require.ErrorAs(t, err, &gu)
			require.Equal(t, tc.want.stop, gu.Why)
			require.NotContains(t, err.Error(), canary)
			if c != nil {
				require.NoError(t, c.Close())
			}
		})
	}
}

// dialOnce starts a client and waits for it to connect or stop.
func dialOnce(t *testing.T, u string, o *Options) (*Client, error) {
	o.Reconnect.MaxAuthFailures, o.Reconnect.Backoff = 2, fast()
	c, err := New(u, o)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		return c, err
	}
	return c, errors.New("connected")
}

func TestSameOriginRedirectsAreFollowedWithoutReferer(t *testing.T) {
	var referers []string
	var mu sync.Mutex
	env := newServer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		referers = append(referers, r.Header.Get("Referer"))
		mu.Unlock()
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new?ticket-hint=x", http.StatusTemporaryRedirect)
			return
		}
		// The same origin's new endpoint passes the call on to the real
		// ticket endpoint.
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, env.TicketURL(), nil)
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	c := dialed(t, env, &Options{Auth: &TicketAuth{Endpoint: srv.URL + "/old?x=1", Tokens: env.TokenSource("alice", time.Hour)}})
	require.Equal(t, "alice ticket", ask(t, c, "whoami"))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"", ""}, referers, "followed once, and no Referer on either request")
}

func TestRedirectPolicy(t *testing.T) {
	u := func(s string) *http.Request {
		p, err := url.Parse(s)
		require.NoError(t, err)
		return &http.Request{URL: p, Header: http.Header{"Referer": {s}}}
	}
	first := u("https://api.example.com/ticket?token=x")
	for _, tc := range []struct {
		to string
		ok bool
	}{
		{"https://api.example.com/v2/ticket", true},
		{"https://API.example.com:443/v2", true},
		{"http://api.example.com/v2", false},
		{"https://api.example.com:8443/v2", false},
		{"https://evil.example/v2", false},
		{"https://api.example.com.evil.example/v2", false},
	} {
		req := u(tc.to)
		err := RedirectPolicy(req, []*http.Request{first})
		if tc.ok {
			require.NoError(t, err, tc.to)
			require.Empty(t, req.Header.Get("Referer"), "no Referer on a followed redirect")
		} else {
			require.ErrorIs(t, err, ErrRedirect, tc.to)
		}
	}
	many := make([]*http.Request, maxRedirects+1)
	for i := range many {
		many[i] = first
	}
	require.ErrorIs(t, RedirectPolicy(u("https://api.example.com/x"), many), ErrRedirect)
}

// echoingRefuser refuses every handshake with 401 and a body that quotes
// back what it was sent, the way careless servers do.
func echoingRefuser(t *testing.T, pad int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		b, _ := json.Marshal(map[string]string{
			"a_pad": strings.Repeat("x", pad),
			"error": "bad credentials: " + r.URL.RawQuery + " " + r.Header.Get("Authorization"),
			"token": r.URL.Query().Get("token") + r.URL.Query().Get("access_token") + r.URL.Query().Get("api_key"),
		})
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSecretsNeverReachErrorsEventsOrLogs(t *testing.T) {
	const canary = `canary<t0k3n>"quoted"&more-0123456789`
	refused := func() string { // a port nothing listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		l.Close()
		return "ws://" + addr + "/ws"
	}
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
		auth Authenticator
	}{
		{"a token written into the URL, no provider, refused port", func(t *testing.T) string {
			return refused() + "?token=" + url.QueryEscape(canary)
		}, nil},
		{"access_token in the URL beside QueryAuth", func(t *testing.T) string {
			return refused() + "?access_token=" + url.QueryEscape(canary)
		}, &QueryAuth{Tokens: StaticToken("provider-token-42")}},
		{"api_key in the URL, echoed back by the server", func(t *testing.T) string {
			return wsOf(echoingRefuser(t, 0).URL) + "/ws?api_key=" + url.QueryEscape(canary)
		}, nil},
		{"the query token echoed JSON-escaped", func(t *testing.T) string {
			return wsOf(echoingRefuser(t, 0).URL) + "/ws"
		}, &QueryAuth{Tokens: StaticToken(canary)}},
		{"the token straddling the 512-byte cut of the body", func(t *testing.T) string {
			return wsOf(echoingRefuser(t, 460).URL) + "/ws"
		}, &QueryAuth{Tokens: StaticToken(canary)}},
		{"the header token echoed", func(t *testing.T) string {
			return wsOf(echoingRefuser(t, 0).URL) + "/ws"
		}, &HeaderAuth{Tokens: StaticToken(canary)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			logs := &syncBuffer{}
			c, err := New(tc.url(t), &Options{
				Auth:    tc.auth,
				OnEvent: rec.on,
				Logger:  debugLogger(logs),
				Reconnect: ReconnectPolicy{MaxAuthFailures: 2, Backoff: fast(), Classify: func(e Ending) Action {
					if e.Phase != PhaseConnected {
						return ActionStop // one attempt is enough to see what it prints
					}
					return ActionDefault
				}},
			})
			require.NoError(t, err)
			waitDone(t, c)
			require.NoError(t, c.Close())
			require.Error(t, c.Err())
			var out []string
			out = append(out, c.Err().Error(), fmt.Sprintf("%+v", c.Err()), logs.String())
			for _, e := range rec.all() {
				out = append(out, e.String())
			}
			var he *HTTPError
			if errors.As(c.Err(), &he) {
				out = append(out, he.Body, he.Location)
				require.LessOrEqual(t, len(he.Body), maxErrorBody)
			}
			for _, s := range out {
				for _, form := range redactForms(canary) {
					require.NotContains(t, s, form)
				}
				// No tail or head of the secret survives a cut either.
				require.NotContains(t, s, "canary")
				require.NotContains(t, s, "t0k3n")
				require.NotContains(t, s, "0123456789")
			}
		})
	}
}

// rawServer completes the WebSocket handshake by hand and then writes
// frame, bytes coder/websocket would never send: a server that breaks the
// protocol.
func rawServer(t *testing.T, frame []byte) (string, *atomic.Int32) {
	var upgrades atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		upgrades.Add(1)
		fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]))
		buf.Write(frame)
		buf.Flush()
		_, _ = io.Copy(io.Discard, conn) // until the client hangs up
	}))
	t.Cleanup(srv.Close)
	return wsOf(srv.URL) + "/ws", &upgrades
}

func TestProtocolErrorsTheClientDetectsCount(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		_ = ws.Write(r.Context(), websocket.MessageText, []byte(strings.Repeat("x", 4096)))
		_, _, _ = ws.Read(r.Context())
	}))
	t.Cleanup(big.Close)
	compressed, upgrades := rawServer(t, []byte{0xC1, 0x05, 'h', 'e', 'l', 'l', 'o'}) // FIN, RSV1, text
	for _, tc := range []struct {
		name string
		url  string
	}{
		{"a message over the read limit", wsOf(big.URL) + "/ws"},
		{"a compressed frame that was never negotiated", compressed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			c, err := New(tc.url, &Options{OnEvent: rec.on, Limits: Limits{ReadLimit: 1024}, Reconnect: ReconnectPolicy{MaxProtocolErrors: 3, Backoff: fast()}})
			require.NoError(t, err)
			waitDone(t, c)
			var gu *GaveUpError
			require.ErrorAs(t, c.Err(), &gu)
			require.Equal(t, "protocol", gu.Why)
			require.ErrorIs(t, c.Err(), ErrProtocol)
			require.NoError(t, c.Close()) // every event delivered
			require.Equal(t, 3, rec.count(EventConnected), "three connections, then the limit")
		})
	}
	require.Equal(t, int32(3), upgrades.Load())
}

func TestUnverifiableCertificateStops(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c, err := New("wss"+strings.TrimPrefix(srv.URL, "https")+"/ws", &Options{
		Auth:      &HeaderAuth{Tokens: StaticToken("tok-123")},
		OnEvent:   rec.on,
		Reconnect: ReconnectPolicy{Backoff: fast()},
	})
	require.NoError(t, err)
	waitDone(t, c)
	var gu *GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "certificate", gu.Why)
	require.ErrorIs(t, c.Err(), ErrCertificate)
	require.NoError(t, c.Close()) // every event delivered
	require.Equal(t, maxCertificateFailures, rec.count(EventConnecting), "a small budget, then a typed stop")
}

package docs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/clienttest"
	"github.com/wsauth/wsauth/internal/testkit"
	"github.com/wsauth/wsauth/server"
	"github.com/wsauth/wsauth/wsauthtest"
)

// The code of README.md's Go blocks, each run by the test after it.

// whoami answers "whoami" with the principal and its method, and echoes
// everything else.
func whoami() server.Handler {
	return server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if string(msg) == "whoami" {
				p := c.Principal()
				msg = []byte(p.Subject + " by " + string(p.Method))
			}
			if c.Write(ctx, typ, msg) != nil {
				return
			}
		}
	})
}

func quick() *wsauth.FullJitter {
	return &wsauth.FullJitter{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
}

func subscribe(ctx context.Context, url, ticketURL string, tokens oauth2.TokenSource, handle func(wsauth.MessageType, []byte)) error {
	// snippet: readme-dial
	c, err := wsauth.Dial(ctx, url, &wsauth.Options{
		Auth: &wsauth.TicketAuth{
			Endpoint: ticketURL, // POSTed with the bearer token before every attempt
			Tokens:   tokens,    // any oauth2.TokenSource
		},
	})
	if err != nil {
		return err
	}
	defer c.Close()

	if err := c.SendText(ctx, `{"op":"subscribe","topic":"prices"}`); err != nil {
		return err
	}
	for {
		typ, msg, err := c.Receive(ctx) // keeps flowing across reconnects
		if err != nil {
			return err // ctx ended, or the client stopped: ErrClosed, a *wsauth.GaveUpError
		}
		handle(typ, msg)
	}
	// end snippet
}

func TestReadmeDial(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	ctx, cancel := context.WithCancel(clienttest.Ctx(t))
	defer cancel()
	var got []string
	err := subscribe(ctx, srv.URL(), srv.TicketURL(), srv.TokenSource(wsauthtest.Alice, time.Hour), func(_ wsauth.MessageType, msg []byte) {
		got = append(got, string(msg))
		cancel()
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []string{`{"op":"subscribe","topic":"prices"}`}, got, "the echo of the subscription")
}

func providers(tokens oauth2.TokenSource, ticketURL, loginURL string, loginBody []byte, origin string) []wsauth.Authenticator {
	// snippet: readme-providers
	auths := []wsauth.Authenticator{
		&wsauth.TicketAuth{Endpoint: ticketURL, Tokens: tokens},
		&wsauth.QueryAuth{Tokens: tokens}, // ?token=…; Param: "access_token" for another name
		&wsauth.FirstMessageAuth{Tokens: tokens},
		&wsauth.CookieAuth{
			LoginURL:  loginURL,
			LoginBody: loginBody, // {"username":…,"password":…}; its strings are secrets
			Origin:    origin,    // one the server allows; default: the WebSocket URL's own origin
		},
		&wsauth.HeaderAuth{Tokens: tokens},
		&wsauth.SubprotocolAuth{Tokens: tokens, Subprotocol: "chat.v1"}, // Prefix: wsauth.PhoenixBearerPrefix for Phoenix
	}
	// end snippet
	return auths
}

func TestReadmeProviders(t *testing.T) {
	srv := wsauthtest.NewServer(t, wsauthtest.WithHandler(whoami()))
	body := []byte(`{"username":"` + wsauthtest.Alice + `","password":"` + wsauthtest.AlicePassword + `"}`)
	auths := providers(srv.TokenSource(wsauthtest.Alice, time.Hour), srv.TicketURL(), srv.LoginURL(), body, wsauthtest.Origin)
	methods := []string{"ticket", "query", "first-message", "cookie", "header", "subprotocol"}
	require.Len(t, auths, len(methods))
	for i, auth := range auths {
		c := clienttest.Connected(t, srv.URL(), &wsauth.Options{Auth: auth})
		require.Equal(t, "alice by "+methods[i], clienttest.Ask(t, c, "whoami"))
		require.NoError(t, c.Close())
	}
}

func clientCredentials(clientID, clientSecret, tokenURL string) wsauth.Authenticator {
	// snippet: readme-clientcredentials
	cfg := &clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL}
	auth := &wsauth.FirstMessageAuth{Tokens: wsauth.TokenFunc(cfg.Token)} // fetched when the cache needs a token
	// end snippet
	return auth
}

func TestReadmeClientCredentials(t *testing.T) {
	srv := wsauthtest.NewServer(t, wsauthtest.WithHandler(whoami()))
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{Auth: clientCredentials(wsauthtest.ClientID, wsauthtest.ClientSecret, srv.TokenURL())})
	require.Equal(t, wsauthtest.ClientID+" by first-message", clienttest.Ask(t, c, "whoami"))
}

func apiKeyAuth(apiKey string) wsauth.Authenticator {
	// snippet: readme-custom-provider
	auth := wsauth.AuthenticatorFunc(func(ctx context.Context, why wsauth.Reason, hs *wsauth.Handshake) (wsauth.Proof, error) {
		if why == wsauth.ReasonRejected {
			return wsauth.Proof{}, wsauth.ErrCredentialRejected // a static key has nothing fresher to offer
		}
		hs.AddSecret(apiKey) // scrubbed from every error, event and log line
		hs.Header.Set("X-Api-Key", apiKey)
		return wsauth.Proof{}, nil // a header credential: the server answers 401 or 403 before the upgrade
	})
	// end snippet
	return auth
}

func TestReadmeCustomProvider(t *testing.T) {
	var handshakes atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handshakes.Add(1)
		if r.Header.Get("X-Api-Key") != "key-of-the-good-bot" {
			http.Error(w, "bad key: "+r.Header.Get("X-Api-Key"), http.StatusUnauthorized) // a careless server quotes it
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, msg, err := ws.Read(r.Context())
			if err != nil || ws.Write(r.Context(), typ, msg) != nil {
				return
			}
		}
	}))
	t.Cleanup(app.Close)
	url := "ws" + strings.TrimPrefix(app.URL, "http")

	c := clienttest.Connected(t, url, &wsauth.Options{Auth: apiKeyAuth("key-of-the-good-bot")})
	require.Equal(t, "hi", clienttest.Ask(t, c, "hi"))
	require.NoError(t, c.Close())

	handshakes.Store(0)
	rec := clienttest.NewRecorder()
	bad := clienttest.Started(t, url, &wsauth.Options{Auth: apiKeyAuth("key-of-the-bad-bot"), OnEvent: rec.On,
		Reconnect: wsauth.ReconnectPolicy{Backoff: quick()}})
	clienttest.WaitDone(t, bad)
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, bad.Err(), &gu)
	require.Equal(t, "authentication", gu.Why)
	require.Equal(t, int32(1), handshakes.Load(), "the refused key was offered once")
	require.NoError(t, bad.Close())
	for _, e := range rec.All() {
		require.NotContains(t, e.String(), "key-of-the-bad-bot")
	}
	require.NotContains(t, bad.Err().Error(), "key-of-the-bad-bot")
}

func classifyOptions(auth wsauth.Authenticator) *wsauth.Options {
	// snippet: readme-classify
	opts := &wsauth.Options{
		Auth: auth,
		Reconnect: wsauth.ReconnectPolicy{
			MaxAuthFailures: 3, // refusals before the client gives up; default 5
			Classify: func(e wsauth.Ending) wsauth.Action {
				if e.Code == 4000 { // this service's "you are banned"
					return wsauth.ActionStop
				}
				return wsauth.ActionDefault // DefaultClassify decides the rest
			},
		},
	}
	// end snippet
	return opts
}

func TestReadmeClassify(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	c := clienttest.Connected(t, srv.URL(), classifyOptions(&wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}))
	require.Equal(t, "ping", clienttest.Ask(t, c, "ping")) // the server has registered the connection
	require.Equal(t, 1, srv.CloseAll(4000, "banned"))
	clienttest.WaitDone(t, c)
	var gu *wsauth.GaveUpError
	require.ErrorAs(t, c.Err(), &gu)
	require.Equal(t, "policy", gu.Why)
	require.Equal(t, wsauth.StatusCode(4000), gu.Code)
}

func resendOptions(auth wsauth.Authenticator, unacked func() [][]byte) *wsauth.Options {
	opts := &wsauth.Options{
		Auth: auth,
		// snippet: readme-onconnect
		OnConnect: func(ctx context.Context, s *wsauth.Session) error {
			for _, m := range unacked() { // what the server has not confirmed yet
				if err := s.Send(ctx, wsauth.MessageText, m); err != nil {
					return err // ends this connection; the client tries again
				}
			}
			return nil
		},
		// end snippet
	}
	return opts
}

func TestReadmeOnConnect(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	opts := resendOptions(&wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		func() [][]byte { return [][]byte{[]byte("order 17")} })
	opts.Reconnect.Backoff = quick()
	c := clienttest.Connected(t, srv.URL(), opts)
	require.Equal(t, "order 17", clienttest.ReceiveText(t, c))
	require.Equal(t, 1, srv.CloseAll(websocket.StatusServiceRestart, "restarting"))
	require.Equal(t, "order 17", clienttest.ReceiveText(t, c), "sent again on the new connection")
}

// placeOrder sends an order that must not be lost without the
// application knowing; lookUp asks the service whether it arrived.
func placeOrder(ctx context.Context, c *wsauth.Client, order []byte, lookUp func(context.Context, []byte) error) error {
	// snippet: readme-send-confirmed
	switch err := c.SendConfirmed(ctx, wsauth.MessageText, order); {
	case err == nil: // the server has read it
	case errors.Is(err, wsauth.ErrUnconfirmed):
		return lookUp(ctx, order) // written, then the connection ended: it may or may not have arrived
	default:
		return err
	}
	// end snippet
	return nil
}

func TestReadmeSendConfirmed(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	px := srv.Proxy()
	c := clienttest.Connected(t, px.URL(), &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		Liveness:  wsauth.Liveness{PingInterval: -1, PongTimeout: 300 * time.Millisecond},
		Reconnect: wsauth.ReconnectPolicy{Backoff: quick()},
	})
	var looked atomic.Int32
	lookUp := func(context.Context, []byte) error { looked.Add(1); return nil }
	require.NoError(t, placeOrder(clienttest.Ctx(t), c, []byte("order 17"), lookUp))
	require.Equal(t, "order 17", clienttest.ReceiveText(t, c))
	require.Zero(t, looked.Load(), "confirmed: nothing to look up")

	px.Blackhole(true) // the pong never comes back
	require.NoError(t, placeOrder(clienttest.Ctx(t), c, []byte("order 18"), lookUp))
	require.Equal(t, int32(1), looked.Load(), "unconfirmed: looked up")
}

func unconfirmedOptions(auth wsauth.Authenticator, resend func([]wsauth.Frame)) *wsauth.Options {
	// snippet: readme-unconfirmed
	opts := &wsauth.Options{
		Auth:   auth,
		Limits: wsauth.Limits{KeepUnconfirmed: 256}, // copies of up to 256 sends until the server confirms them
		OnEvent: func(e wsauth.Event) {
			if e.Kind == wsauth.EventUnconfirmed {
				resend(e.Frames) // copies of the sends that may or may not have arrived, oldest first
			}
		},
	}
	// end snippet
	return opts
}

func TestReadmeUnconfirmed(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	px := srv.Proxy()
	frames := make(chan []wsauth.Frame, 4)
	opts := unconfirmedOptions(&wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)},
		func(f []wsauth.Frame) { frames <- f })
	opts.Liveness = wsauth.Liveness{PingInterval: 100 * time.Millisecond, PongTimeout: 300 * time.Millisecond}
	opts.Reconnect.Backoff = quick()
	c := clienttest.Connected(t, px.URL(), opts)
	px.Blackhole(true) // written, never read: the background confirmation fails
	require.NoError(t, c.SendText(clienttest.Ctx(t), "tick 1"))
	select {
	case f := <-frames:
		require.Equal(t, []wsauth.Frame{{Type: wsauth.MessageText, Data: []byte("tick 1")}}, f)
	case <-time.After(clienttest.WaitLong):
		t.Fatal("no EventUnconfirmed")
	}
}

func receiveLoop(ctx context.Context, c *wsauth.Client, handle func(wsauth.MessageType, []byte)) error {
	// snippet: readme-receive-into
	buf := make([]byte, 0, 4096)
	for {
		typ, msg, err := c.ReceiveInto(ctx, buf) // msg may share buf's array: handle it before the next call
		if err != nil {
			return err
		}
		handle(typ, msg)
		buf = msg // keeps the capacity, grown for a larger message
	}
	// end snippet
}

func TestReadmeReceiveInto(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	c := clienttest.Connected(t, srv.URL(), &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}})
	big := strings.Repeat("x", 10000) // larger than the buffer
	for _, m := range []string{"one", big, "three"} {
		require.NoError(t, c.SendText(clienttest.Ctx(t), m))
	}
	ctx, cancel := context.WithCancel(clienttest.Ctx(t))
	var got []string
	err := receiveLoop(ctx, c, func(_ wsauth.MessageType, msg []byte) {
		got = append(got, string(msg))
		if len(got) == 3 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []string{"one", big, "three"}, got)
}

func renewalOptions(auth wsauth.Authenticator, onEvent func(wsauth.Event)) *wsauth.Options {
	opts := &wsauth.Options{
		Auth:    auth,
		OnEvent: onEvent,
		// snippet: readme-renewal
		Renewal: wsauth.RenewalPolicy{
			Strategy: wsauth.RenewRotate, // make-before-break, for a server without a refresh message
			Lead:     30 * time.Second,   // start this long before expiry; default a fifth of the lifetime
		},
		// end snippet
	}
	return opts
}

func TestReadmeRenewal(t *testing.T) {
	srv := wsauthtest.NewServer(t, wsauthtest.WithConfig(func(c *server.Config) { c.SessionTTL = 4 * time.Second }))
	rec := clienttest.NewRecorder()
	c := clienttest.Connected(t, srv.URL(), renewalOptions(&wsauth.HeaderAuth{Tokens: srv.TokenSource(wsauthtest.Alice, time.Hour)}, rec.On))
	// The lead is capped at half the 4s session: the rotation comes
	// before the server's close at expiry.
	rec.WaitFor(t, 1, clienttest.Kind(wsauth.EventRotated))
	require.Equal(t, "still here", clienttest.Ask(t, c, "still here"))
}

func eventOptions(auth wsauth.Authenticator, w io.Writer, logger *slog.Logger) *wsauth.Options {
	// snippet: readme-events
	opts := &wsauth.Options{
		Auth:    auth,
		OnEvent: func(e wsauth.Event) { fmt.Fprintln(w, "wsauth:", e) }, // in order, on a goroutine of its own
		Logger:  logger,                                                 // the same events as slog records
	}
	// end snippet
	return opts
}

func TestReadmeEvents(t *testing.T) {
	srv := wsauthtest.NewServer(t)
	token := srv.Token(wsauthtest.Alice, time.Hour)
	var lines, logs testkit.Buffer
	c := clienttest.Connected(t, srv.URL(), eventOptions(&wsauth.QueryAuth{Tokens: wsauth.StaticToken(token)}, &lines, testkit.DebugLogger(&logs)))
	require.NoError(t, c.Close()) // delivers every event first
	out := lines.String()
	for _, want := range []string{"wsauth: connecting attempt=1 reason=initial", "wsauth: authenticating attempt=1",
		"wsauth: connected attempt=1", "verdict=explicit", "wsauth: stopped"} {
		require.Contains(t, out, want)
	}
	require.Contains(t, logs.String(), `"msg":"wsauth connected"`)
	require.NotContains(t, out+logs.String(), token)
}

func serveTLS(ctx context.Context, ln net.Listener, hmacKey []byte, certFile, keyFile string) error {
	// snippet: readme-server
	iss, err := server.NewHMACIssuer(hmacKey) // demo tokens; in production, your identity provider's Verifier
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Verifier: iss,
		Handler: server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			who := c.Principal().Subject // only authenticated connections get here
			for {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					return
				}
				if err := c.Write(ctx, typ, append([]byte(who+": "), msg...)); err != nil {
					return
				}
			}
		}),
		AllowedOrigins: []string{"https://app.example.com"}, // exact origins, besides the server's own
	})
	if err != nil {
		return err
	}
	hs := server.NewHTTPServer(srv, nil) // header and idle timeouts, connection caps per IP and in total
	go func() {
		<-ctx.Done()
		srv.Close() // the WebSockets first: http.Server.Shutdown does not know hijacked connections
		hs.Shutdown(context.Background())
	}()
	if err := hs.ServeTLS(ln, certFile, keyFile); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
	// end snippet
}

func TestReadmeServer(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	key := server.RandomKey()
	iss, err := server.NewHMACIssuer(key)
	require.NoError(t, err)
	token, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() { serveErr = serveTLS(ctx, ln, key, certFile, keyFile) })

	c := clienttest.Connected(t, "wss://"+ln.Addr().String()+"/ws", &wsauth.Options{
		Auth:      &wsauth.HeaderAuth{Tokens: wsauth.StaticToken(token)},
		TLSConfig: tlsConfig(pool),
	})
	require.Equal(t, "alice: hello", clienttest.Ask(t, c, "hello"))
	require.NoError(t, c.Close())
	cancel()
	wg.Wait()
	require.NoError(t, serveErr)
}

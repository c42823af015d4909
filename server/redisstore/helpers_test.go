package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/redistest"
	"github.com/wsauth/wsauth/server"
)

// waitLimit bounds every wait; generous, because CI is a busy 2-core machine.
const waitLimit = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// deployment is one Redis and the token issuer that every instance trusts.
type deployment struct {
	rs     *redistest.Server
	issuer *server.HMACIssuer
	// timeout, when set, is the stores' Options.Timeout: a test of
	// atomicity under a burst gives Redis longer than an outage test would.
	timeout time.Duration
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	issuer, err := server.NewHMACIssuer(server.RandomKey())
	require.NoError(t, err)
	return &deployment{rs: redistest.Start(t), issuer: issuer}
}

// client returns a client as ParseURL configures it, closed when the test ends.
func (d *deployment) client(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := ParseURL(d.rs.URL())
	require.NoError(t, err)
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// store returns a Store on a client of its own.
func (d *deployment) store(t *testing.T) *Store {
	return New(d.client(t), &Options{Timeout: d.timeout})
}

// token mints a one-hour token for subject.
func (d *deployment) token(t *testing.T, subject string) string {
	t.Helper()
	tok, err := d.issuer.Issue(subject, time.Hour)
	require.NoError(t, err)
	return tok
}

// instance is one reference server of a deployment, on its own loopback listener and its
// own Redis client, as a separate process would be.
type instance struct {
	srv     *server.Server
	hs      *httptest.Server
	store   *Store
	cluster *Cluster
	synced  chan struct{} // a value after each cluster sync
}

// instance starts a server using the deployment's Redis for everything; rate limits are off
// unless an option turns them on, because the tests dial often from one IP.
func (d *deployment) instance(t *testing.T, opts ...func(*server.Config)) *instance {
	t.Helper()
	in := &instance{store: d.store(t), synced: make(chan struct{}, 16)}
	cfg := server.Config{
		Verifier:      d.issuer,
		Issuer:        d.issuer,
		Handler:       server.Echo(),
		HandshakeRate: -1,
		TicketRate:    -1,
		LoginRate:     -1,
	}
	in.store.Configure(&cfg)
	in.cluster = cfg.Cluster.(*Cluster)
	in.cluster.onSync = func() {
		select {
		case in.synced <- struct{}{}:
		default:
		}
	}
	for _, o := range opts {
		o(&cfg)
	}
	var err error
	in.srv, err = server.New(cfg)
	require.NoError(t, err)
	in.hs = httptest.NewUnstartedServer(in.srv)
	in.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	in.hs.Start()
	// Cleanups run last-registered first: sockets, then listener, then the Redis client.
	t.Cleanup(in.hs.Close)
	t.Cleanup(func() { require.NoError(t, in.srv.Close()) })
	return in
}

// waitSynced waits for the instance's next cluster sync.
func (in *instance) waitSynced(t *testing.T) {
	t.Helper()
	select {
	case <-in.synced:
	case <-time.After(waitLimit):
		t.Fatal("the cluster did not sync")
	}
}

// wsURL is the WebSocket URL with an optional query ("?ticket=…").
func (in *instance) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(in.hs.URL, "http") + "/ws" + query
}

// post sends a request and returns the response, its body read.
func (in *instance) post(t *testing.T, path, contentType, body string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, in.hs.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := in.hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	return resp
}

// ticketResp asks the ticket endpoint for a ticket with token.
func (in *instance) ticketResp(t *testing.T, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, in.hs.URL+"/api/ws-ticket", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := in.hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var tr struct {
		Ticket string `json:"ticket"`
	}
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&tr))
	}
	return resp, tr.Ticket
}

// ticket gets a ticket for token, which must succeed.
func (in *instance) ticket(t *testing.T, token string) string {
	t.Helper()
	resp, ticket := in.ticketResp(t, token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, ticket)
	return ticket
}

// login starts a cookie session with token and returns the response and the cookie.
func (in *instance) login(t *testing.T, token string) (*http.Response, *http.Cookie) {
	t.Helper()
	resp := in.post(t, "/api/login", "application/json", `{"token":"`+token+`"}`, nil)
	for _, ck := range resp.Cookies() {
		if ck.Name == "wsauth_session" {
			return resp, ck
		}
	}
	return resp, nil
}

// logout ends the session of ck.
func (in *instance) logout(t *testing.T, ck *http.Cookie) *http.Response {
	t.Helper()
	return in.post(t, "/api/logout", "", "", http.Header{"Cookie": {ck.Name + "=" + ck.Value}})
}

// cookieOpts sends the session cookie on the handshake.
func (in *instance) cookieOpts(ck *http.Cookie) *websocket.DialOptions {
	// The instance's own origin, as a page it served would send: the server
	// refuses cookie handshakes without one.
	return &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "Origin": {in.hs.URL}}}
}

// headerOpts sends the token in an Authorization header.
func headerOpts(token string) *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}}
}

// dial opens a WebSocket, closed when the test ends.
func dial(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	c, resp, err := websocket.Dial(ctxT(t), url, opts)
	if c != nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, resp, err
}

// authed dials and requires the auth_ok that starts every authenticated connection.
func authed(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, _, err := dial(t, url, opts)
	require.NoError(t, err)
	require.Equal(t, "auth_ok", readType(t, c))
	return c
}

// refusedStatus dials and requires the handshake to be refused with status.
func refusedStatus(t *testing.T, url string, opts *websocket.DialOptions, status int) *http.Response {
	t.Helper()
	c, resp, err := dial(t, url, opts)
	require.Error(t, err)
	require.Nil(t, c)
	require.NotNil(t, resp)
	require.Equal(t, status, resp.StatusCode)
	return resp
}

// readType reads a server message and returns its type.
func readType(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	var m struct {
		Type string `json:"type"`
	}
	require.NoError(t, json.Unmarshal(data, &m), "message %q", data)
	return m.Type
}

// requireClose reads until the connection ends and requires the close frame to be code and
// reason.
func requireClose(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	ctx := ctxT(t)
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
		require.Equal(t, code, ce.Code, "close reason %q", ce.Reason)
		require.Equal(t, reason, ce.Reason)
		return
	}
}

// requireRefused requires the connection's first frame to be a close with code and reason.
func requireRefused(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	typ, data, err := c.Read(ctxT(t))
	require.Error(t, err, "a refused connection got a %v message %q", typ, data)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	require.Equal(t, code, ce.Code, "close reason %q", ce.Reason)
	require.Equal(t, reason, ce.Reason)
}

// echo sends text and requires it back.
func echo(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte(text)))
	_, data, err := c.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, text, string(data))
}

// keys returns every key in Redis.
func (d *deployment) keys(t *testing.T) []string {
	t.Helper()
	c := d.rs.Client(t)
	keys, err := c.Keys(ctxT(t), "*").Result()
	require.NoError(t, err)
	return keys
}

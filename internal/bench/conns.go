package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// receiverInto is the allocation-free receive the client is getting:
// the next message read into buf's capacity, returned as buf[:n]. The
// command compiles against a client without it and reports "n/a".
type receiverInto interface {
	ReceiveInto(ctx context.Context, buf []byte) (wsauth.MessageType, []byte, error)
}

// hasReceiveInto reports whether this build's client has ReceiveInto.
func hasReceiveInto() bool {
	_, ok := any((*wsauth.Client)(nil)).(receiverInto)
	return ok
}

// endpoint is one client connection as the hot-path loops use it: the
// same two calls for each implementation, so that the loop around them
// costs all of them the same.
type endpoint interface {
	send(ctx context.Context, p []byte) error
	// recv reads one message and drops it.
	recv(ctx context.Context) error
	close()
}

type rawEndpoint struct{ ws *websocket.Conn }

func (e rawEndpoint) send(ctx context.Context, p []byte) error {
	return e.ws.Write(ctx, websocket.MessageBinary, p)
}

func (e rawEndpoint) recv(ctx context.Context) error {
	_, _, err := e.ws.Read(ctx)
	return err
}

func (e rawEndpoint) close() { _ = e.ws.CloseNow() }

type wsauthEndpoint struct{ c *wsauth.Client }

func (e wsauthEndpoint) send(ctx context.Context, p []byte) error {
	return e.c.Send(ctx, wsauth.MessageBinary, p)
}

func (e wsauthEndpoint) recv(ctx context.Context) error {
	_, _, err := e.c.Receive(ctx)
	return err
}

func (e wsauthEndpoint) close() { _ = e.c.Close() }

// intoEndpoint receives with ReceiveInto into one buffer it keeps.
type intoEndpoint struct {
	wsauthEndpoint
	r   receiverInto
	buf []byte
}

func (e *intoEndpoint) recv(ctx context.Context) error {
	_, b, err := e.r.ReceiveInto(ctx, e.buf[:0])
	if cap(b) > cap(e.buf) {
		e.buf = b[:0]
	}
	return err
}

// tokens mints bearer tokens with the run's key.
type tokens struct{ issuer *server.HMACIssuer }

// newTokens returns the run's minter, from the key in the environment.
func newTokens() (tokens, error) {
	iss, err := issuerFromEnv()
	return tokens{iss}, err
}

// tokenTTL outlives any run, so that no renewal happens while measuring.
const tokenTTL = 24 * time.Hour

func (t tokens) mint() (string, error) { return t.issuer.Issue("bench", tokenTTL) }

// Token implements oauth2.TokenSource: a fresh token on every call, for a
// client that must not be handed the token a server refused.
func (t tokens) Token() (*oauth2.Token, error) {
	s, err := t.mint()
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: s, TokenType: "Bearer", Expiry: time.Now().Add(tokenTTL)}, nil
}

// static is a token source with one token: what HeaderAuth gets in most
// applications.
func (t tokens) static() (oauth2.TokenSource, error) {
	tok, err := t.Token()
	if err != nil {
		return nil, err
	}
	return oauth2.StaticTokenSource(tok), nil
}

// rawDial opens a coder/websocket connection with "Authorization: Bearer".
// hc nil means coder's default (http.DefaultClient).
func rawDial(ctx context.Context, url, token string, hc *http.Client) (*websocket.Conn, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(-1)
	return ws, nil
}

// wsauthOptions are the client's defaults plus header authentication; the
// read limit grows only for messages over its default (1 MiB).
func wsauthOptions(ts oauth2.TokenSource, size int) *wsauth.Options {
	o := &wsauth.Options{Auth: &wsauth.HeaderAuth{Tokens: ts}}
	if size > 1<<20 {
		o.Limits.ReadLimit = int64(size)
	}
	return o
}

// dialEndpoint opens one connection of impl.
func dialEndpoint(ctx context.Context, impl, url string, t tokens, size int) (endpoint, error) {
	switch impl {
	case implRaw:
		tok, err := t.mint()
		if err != nil {
			return nil, err
		}
		ws, err := rawDial(ctx, url, tok, nil)
		if err != nil {
			return nil, err
		}
		return rawEndpoint{ws}, nil
	case implWS, implWSInt:
		ts, err := t.static()
		if err != nil {
			return nil, err
		}
		c, err := wsauth.Dial(ctx, url, wsauthOptions(ts, size))
		if err != nil {
			return nil, err
		}
		if impl == implWS {
			return wsauthEndpoint{c}, nil
		}
		r, ok := any(c).(receiverInto)
		if !ok {
			_ = c.Close()
			return nil, errNoReceiveInto
		}
		return &intoEndpoint{wsauthEndpoint: wsauthEndpoint{c}, r: r, buf: make([]byte, 0, max(size, 512))}, nil
	}
	return nil, fmt.Errorf("unknown implementation %q", impl)
}

var errNoReceiveInto = fmt.Errorf("wsauth.Client has no ReceiveInto in this build")

// perAddr is how many fleet connections share a source address: well
// below the 28,000 ephemeral ports of one, since the ports of closed
// connections stay in TIME_WAIT for a minute and an explicit bind never
// reuses them.
const perAddr = 5000

// sourceAddr spreads connection i over 127.0.0.2 and up, perAddr each.
func sourceAddr(i int) *net.TCPAddr {
	n := 2 + i/perAddr
	return &net.TCPAddr{IP: net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))}
}

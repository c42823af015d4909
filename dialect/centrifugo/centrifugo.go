// Package centrifugo is the wsauth dialect of the JSON client protocol of
// Centrifugo v5 and later and of servers built on the centrifuge Go
// library (https://centrifugal.dev/docs/transports/client_protocol, error and
// disconnect codes from https://centrifugal.dev/docs/server/codes):
//
//	client  {"id":2147483649,"connect":{"token":"…"}}
//	server  {"id":2147483649,"connect":{"client":"…","version":"…","expires":true,"ttl":300}}
//	    or  {"id":2147483649,"error":{"code":109,"message":"token expired"}}
//	client  {"id":2147483650,"refresh":{"token":"…"}}                  before the ttl ends
//	server  {"id":2147483650,"refresh":{"expires":true,"ttl":300}}       or an error reply
//	server  {}    a ping, answered with {}
//
// The connect command is always sent, with the in-band token when there is
// one (wsauth.FirstMessageAuth) and without when the credential rode the
// handshake (a connect proxy reading headers or cookies). The ttl of the
// connect and refresh replies is the session lifetime: the client sends
// the refresh command with a fresh token ahead of it, and falls back to a
// reconnect when the refresh is refused. An error reply to connect is a
// refusal (a *wsauth.AuthError wrapping an *Error: the token is never
// offered again) unless the error is temporary (100 internal, 111 too many
// requests, or "temporary":true), which is retried with backoff.
//
// The server may batch several replies and pushes in one frame, one JSON
// object a line; the dialect splits frames (wsauth.FrameSplitter), so a
// ping or a refresh answer batched with publications is still answered,
// and every reply or push reaches Receive as a message of its own. See
// ReservedIDs for the command ids the application must not use.
//
// Disconnect codes (the close code of the WebSocket), as the client reads
// them:
//
//	3005 connection expired            reauth: a fresh token (the session ran out unrefreshed)
//	3500 invalid token                 reauth: a fresh token
//	3000-3499 (others)                 retry with backoff (shutdown, server error, slow, no pong, …)
//	3501-3999 (others)                 stop: Centrifugo's terminal codes (bad request, stale,
//	                                   force disconnect, connection limit, permission denied, …)
//	4000-4499                          retry (application codes, "reconnect" range)
//	4500-4999                          stop (application codes, "terminal" range)
//	anything else                      the client's table
//
// Out of scope: the Protobuf format (binary frames), the deprecated
// protocol v1, subscriptions and their tokens (subscribe, sub_refresh: the
// application's, on its own command ids), message recovery, the
// connect-reply's ping/pong settings (pings are always answered), and
// server pushes of a new token (push "refresh", for unidirectional
// transports), which reach Receive as data.
//
//	c, err := wsauth.Dial(ctx, "wss://centrifugo.example.com/connection/websocket", &wsauth.Options{
//		Auth:    &wsauth.FirstMessageAuth{Tokens: tokens}, // connection JWTs
//		Dialect: &centrifugo.Dialect{ClientName: "my-bot"},
//	})
package centrifugo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wire"
)

// ReservedIDs is the first command id the dialect uses for its own
// commands (connect and refresh): ids from 2147483648 to
// 4294967295, the top half of the protocol's uint32 range. Applications
// number their commands (subscribe, publish, rpc, …) from 1 to 2147483647;
// replies to ids in the reserved range are consumed by the client.
const ReservedIDs uint32 = 1 << 31

// Dialect speaks Centrifugo's JSON client protocol; see the package
// documentation. A Dialect must not be copied after first use; its zero
// value is ready and one value may serve many clients.
type Dialect struct {
	// ClientName is sent as the client name with connect; Centrifugo uses
	// it for analytics and keeps at most 16 characters. Default none.
	ClientName string
	// ClientVersion is sent as the application version with connect (at
	// most 64 characters). Default none.
	ClientVersion string

	ids atomic.Uint32
}

// Error is an error reply of the Centrifugo client protocol.
type Error struct {
	Code      uint32 `json:"code"`
	Message   string `json:"message"`
	Temporary bool   `json:"temporary,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("centrifugo error %d (%s)", e.Code, e.Message)
}

// Centrifugo error codes the dialect treats specially.
const (
	codeInternal        = 100
	codeTooManyRequests = 111
)

func (d *Dialect) nextID() uint32 {
	return ReservedIDs | (d.ids.Add(1) &^ ReservedIDs)
}

type centCommand struct {
	ID      uint32          `json:"id"`
	Connect *centConnectReq `json:"connect,omitempty"`
	Refresh *centRefreshReq `json:"refresh,omitempty"`
}

type centConnectReq struct {
	Token   string `json:"token,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

type centRefreshReq struct {
	Token string `json:"token"`
}

type centReply struct {
	ID      uint32      `json:"id"`
	Error   *Error      `json:"error"`
	Connect *centResult `json:"connect"`
	Refresh *centResult `json:"refresh"`
}

type centResult struct {
	Expires bool    `json:"expires"`
	TTL     float64 `json:"ttl"`
}

func (r *centResult) lifetime() time.Duration {
	if r == nil || !r.Expires {
		return 0
	}
	return wire.Seconds(&r.TTL)
}

var centPong = []byte(`{}`)

// Open implements wsauth.Dialect: it sends the connect command and waits for its
// reply, answering pings meanwhile.
func (d *Dialect) Open(ctx context.Context, conn wsauth.Conn, proof wsauth.Proof) (wsauth.Opened, error) {
	token := proof.InBand
	id := d.nextID()
	cmd, err := json.Marshal(centCommand{ID: id, Connect: &centConnectReq{Token: token, Name: d.ClientName, Version: d.ClientVersion}})
	if err != nil {
		return wsauth.Opened{}, err
	}
	if err := conn.Write(ctx, wsauth.MessageText, cmd); err != nil {
		return wsauth.Opened{}, err
	}
	opened := wsauth.Opened{Verdict: wsauth.VerdictExplicit}
	done := false
	for !done {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return wsauth.Opened{}, err
		}
		if typ != wsauth.MessageText {
			return wsauth.Opened{}, errors.New("wsauth: centrifugo: binary frame: the dialect speaks the JSON protocol only")
		}
		for _, line := range splitLines(data) {
			if done {
				opened.Pending = append(opened.Pending, line)
				continue
			}
			if isCentPing(line) {
				if err := conn.Write(ctx, wsauth.MessageText, centPong); err != nil {
					return wsauth.Opened{}, err
				}
				continue
			}
			var r centReply
			if json.Unmarshal(line, &r) != nil || r.ID != id {
				// Not the connect reply: kept, in order, for after Open.
				opened.Pending = append(opened.Pending, line)
				continue
			}
			switch {
			case r.Error != nil:
				return wsauth.Opened{}, connectRefusal(r.Error)
			case r.Connect == nil:
				return wsauth.Opened{}, errors.New("wsauth: centrifugo: the reply to connect has neither a result nor an error")
			}
			opened.ExpiresIn = r.Connect.lifetime()
			done = true
		}
	}
	return opened, nil
}

// connectRefusal turns an error reply to connect into the client's terms:
// temporary errors are retried, all others refuse the credential.
func connectRefusal(ce *Error) error {
	if ce.Temporary || ce.Code == codeInternal || ce.Code == codeTooManyRequests {
		return fmt.Errorf("wsauth: centrifugo connect failed: %w", ce)
	}
	return fmt.Errorf("%w: %w", &wsauth.AuthError{}, ce)
}

// RefreshMessage implements wsauth.Refresher.
func (d *Dialect) RefreshMessage(token string) ([]byte, error) {
	return json.Marshal(centCommand{ID: d.nextID(), Refresh: &centRefreshReq{Token: token}})
}

// SplitFrame implements wsauth.FrameSplitter: one JSON object a line.
func (d *Dialect) SplitFrame(typ wsauth.MessageType, data []byte) [][]byte {
	if typ != wsauth.MessageText || bytes.IndexByte(data, '\n') < 0 {
		return [][]byte{data}
	}
	return splitLines(data)
}

func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out
}

func isCentPing(line []byte) bool { return bytes.Equal(bytes.TrimSpace(line), centPong) }

// maxControl bounds the replies parsed for their id: the
// client's own replies are small, application replies need not be decoded.
const maxControl = 4096

var centControl = [][]byte{[]byte(`"refresh"`), []byte(`"error"`), []byte(`"connect"`)}

// Inspect implements wsauth.Dialect.
func (d *Dialect) Inspect(typ wsauth.MessageType, data []byte) wsauth.Inbound {
	if typ != wsauth.MessageText {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	if isCentPing(data) {
		return wsauth.Inbound{Kind: wsauth.InboundReply, Reply: centPong}
	}
	if len(data) > maxControl || !bytes.Contains(data, []byte(`"id"`)) {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	hit := false
	for _, n := range centControl {
		hit = hit || bytes.Contains(data, n)
	}
	if !hit {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	var r centReply
	if json.Unmarshal(data, &r) != nil || r.ID < ReservedIDs {
		return wsauth.Inbound{Kind: wsauth.InboundData}
	}
	switch {
	case r.Error != nil:
		return wsauth.Inbound{Kind: wsauth.InboundRefreshFailed, Message: r.Error.Error()}
	case r.Refresh != nil:
		return wsauth.Inbound{Kind: wsauth.InboundRefreshOK, ExpiresIn: r.Refresh.lifetime()}
	}
	// A late reply to one of the client's own commands.
	return wsauth.Inbound{Kind: wsauth.InboundIgnore}
}

// Centrifugo disconnect codes the dialect treats specially.
const (
	connectionExpired wsauth.StatusCode = 3005
	invalidToken      wsauth.StatusCode = 3500
)

// ClassifyClose implements wsauth.CloseClassifier; the table is in the
// package documentation.
func (d *Dialect) ClassifyClose(code wsauth.StatusCode, _ string) wsauth.Action {
	switch {
	case code == connectionExpired, code == invalidToken:
		return wsauth.ActionReauth
	case code >= 3000 && code < 3500, code >= 4000 && code < 4500:
		return wsauth.ActionRetry
	case code >= 3500 && code < 4000, code >= 4500 && code < 5000:
		return wsauth.ActionStop
	}
	return wsauth.ActionDefault
}

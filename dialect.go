package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/wsauth/wsauth/internal/wire"
)

// Dialect is a service's authentication protocol: what is exchanged after
// the upgrade, and how the server's messages read. DefaultDialect speaks
// the wsauth protocol of the reference server (docs/protocol.md) and
// PlainDialect no protocol at all; the packages under dialect/ speak
// those of Home Assistant, graphql-ws, Centrifugo and Slack Socket Mode.
//
// The required part is small. A dialect may also implement Refresher
// (in-band refresh), CloseClassifier (its close codes),
// SubprotocolProvider (subprotocols it needs offered) and FrameSplitter
// (several messages in one frame); the client discovers them with a type
// assertion. A Dialect is shared by every connection of a client and must
// be safe for concurrent use.
type Dialect interface {
	// Open runs right after the upgrade, with the attempt's proof in hand.
	// With an in-band token (proof.InBand) it proves identity (the
	// first-message pattern); without, it does whatever the protocol needs
	// before application messages flow, which is often nothing. It must
	// return when ctx ends. A refusal is an error: the server's close, as
	// Conn reports it (a *CloseError), or an *AuthError. Its Opened says
	// whether the server confirmed (see Verdict).
	Open(ctx context.Context, conn Conn, proof Proof) (Opened, error)
	// Inspect reads one server message after Open.
	Inspect(typ MessageType, data []byte) Inbound
}

// Refresher is implemented by a Dialect whose protocol extends a session
// in place: RefreshMessage returns the text message that does so with a
// fresh token. The answer comes back through Inspect (InboundRefreshOK or
// InboundRefreshFailed). Without it, sessions are renewed by reconnecting.
type Refresher interface {
	RefreshMessage(token string) ([]byte, error)
}

// CloseClassifier is implemented by a Dialect whose protocol gives close
// codes a meaning of its own: ClassifyClose says what the server's close
// means (ActionDefault when the protocol says nothing of it). The client
// puts the answer in Ending.CloseMeaning, which DefaultClassify follows.
type CloseClassifier interface {
	ClassifyClose(code StatusCode, reason string) Action
}

// SubprotocolProvider is implemented by a Dialect that needs subprotocols
// offered on the handshake, ahead of Options.Subprotocols.
type SubprotocolProvider interface {
	Subprotocols() []string
}

// FrameSplitter is implemented by a Dialect whose server may put several
// messages in one WebSocket frame (Centrifugo's JSON protocol joins them
// with newlines). The client then inspects, answers and delivers each part
// on its own, so that a keepalive or a refresh answer batched with
// application data is not mistaken for data.
type FrameSplitter interface {
	// SplitFrame returns the messages of one frame, in order; it may
	// return data itself as the only part.
	SplitFrame(typ MessageType, data []byte) [][]byte
}

// Conn is what a Dialect and a provider's in-band exchange see of one
// physical connection while it is being authenticated, before the client's
// own reader takes it over. Read with a context that ends closes the
// connection (a coder/websocket rule), which is what an auth deadline
// wants. A close from the server reads as a *CloseError.
type Conn interface {
	Read(ctx context.Context) (MessageType, []byte, error)
	Write(ctx context.Context, typ MessageType, p []byte) error
	// Subprotocol is the subprotocol the server selected, "" for none.
	Subprotocol() string
}

// Opened is what a dialect learned while opening a connection.
type Opened struct {
	// Verdict is VerdictExplicit when the exchange ended with the server's
	// confirmation, VerdictHandshake when the protocol takes the upgrade as
	// the verdict, and VerdictPending (the zero value) when the client is to
	// decide by its own rule (see VerdictPending).
	Verdict Verdict
	// ExpiresIn is the session lifetime the server reported, 0 if it did
	// not say.
	ExpiresIn time.Duration
	// Pending are text messages Open read that belong after the exchange:
	// a server that batches several messages in one frame can send the
	// verdict and the first application messages together. The client
	// inspects and delivers them, in order, before anything it reads
	// itself. Default none.
	Pending [][]byte
}

// InboundKind says what a server message means to the client.
type InboundKind int

// The kinds of server message.
const (
	// InboundData is an application message: it is delivered by Receive.
	InboundData InboundKind = iota
	// InboundRefreshOK answers a refresh: the session now lasts ExpiresIn
	// (0 if the server did not say).
	InboundRefreshOK
	// InboundRefreshFailed answers a refresh with a refusal.
	InboundRefreshFailed
	// InboundExpiring says the session ends in ExpiresIn: an expiry notice,
	// or the lifetime the server confirms after authentication.
	InboundExpiring
	// InboundGoingAway asks the client to move to a new connection.
	InboundGoingAway
	// InboundReply is a keepalive: the client writes Reply and drops the
	// message.
	InboundReply
	// InboundIgnore is a protocol message with nothing to do.
	InboundIgnore
	// InboundAuthOK is the server's confirmation of the authentication
	// (wsauth's auth_ok), with the session's lifetime in ExpiresIn when the
	// server said. While the client waits for a verdict it settles it
	// (VerdictExplicit); later it only updates the expiry.
	InboundAuthOK
)

// Inbound is a dialect's reading of one server message.
type Inbound struct {
	Kind InboundKind
	// ExpiresIn goes with InboundRefreshOK, InboundExpiring and
	// InboundAuthOK.
	ExpiresIn time.Duration
	// Reply goes with InboundReply: a text message to send back.
	Reply []byte
	// Message is the server's explanation for a refusal or going-away.
	Message string
}

// DefaultDialect speaks the wsauth protocol that the reference server
// implements (docs/protocol.md): {"type":"auth","token":…} as the first
// message for an in-band token; {"type":"auth_ok","expires_in":N} as the
// confirmation; {"type":"refresh","token":…} answered by refresh_ok or
// refresh_failed; expiring and going_away notices. Text messages whose
// "type" is one of auth_ok, refresh_ok, refresh_failed, expiring or
// going_away are consumed by the client; applications on this dialect must
// not use those types for their own messages. Servers written by others
// that confirm nothing are met by the verdict rule (see VerdictPending).
var DefaultDialect Dialect = defaultDialect{}

// PlainDialect is for servers with no in-band protocol at all: nothing is
// exchanged after the upgrade, every message is the application's, there
// is no refresh message (sessions are renewed by reconnecting), and the
// upgrade is taken as the verdict even for ticket, query and cookie
// credentials: no waiting at all. DefaultDialect already connects to
// servers that confirm nothing (see VerdictPending); PlainDialect is for an
// application that cannot spare the verdict window, or whose messages
// collide with the wsauth protocol's types. A server that refuses after
// the upgrade is then seen closing right after the connection is reported
// up.
var PlainDialect Dialect = plainDialect{}

type plainDialect struct{}

func (plainDialect) Open(_ context.Context, _ Conn, proof Proof) (Opened, error) {
	if proof.InBand != "" {
		return Opened{}, errors.New("wsauth: the plain dialect has no auth message; FirstMessageAuth needs a dialect that has one")
	}
	return Opened{Verdict: VerdictHandshake}, nil
}

func (plainDialect) Inspect(MessageType, []byte) Inbound { return Inbound{Kind: InboundData} }

type defaultDialect struct{}

type typedMessage struct {
	Type      string   `json:"type"`
	Token     string   `json:"token,omitempty"`
	ExpiresIn *float64 `json:"expires_in,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// Open sends the auth message when the token goes in band, and leaves the
// verdict to the client: the reference server confirms with auth_ok, which
// Inspect recognises, and servers written by others confirm nothing (they
// serve, or close 1008).
func (defaultDialect) Open(ctx context.Context, conn Conn, proof Proof) (Opened, error) {
	if proof.InBand == "" {
		return Opened{}, nil
	}
	msg, err := json.Marshal(typedMessage{Type: "auth", Token: proof.InBand})
	if err != nil {
		return Opened{}, err
	}
	return Opened{}, conn.Write(ctx, MessageText, msg)
}

func (defaultDialect) RefreshMessage(token string) ([]byte, error) {
	return json.Marshal(typedMessage{Type: "refresh", Token: token})
}

// controlTypes are the message types the default dialect consumes, as they
// appear on the wire; a message that contains none of them is passed to the
// application without being parsed.
var controlTypes = [][]byte{
	[]byte(`"refresh_ok"`), []byte(`"refresh_failed"`), []byte(`"expiring"`),
	[]byte(`"going_away"`), []byte(`"auth_ok"`),
}

func (defaultDialect) Inspect(typ MessageType, data []byte) Inbound {
	if typ != MessageText || len(data) > wire.MaxControlSize || !wire.MentionsAny(data, controlTypes...) {
		return Inbound{Kind: InboundData}
	}
	var m typedMessage
	if json.Unmarshal(data, &m) != nil {
		return Inbound{Kind: InboundData}
	}
	switch m.Type {
	case "refresh_ok":
		return Inbound{Kind: InboundRefreshOK, ExpiresIn: wire.Seconds(m.ExpiresIn)}
	case "refresh_failed":
		return Inbound{Kind: InboundRefreshFailed, Message: m.Reason}
	case "expiring":
		return Inbound{Kind: InboundExpiring, ExpiresIn: wire.Seconds(m.ExpiresIn)}
	case "going_away":
		return Inbound{Kind: InboundGoingAway, Message: m.Reason}
	case "auth_ok":
		return Inbound{Kind: InboundAuthOK, ExpiresIn: wire.Seconds(m.ExpiresIn)}
	}
	return Inbound{Kind: InboundData}
}

// wsConn adapts a coder/websocket connection to Conn.
type wsConn struct{ c rawConn }

// rawConn is the part of *websocket.Conn the client uses; an interface so
// that the dialect tests can run against an in-memory peer.
type rawConn interface {
	Read(ctx context.Context) (MessageType, []byte, error)
	Write(ctx context.Context, typ MessageType, p []byte) error
	Subprotocol() string
}

func (w wsConn) Read(ctx context.Context) (MessageType, []byte, error) {
	typ, p, err := w.c.Read(ctx)
	return typ, p, closeErr(err)
}

func (w wsConn) Write(ctx context.Context, typ MessageType, p []byte) error {
	return closeErr(w.c.Write(ctx, typ, p))
}

func (w wsConn) Subprotocol() string { return w.c.Subprotocol() }

// closeErr turns coder/websocket's close error into the client's CloseError.
func closeErr(err error) error {
	if err == nil {
		return nil
	}
	if code := closeStatus(err); code != -1 {
		return &CloseError{Code: code, Reason: closeReason(err)}
	}
	return err
}

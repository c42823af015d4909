package wsauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Conn is what a Dialect and a provider's in-band exchange see of one
// physical connection while it is being authenticated, before the client's
// own reader takes it over. Read with a context that ends closes the
// connection (a coder/websocket rule), which is what an auth deadline wants.
type Conn interface {
	Read(ctx context.Context) (MessageType, []byte, error)
	Write(ctx context.Context, typ MessageType, p []byte) error
	// Subprotocol is the subprotocol the server selected, "" for none.
	Subprotocol() string
	// Provisional reports that the attempt's credential rode the handshake
	// in a form servers refuse after the upgrade (Proof.Provisional): the
	// server's verdict is still to come, in band.
	Provisional() bool
}

// Verdict says what told the client that a connection was authenticated.
type Verdict int

// The verdicts, from the strongest.
const (
	// VerdictPending, the zero value, is what a dialect's Open returns when
	// its protocol has no confirmation of its own for this connection. The
	// client then decides: a credential refused before the upgrade (header,
	// subprotocol) was accepted by the 101 itself; for one the server may
	// still refuse after the upgrade (ticket, query, cookie, an in-band
	// token) it waits for the first of an explicit confirmation the dialect
	// recognises (InboundAuthOK), the server's first application message, or
	// Options.VerdictWindow without a close.
	VerdictPending Verdict = iota
	// VerdictExplicit: the server confirmed the authentication (wsauth's
	// auth_ok, Home Assistant's auth_ok, graphql-ws connection_ack, the
	// reply to Centrifugo's connect, Slack's hello).
	VerdictExplicit
	// VerdictHandshake: the 101 was the verdict. Servers refuse header and
	// subprotocol credentials with 401 or 403 before the upgrade, and
	// PlainDialect takes every upgrade as accepted.
	VerdictHandshake
	// VerdictFirstMessage: the server's first application message came
	// before any close. The message is delivered to the application.
	VerdictFirstMessage
	// VerdictWindow: Options.VerdictWindow passed after the upgrade without
	// a close. A server that refuses later than that is caught by the
	// late-refusal rule (see Options.VerdictWindow).
	VerdictWindow
)

func (v Verdict) String() string {
	switch v {
	case VerdictPending:
		return "pending"
	case VerdictExplicit:
		return "explicit"
	case VerdictHandshake:
		return "handshake"
	case VerdictFirstMessage:
		return "first-message"
	case VerdictWindow:
		return "window"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
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

// Dialect is the set of message shapes and close codes a service uses for
// authentication. The first-message exchange, the refresher and the close
// classification all consult it. DefaultDialect is the wsauth protocol
// (docs/protocol.md); HomeAssistant, GraphQLWS, Centrifugo and
// SlackSocketMode speak those services' protocols (docs/dialects.md);
// write your own to talk to another service.
//
// A Dialect is shared by every connection of a client and must be safe for
// concurrent use.
type Dialect interface {
	// Name identifies the dialect in events and logs.
	Name() string
	// Subprotocols are offered on the handshake ahead of the application's
	// own (Options.Subprotocols).
	Subprotocols() []string
	// Open runs right after the upgrade. With a non-empty token it proves
	// identity in band (the first-message pattern); with an empty token it
	// does whatever the protocol requires before application messages flow,
	// which is often nothing. It must return when ctx ends. A refusal is an
	// error: the server's close (as the client reports it) or an AuthError.
	Open(ctx context.Context, conn Conn, token string) (Opened, error)
	// RefreshMessage returns the text message that extends the session with
	// token, or ErrRefreshUnsupported.
	RefreshMessage(token string) ([]byte, error)
	// Inspect reads one server message after Open.
	Inspect(typ MessageType, data []byte) Inbound
	// ClassifyClose says what a close code from the server means in this
	// protocol; ActionDefault leaves it to the client's table.
	ClassifyClose(code StatusCode, reason string) Action
}

// DefaultDialect speaks the wsauth protocol that the reference server
// implements: {"type":"auth","token":…} answered by
// {"type":"auth_ok","expires_in":N}; {"type":"refresh","token":…} answered
// by refresh_ok or refresh_failed; expiring and going_away notices. Text
// messages whose "type" is one of auth_ok, refresh_ok, refresh_failed,
// expiring or going_away are consumed by the client; applications on this
// dialect must not use those types for their own messages.
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

func (plainDialect) Name() string           { return "plain" }
func (plainDialect) Subprotocols() []string { return nil }

func (plainDialect) Open(_ context.Context, _ Conn, token string) (Opened, error) {
	if token != "" {
		return Opened{}, errors.New("wsauth: the plain dialect has no auth message; FirstMessageAuth needs a dialect that has one")
	}
	return Opened{Verdict: VerdictHandshake}, nil
}

func (plainDialect) RefreshMessage(string) ([]byte, error)   { return nil, ErrRefreshUnsupported }
func (plainDialect) Inspect(MessageType, []byte) Inbound     { return Inbound{Kind: InboundData} }
func (plainDialect) ClassifyClose(StatusCode, string) Action { return ActionDefault }

// builtinDialects are the dialects known by name, for configuration files
// and the command line.
var builtinDialects = map[string]Dialect{
	DefaultDialect.Name():    DefaultDialect,
	PlainDialect.Name():      PlainDialect,
	HomeAssistant{}.Name():   HomeAssistant{},
	GraphQLWS{}.Name():       GraphQLWS{},
	(&Centrifugo{}).Name():   &Centrifugo{},
	SlackSocketMode{}.Name(): SlackSocketMode{},
}

// DialectNamed returns the built-in dialect called name.
func DialectNamed(name string) (Dialect, bool) {
	d, ok := builtinDialects[name]
	return d, ok
}

// DialectNames lists the names of the built-in dialects, sorted.
func DialectNames() []string {
	names := make([]string, 0, len(builtinDialects))
	for n := range builtinDialects {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type defaultDialect struct{}

func (defaultDialect) Name() string           { return "wsauth" }
func (defaultDialect) Subprotocols() []string { return nil }

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
func (defaultDialect) Open(ctx context.Context, conn Conn, token string) (Opened, error) {
	if token == "" {
		return Opened{}, nil
	}
	msg, err := json.Marshal(typedMessage{Type: "auth", Token: token})
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

// maxControlSize bounds the messages the default dialect parses: control
// messages are small, application payloads need not be decoded.
const maxControlSize = 1024

func (defaultDialect) Inspect(typ MessageType, data []byte) Inbound {
	if typ != MessageText || len(data) > maxControlSize || !mentionsAny(data, controlTypes) {
		return Inbound{Kind: InboundData}
	}
	var m typedMessage
	if json.Unmarshal(data, &m) != nil {
		return Inbound{Kind: InboundData}
	}
	switch m.Type {
	case "refresh_ok":
		return Inbound{Kind: InboundRefreshOK, ExpiresIn: seconds(m.ExpiresIn)}
	case "refresh_failed":
		return Inbound{Kind: InboundRefreshFailed, Message: m.Reason}
	case "expiring":
		return Inbound{Kind: InboundExpiring, ExpiresIn: seconds(m.ExpiresIn)}
	case "going_away":
		return Inbound{Kind: InboundGoingAway, Message: m.Reason}
	case "auth_ok":
		return Inbound{Kind: InboundAuthOK, ExpiresIn: seconds(m.ExpiresIn)}
	}
	return Inbound{Kind: InboundData}
}

func (defaultDialect) ClassifyClose(StatusCode, string) Action { return ActionDefault }

func mentionsAny(data []byte, needles [][]byte) bool {
	if !bytes.Contains(data, []byte(`"type"`)) {
		return false
	}
	for _, n := range needles {
		if bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

// seconds converts a JSON number of seconds; absent, negative or absurd
// values mean "not said".
func seconds(v *float64) time.Duration {
	if v == nil || *v <= 0 || math.IsNaN(*v) || *v > 10*365*24*3600 {
		return 0
	}
	return time.Duration(*v * float64(time.Second))
}

// wsConn adapts a coder/websocket connection to Conn.
type wsConn struct {
	c           rawConn
	provisional bool
}

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

func (w wsConn) Provisional() bool { return w.provisional }

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

package wsauth

import (
	"context"
	"encoding/json"
	"fmt"
)

// SlackSocketMode speaks the connection-level messages of Slack Socket Mode
// (https://api.slack.com/apis/socket-mode): the server's
// {"type":"hello",…} that opens every connection, and its
// {"type":"disconnect","reason":…} notices. Use it with TicketURLAuth,
// which fetches the single-use WebSocket URL from apps.connections.open
// before every connection attempt:
//
//	server  {"type":"hello","num_connections":1,"debug_info":{…},"connection_info":{"app_id":"…"}}
//	server  {"type":"disconnect","reason":"warning",…}            about 10 s before a refresh
//	server  {"type":"disconnect","reason":"refresh_requested",…}  the connection is about to end
//
// Open waits for hello. Every disconnect notice ("warning",
// "refresh_requested", "link_disabled", "too_many_websockets", …) is a
// going-away request: the client opens a new connection with a new URL and
// moves to it before closing the old one (make-before-break), as Slack
// expects, so no event is lost in a gap. A disconnect before hello fails
// the attempt, which is retried with backoff. Everything else — the event
// envelopes (events_api, slash_commands, interactive) — is the
// application's.
//
// Out of scope: acknowledging envelopes ({"envelope_id":…}, with or without
// a payload, within 3 s) is the application's job, as is deduplicating
// the retried deliveries a reconnect can cause; the debug_reconnects URL
// parameter; and approximate_connection_time (Slack's disconnect notice
// arrives in time). Slack's liveness is WebSocket pings, which the client
// answers and sends on its own. Slack has no refresh message and no close
// codes of its own.
type SlackSocketMode struct{}

// Name implements Dialect.
func (SlackSocketMode) Name() string { return "slack" }

// Subprotocols implements Dialect: Socket Mode uses none.
func (SlackSocketMode) Subprotocols() []string { return nil }

type slackMessage struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Open implements Dialect: it waits for hello. The credential is the URL
// itself, so an in-band token, if any, is not sent.
func (SlackSocketMode) Open(ctx context.Context, conn Conn, _ string) (Opened, error) {
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return Opened{}, err
	}
	var m slackMessage
	if typ != MessageText || json.Unmarshal(data, &m) != nil {
		return Opened{}, fmt.Errorf("wsauth: slack: expected hello as the server's first message")
	}
	switch m.Type {
	case "hello":
		return Opened{Verdict: VerdictExplicit}, nil
	case "disconnect":
		return Opened{}, fmt.Errorf("wsauth: slack: the server sent disconnect (%q) instead of hello", m.Reason)
	}
	return Opened{}, fmt.Errorf("wsauth: slack: expected hello as the server's first message, got %q", m.Type)
}

// RefreshMessage implements Dialect: Socket Mode has no refresh.
func (SlackSocketMode) RefreshMessage(string) ([]byte, error) { return nil, ErrRefreshUnsupported }

var slackControl = [][]byte{[]byte(`"disconnect"`), []byte(`"hello"`)}

// Inspect implements Dialect.
func (SlackSocketMode) Inspect(typ MessageType, data []byte) Inbound {
	if typ != MessageText || !mentionsAny(data, slackControl) {
		return Inbound{Kind: InboundData}
	}
	var m slackMessage
	if json.Unmarshal(data, &m) != nil {
		return Inbound{Kind: InboundData}
	}
	switch m.Type {
	case "disconnect":
		return Inbound{Kind: InboundGoingAway, Message: m.Reason}
	case "hello":
		return Inbound{Kind: InboundIgnore}
	}
	return Inbound{Kind: InboundData}
}

// ClassifyClose implements Dialect: Slack documents no close codes, so the
// client's table applies.
func (SlackSocketMode) ClassifyClose(StatusCode, string) Action { return ActionDefault }

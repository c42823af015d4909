// Package wsauth keeps an authenticated WebSocket alive.
//
// A Client owns one logical connection across many physical ones. Before
// every connection attempt it asks its credential provider (an
// Authenticator) for fresh credentials, telling it why (first connect,
// reconnect, session expired, or the last credential was rejected). It
// dials with github.com/coder/websocket, runs the dialect's in-band
// exchange when the credential goes in the first message, refreshes the
// session before it expires, and when the connection drops or the server
// says "policy violation" (close 1008) it reconnects with backoff and with
// fresh credentials, never replaying one the server refused.
//
//	c, err := wsauth.Dial(ctx, "wss://api.example.com/ws", &wsauth.Options{
//		Auth: &wsauth.TicketAuth{
//			Endpoint: "https://api.example.com/api/ws-ticket",
//			Tokens:   tokenSource, // any golang.org/x/oauth2.TokenSource
//		},
//	})
//	if err != nil { … }
//	defer c.Close()
//	err = c.SendText(ctx, "hello")
//	typ, msg, err := c.Receive(ctx)
//
// # Credential providers
//
// The HTTP upgrade is the only HTTP request of a WebSocket's life. The
// built-in providers cover the patterns servers use:
//
//	TicketAuth        POST a ticket endpoint with a bearer token, dial with ?ticket=…  (recommended)
//	QueryAuth         the token itself in ?token=…                              (short-lived tokens only)
//	FirstMessageAuth  upgrade unauthenticated, send {"type":"auth","token":…} first
//	CookieAuth        a session cookie from a jar, filled by a login call; sets Origin
//	HeaderAuth        Authorization: Bearer … on the handshake                  (not possible in browsers)
//	SubprotocolAuth   the token in Sec-WebSocket-Protocol, Kubernetes-style     (not possible in browsers)
//
// Servers refuse ticket, query and cookie credentials after the upgrade,
// with a close frame a browser can read, so for those the 101 is no
// verdict: DefaultDialect waits for the server's auth_ok before anything of
// the application flows. PlainDialect is for servers that confirm nothing.
//
// Tokens come from golang.org/x/oauth2 token sources, cached by a
// TokenCache that refetches shortly before expiry, fetches once at a time,
// and never hands out a token the server rejected. Providers refuse to send
// a credential over plain ws:// or http:// to a host that is not loopback
// unless Options.AllowInsecure is set. Every error, event and log line is
// scrubbed of the credentials of the attempt, including the query string
// Go's *url.Error would print.
//
// # Reconnecting
//
// Every way a connection ends is an Ending, classified into an Action by
// DefaultClassify unless Options.Classify or the Dialect says otherwise:
//
//	ending                                           action
//	Close, cancelled context                         stop
//	close 1008, or a code in Options.ReauthCodes     reauth: fresh credentials, at once the first time, then backoff
//	HTTP 401/403 (handshake, ticket, login, token)   reauth
//	HTTP 429/503                                     retry, waiting at least Retry-After
//	other HTTP statuses                              retry
//	close 1000 sent by the server                    retry
//	close 1001, 1006, 1011-1014, 3000-4999           retry
//	network error, dial or auth timeout, no pong     retry
//	close 1002, 1003, 1007, 1009, 1010               retry; stop after Options.MaxProtocolErrors in a row
//	credentials refused MaxAuthFailures times in a row   stop with a GaveUpError
//	a credential over an insecure transport          stop
//
// Retries wait by Options.Backoff, FullJitter by default: a uniformly random
// delay between zero and an exponential ceiling (500ms, ×2, capped at 30s).
// A connection that stays up for Options.StableAfter (10s) resets the
// backoff and the failure counters. A 1008 that ends a session which had
// lasted that long, or had reached its known expiry, counts as "session
// ended" (ReasonSessionEnded) rather than as a rejection.
//
// Exactly one goroutine decides to reconnect; read errors, write errors,
// missed pongs, refresh failures and server closes all end up there, so
// concurrent triggers make one reconnect and two physical connections never
// coexist, except during a deliberate make-before-break rotation.
//
// # Sending and receiving
//
// Send queues a message (up to Options.SendQueue; beyond, ErrQueueFull at
// once) and returns when it has been written to an authenticated
// connection, or with an error: its context ended first (it is then removed
// and never written), the connection failed mid-write (ErrDeliveryUnknown:
// it may or may not have arrived), or the client stopped. While the client
// reconnects, sends wait and are written in order only after the new
// connection has authenticated. "Sent" means the frame reached the
// operating system on a live connection; a message written just before the
// connection dies can still be lost. The client never replays on its own:
// Options.OnConnect runs on every new connection before the queue flows,
// which is where an application resends what it needs at least once.
//
// Receive returns application messages across reconnects; refresh answers,
// keepalives and other protocol messages are consumed by the client.
//
// # Keeping the session alive
//
// The client knows when the session expires from the token's Expiry, from
// the expires_in the server reports, or from its expiry notice. Ahead of
// expiry (a fifth of the lifetime, at least 2s, plus jitter) it sends the
// dialect's refresh message with a fresh token and waits for the answer;
// a refusal or timeout falls back to a reconnect with fresh credentials
// before the session runs out. Options.Renewal picks rotation
// (make-before-break) or a plain reconnect instead.
//
// # Dialects
//
// Options.Dialect is the message shapes and close codes of the server's
// authentication protocol. DefaultDialect speaks the reference server's,
// PlainDialect nothing at all; the built-in HomeAssistant, GraphQLWS (graphql-transport-ws), Centrifugo
// (JSON client protocol) and SlackSocketMode (with TicketURLAuth, which
// dials the single-use URL a REST call returns) speak those services'.
// DialectNamed finds them by name. A Dialect of your own is one
// interface; docs/dialects.md and Example_customDialect show how.
//
// # Events
//
// Options.OnEvent receives every state change (connecting,
// authenticating, connected, refreshed, rotated, reconnecting with attempt,
// cause and delay, stopped) in order; Options.Logger gets them as log/slog
// records. Both are silent by default and never carry a credential.
//
// The reference server, in package server, implements the server side of
// every pattern; docs/protocol.md describes the wire protocol.
package wsauth

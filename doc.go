// Package wsauth keeps an authenticated WebSocket alive.
//
// A Client owns one logical connection across many physical ones. Before
// every connection attempt it asks its credential provider (an
// Authenticator) for credentials and tells it why (a Reason: the first
// attempt, a reconnect, a session the server ended, a refusal). It dials
// with github.com/coder/websocket, runs the dialect's exchange after the
// upgrade, waits for the server's verdict, renews the session ahead of its
// expiry, and when the connection ends it reconnects with backoff: with
// fresh credentials when the server asked for them, and never with one the
// server refused.
//
//	c, err := wsauth.Dial(ctx, url, &wsauth.Options{
//		Auth: &wsauth.TicketAuth{Endpoint: ticketURL, Tokens: tokens},
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	err = c.SendText(ctx, "hello")   // waits for an authenticated connection
//	typ, msg, err := c.Receive(ctx) // across reconnects
//
// # Credential providers
//
// The HTTP upgrade is the only HTTP request of a WebSocket's life. The
// built-in providers cover the patterns servers use:
//
//	TicketAuth        POST a ticket endpoint with a bearer token, dial with ?ticket=…  (recommended)
//	QueryAuth         the token itself in ?token=…                               (short-lived tokens only)
//	FirstMessageAuth  upgrade, then the dialect's auth message, {"type":"auth","token":…} by default
//	CookieAuth        a session cookie from a jar, filled by a login call; sends an Origin
//	HeaderAuth        Authorization: Bearer … on the handshake                   (not possible in browsers)
//	SubprotocolAuth   the token in Sec-WebSocket-Protocol, Kubernetes-style      (not possible in browsers)
//
// Tokens come from golang.org/x/oauth2 token sources, cached by a
// TokenCache: it hands out a token until shortly before its Expiry (a JWT's
// exp claim when the source gives none), runs one fetch at a time, forgets
// a token whose session the server ended, and never hands out again one the
// server refused. A provider that implements TokenSourcer lends its cache
// to the refresher.
//
// A credential goes over plain ws:// or http:// only to a loopback host,
// unless Options.AllowInsecure is set; the rule holds at every hop. The
// handshake follows no redirect, and the providers' REST calls follow
// redirects only within their origin and never send a Referer (see
// RedirectPolicy). A server that selects a subprotocol carrying one of the
// attempt's credentials (SubprotocolAuth's bearer entry) would send it back
// to wherever responses are logged: the client writes nothing on that
// connection and stops, its stop cause wrapping ErrEchoedCredential, rather
// than offer the credential again. Every error, event and log line is
// scrubbed of the attempt's credentials in every encoding they travel in,
// including the credential-like query parameters of the URL the user gave
// and the URL Go's *url.Error would print.
//
// # The verdict
//
// Servers refuse header and subprotocol credentials with 401 or 403 before
// the upgrade, so for those the 101 is the verdict (VerdictHandshake). They
// refuse ticket, query and cookie credentials after it, with a close frame
// a browser can read, and most send no confirmation at all: they serve, or
// close 1008 at once. For a credential the server can still refuse after
// the upgrade (those, and an in-band token) the client waits for the first
// of: the dialect's explicit confirmation (VerdictExplicit), the server's
// first application message, which is delivered (VerdictFirstMessage), or
// Timeouts.Verdict, 250ms, without a close (VerdictWindow). A close before
// then is a refusal. A server whose 101 carries "Wsauth-Verdict: auth_ok"
// (the reference server) is waited for, up to Timeouts.Auth, instead of the
// window. PlainDialect takes every upgrade as the verdict.
//
// Nothing of the application, neither OnConnect nor a queued Send, is
// written before the verdict. The trade-off: against a server that says
// nothing, the first send waits up to the window, and a server that refuses
// later than the window has been sent what was queued meanwhile. Such a late
// refusal, a close within Timeouts.Auth of the upgrade before any
// application message on a connection the window let through, still counts
// as a refusal rather than as a dropped session.
//
// # Reconnecting
//
// Every way a connection, or an attempt at one, ends is an Ending.
// DefaultClassify is the one table that makes it an Action, and
// ReconnectPolicy.Classify may override any row:
//
//	ending                                                      action
//	Close, the context of Dial ended                            stop
//	a credential over an insecure transport                     stop
//	a handshake redirect, a REST redirect to another origin     stop
//	the server selecting a credential's subprotocol             stop
//	a close code the dialect gives a meaning (CloseMeaning)     that meaning
//	close 1008                                                  reauth
//	close 1000 before the verdict                               reauth
//	HTTP 401/403 (handshake, ticket, login, token endpoint)     reauth
//	nothing to offer, an in-band refusal (AuthError)            reauth
//	anything else: HTTP 429, 503 and other statuses, close 1000
//	after the verdict, 1001, 1006, 1011-1014, 3000-4999,
//	network errors, timeouts, no pong                           retry
//
// What the policy does with the action depends on when it happened:
//
//	reauth during authentication   a refusal: HTTP 401/403, a close before or inside
//	                               the verdict (a late refusal too), the dialect's
//	                               refusal, nothing to offer. The next attempt gets
//	                               ReasonRejected and never the refused credential,
//	                               at once the first time, then with backoff;
//	                               MaxAuthFailures (5) refusals without a stable
//	                               connection between them stop the client.
//	reauth of an established       no refusal (an administrator's 1008, a revocation,
//	session                        the session's expiry): the next attempt gets
//	                               ReasonSessionEnded and may offer the same long-lived
//	                               token again; at once the first time in a run and
//	                               after a session that lasted a second or more and
//	                               reached its known expiry, with backoff otherwise.
//	                               It clears the count of refusals.
//	retry                          backoff, credentials reused (ReasonReconnect).
//	protocol errors                closes 1002, 1003, 1007, 1009, 1010 or ErrProtocol:
//	                               MaxProtocolErrors (5) in a row stop the client.
//	ErrCertificate                 three in a row stop the client.
//	stop                           the client stops.
//
// A client that stops on its own has a GaveUpError as its stop cause, whose
// Why names the limit ("authentication", "protocol", "certificate",
// "backoff", "policy"). A Retry-After the server sent is waited out, capped
// at ReconnectPolicy.MaxRetryAfter (5m). Retries wait by
// ReconnectPolicy.Backoff, FullJitter by default: a uniformly random delay
// between zero and an exponential ceiling (500ms, ×2, at most 30s). A
// connection that stays up for StableAfter (10s) resets the backoff and
// every count.
//
// One goroutine decides to reconnect, and the supervisor beside it is the
// one place protocol messages are acted on: read errors, write errors,
// missed pongs, refresh failures and server closes all end up there, so
// concurrent triggers make one reconnect, nothing the server says is
// dropped, and two physical connections coexist only during a deliberate
// make-before-break rotation.
//
// # Sending and receiving
//
// Send queues a message (up to Limits.SendQueue; beyond, ErrQueueFull at
// once) and returns when it has been written to an authenticated
// connection, or with an error: its context ended first (it is then
// removed and never written), the connection failed mid-write
// (ErrDeliveryUnknown: it may or may not have arrived), or the client
// stopped (the stop cause). Sends are written in the order Send was called;
// while the client reconnects they wait, and are written only after the new
// connection's verdict. A nil error means the frame was handed to the
// operating system on a live, authenticated connection; a frame written
// just before the connection dies can still be lost. The client never
// replays on its own: Options.OnConnect runs on every new connection before
// the queue flows, which is where an application resends what it needs at
// least once.
//
// SendConfirmed returns only once the server has read the message: after
// writing it the client pings, and the pong comes back only after the
// server's WebSocket layer has read everything written before the ping
// (concurrent calls share one ping). When the connection ends first, its
// error wraps ErrUnconfirmed: the message was written and may or may not
// have arrived. Plain sends are confirmed the same way in the background,
// on the liveness timer (half of Timeouts.Write, 5s by default, or
// Liveness.PingInterval when shorter), and by a completed close handshake.
// When a connection ends with sends written on it after its last
// confirmation, EventUnconfirmed says how many; with Limits.KeepUnconfirmed
// (default 0: the count only) the client keeps copies of that many plain
// sends and the event carries them in Frames, oldest first, for the
// application to resend what matters. With that many unconfirmed, the next
// send waits for a confirmation before it is written.
//
// Receive returns application messages across reconnects, each in a slice
// of its own; refresh answers, keepalives and other protocol messages of
// the dialect are consumed by the client. ReceiveInto reads the message
// into the caller's buffer instead: it reuses buf's capacity, grows it when
// a message is larger (nothing is cut short; Limits.ReadLimit bounds a
// message), and returns the filled slice, which may share buf's array: it
// is valid until that array is handed to ReceiveInto again. Called in a
// loop with the slice it returned, it receives without allocating once the
// buffer has grown to the largest message.
//
// # Keeping the session alive
//
// The session's expiry is the earlier of the credential's (Proof.Expiry:
// the token's Expiry or JWT exp, a login cookie's Max-Age) and the lifetime
// the server reports; an expiry notice or a refresh answer moves it. Ahead
// of it (RenewalPolicy.Lead: by default a fifth of the lifetime, at least
// 2s, at most half, minus up to half that again at random) the client
// renews by RenewalPolicy.Strategy: RenewRefresh, the default, sends the
// dialect's refresh message with a token that outlives the session and
// falls back to a reconnect with fresh credentials, before expiry, when the
// refresh is refused or unanswered (or reconnects when the dialect has no
// refresh message or the provider no token source); RenewRotate opens a new
// connection and moves to it before closing the old one; RenewReconnect
// closes and reconnects; RenewNone waits for the server's close. A server's
// going-away notice always rotates.
//
// # Dialects
//
// Options.Dialect is the server's authentication protocol. The required
// part of a Dialect is Open and Inspect; Refresher, CloseClassifier,
// SubprotocolProvider and FrameSplitter are optional interfaces the client
// finds by type assertion. DefaultDialect speaks the reference server's
// protocol and PlainDialect none; the packages under dialect/ speak those
// of Home Assistant (homeassistant), graphql-ws (graphqlws), Centrifugo
// (centrifugo) and Slack Socket Mode (slack, with slack.Auth, which dials
// the single-use URL a REST call returns). docs/dialects.md and
// Example_customDialect show a dialect of your own.
//
// # Events and callbacks
//
// Options.OnEvent receives every state change (connecting, authenticating,
// connected with its Verdict, refreshed, refresh_failed, rotated,
// reconnecting with the cause, action and delay, unconfirmed with the count
// of sends a connection's end left unconfirmed, stopped) in order, on a
// goroutine of its own; Options.Logger gets the same as log/slog records.
// Both are silent by default and never carry a credential. OnEvent and
// OnConnect may call any method of the client: Close called from inside a
// callback stops the client and returns without waiting for that callback,
// and OnConnect's context ends when its connection does or the client is
// closed.
//
// The reference server, in package server, implements the server side of
// every pattern; docs/protocol.md describes the wire protocol, and package
// wsauthtest runs it in tests.
package wsauth

package wsauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrClosed is the stop cause after Close: Send, Receive and pending
	// sends return it once the client is closed.
	ErrClosed = errors.New("wsauth: client closed")

	// ErrQueueFull is returned at once by Send when the send queue holds
	// Limits.SendQueue messages already. Nothing is queued.
	ErrQueueFull = errors.New("wsauth: send queue full")

	// ErrDeliveryUnknown is wrapped by the error Send returns when the
	// connection failed while the message was being written: the frame may
	// or may not have reached the server. The client never resends it on its
	// own; see Options.OnConnect for at-least-once delivery.
	ErrDeliveryUnknown = errors.New("wsauth: connection lost while writing; the message may or may not have arrived")

	// ErrUnconfirmed is wrapped by the error SendConfirmed returns when its
	// message was written but the connection ended before the server
	// confirmed reading it: it may or may not have arrived.
	ErrUnconfirmed = errors.New("wsauth: the connection ended before the server confirmed the message")

	// ErrPingTimeout ends a connection whose peer did not answer a ping
	// within Liveness.PongTimeout: a half-open connection.
	ErrPingTimeout = errors.New("wsauth: no pong within the timeout")

	// ErrCredentialRejected is returned by a provider that has no fresh
	// credential to offer after the server rejected the last one: offering
	// the same one again is never done.
	ErrCredentialRejected = errors.New("wsauth: the credential was rejected and no fresh one is available")

	// ErrNoCredential is returned by a provider that has nothing to offer
	// at all, such as a CookieAuth whose jar holds no cookie for the URL and
	// that has no LoginURL to get one. The reconnect policy counts it as a
	// refusal, so a client that cannot authenticate stops.
	ErrNoCredential = errors.New("wsauth: the provider has no credential to offer")

	// ErrRedirect is wrapped by the error of a REST call (ticket endpoint,
	// login, URL endpoint) that the server redirected to another origin,
	// or redirected too often: the client never follows such a redirect,
	// so no credential reaches it. It stops the client: the endpoint's URL
	// needs fixing.
	ErrRedirect = errors.New("wsauth: redirect refused")

	// ErrEchoedCredential ends a handshake whose server selected a
	// subprotocol that contains one of the attempt's credentials (the
	// bearer entry of SubprotocolAuth): it would be sending the credential
	// back to wherever responses are logged. The client drops that
	// connection without writing anything on it and stops, since another
	// attempt would send the credential again: DefaultClassify makes the
	// ending ActionStop, so the stop cause is a GaveUpError with Why
	// "policy" that wraps it. The server's configuration needs fixing.
	ErrEchoedCredential = errors.New("wsauth: the server echoed the credential-bearing subprotocol")

	// ErrProtocol is wrapped by the cause of a connection the client
	// ended because the server broke the WebSocket protocol in a way the
	// client detected itself: a message larger than Limits.ReadLimit, a
	// compressed frame on a connection that never negotiated compression,
	// a malformed frame. Like the protocol-error close codes, it counts
	// toward ReconnectPolicy.MaxProtocolErrors.
	ErrProtocol = errors.New("wsauth: the server broke the WebSocket protocol")

	// ErrCertificate is wrapped by the cause of an attempt that failed
	// because the server's TLS certificate could not be verified (unknown
	// authority, wrong host name, expired). It is a configuration error,
	// not an outage: after three in a row the client stops (GaveUpError
	// with Why "certificate"). Trust a private CA with Options.TLSConfig.
	ErrCertificate = errors.New("wsauth: the server's TLS certificate could not be verified")

	// ErrInsecureTransport is wrapped by the error for a credential that
	// would travel unencrypted to a host that is not loopback.
	ErrInsecureTransport = errors.New("wsauth: refusing to send credentials over an unencrypted connection")
)

// HTTPError reports a non-success HTTP answer: the WebSocket handshake
// refused with a status other than 101, or a REST call a provider makes
// (ticket endpoint, login, token endpoint) answered outside 2xx. It lets
// callers and the reconnect policy tell "rejected" (401, 403) from "try
// later" (429, 503) from "unreachable" (no HTTPError at all).
type HTTPError struct {
	// Op names the request: "handshake", "ticket", "login" or "token".
	Op string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Body is at most the first 512 bytes of the answer's body, with every
	// credential of the attempt redacted.
	Body string
	// RetryAfter is the server's Retry-After, zero when absent or invalid.
	RetryAfter time.Duration
	// Location is where a 3xx answer pointed, credentials redacted. The
	// handshake never follows a redirect; see RedirectPolicy.
	Location string
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wsauth: %s refused: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Location != "" {
		fmt.Fprintf(&b, " (redirect to %s, not followed)", e.Location)
	}
	if body := strings.TrimSpace(e.Body); body != "" {
		fmt.Fprintf(&b, ": %q", body)
	}
	return b.String()
}

// httpErrorFrom builds the HTTPError of a non-2xx answer, reading a
// bounded prefix of its body.
func httpErrorFrom(op string, resp *http.Response, red *redactor) *HTTPError {
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, maxReadErrorBody))
	}
	return refusal(op, resp, body, red)
}

// refusal is the one builder of an HTTPError: the status, Retry-After, a
// redirect's Location, and the body, read well past what is kept so that
// the secrets red knows are scrubbed before the cut and none is left
// behind cut in half.
func refusal(op string, resp *http.Response, body []byte, red *redactor) *HTTPError {
	if len(body) > maxReadErrorBody {
		body = body[:maxReadErrorBody]
	}
	he := &HTTPError{
		Op:         op,
		StatusCode: resp.StatusCode,
		Body:       red.Cut(string(body), maxErrorBody),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	if loc := resp.Header.Get("Location"); loc != "" && isRedirect(resp.StatusCode) {
		he.Location = redacted
		if resp.Request != nil {
			if u, err := resp.Request.URL.Parse(loc); err == nil {
				he.Location = red.URL(u)
			}
		}
	}
	return he
}

// maxErrorBody bounds how much of a refusal's body is kept, and
// maxReadErrorBody how much is read to scrub it.
const (
	maxErrorBody     = 512
	maxReadErrorBody = 64 << 10
)

// Rejected reports whether the status says the credential is bad (401 or
// 403).
func (e *HTTPError) Rejected() bool {
	return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
}

// CloseError reports that the server closed the connection with a close
// frame. It is what the client saw, in the client's own type so that the
// reason can be shown without importing coder/websocket.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("wsauth: server closed the connection: %d %s", int(e.Code), codeName(e.Code))
	}
	return fmt.Sprintf("wsauth: server closed the connection: %d %s: %q", int(e.Code), codeName(e.Code), e.Reason)
}

// AuthError reports that the server refused the in-band authentication
// exchange or the refresh with a message rather than a close frame (for
// example Home Assistant's auth_invalid).
type AuthError struct {
	// Message is the server's explanation, if any.
	Message string
}

func (e *AuthError) Error() string {
	if e.Message == "" {
		return "wsauth: authentication refused"
	}
	return fmt.Sprintf("wsauth: authentication refused: %q", e.Message)
}

// GaveUpError is the stop cause when the client stops reconnecting on its
// own: after ReconnectPolicy.MaxAuthFailures refusals (see there what
// resets the count), after ReconnectPolicy.MaxProtocolErrors protocol
// errors in a row, after three unverifiable certificates in a row, when
// the backoff policy says stop, or when the reconnect policy classified an
// ending as stop. errors.As reaches the HTTPError, CloseError or AuthError
// of the last ending and of the server's last verdict.
type GaveUpError struct {
	// Why says which limit ended the client: "authentication", "protocol",
	// "certificate", "backoff" or "policy".
	Why string
	// Attempts is the number of connection attempts made in the run of
	// failures that ended the client.
	Attempts int
	// Code, Reason and HTTPStatus are the server's last verdict: the close
	// code and reason or the HTTP status of the most recent ending that had
	// one (zero when the server never gave one).
	Code       StatusCode
	Reason     string
	HTTPStatus int
	// Err is the last ending's cause. When the last attempt failed without
	// reaching the server (say, the provider had nothing fresh to offer),
	// Verdict holds the cause of the server's last refusal.
	Err     error
	Verdict error
}

func (e *GaveUpError) Error() string {
	if e.Verdict != nil && e.Verdict != e.Err {
		return fmt.Sprintf("wsauth: gave up (%s) after %d attempts: %v (server's last verdict: %v)", e.Why, e.Attempts, e.Err, e.Verdict)
	}
	return fmt.Sprintf("wsauth: gave up (%s) after %d attempts: %v", e.Why, e.Attempts, e.Err)
}

// Unwrap gives errors.Is and errors.As both causes.
func (e *GaveUpError) Unwrap() []error {
	if e.Verdict != nil && e.Verdict != e.Err {
		return []error{e.Err, e.Verdict}
	}
	return []error{e.Err}
}

func codeName(c StatusCode) string {
	switch c {
	case 1000:
		return "normal closure"
	case 1001:
		return "going away"
	case 1002:
		return "protocol error"
	case 1003:
		return "unsupported data"
	case 1005:
		return "no status"
	case 1006:
		return "abnormal closure"
	case 1007:
		return "invalid payload"
	case 1008:
		return "policy violation"
	case 1009:
		return "message too big"
	case 1010:
		return "mandatory extension"
	case 1011:
		return "internal error"
	case 1012:
		return "service restart"
	case 1013:
		return "try again later"
	case 1014:
		return "bad gateway"
	}
	return "application code"
}

// maxRetryAfterSeconds caps a Retry-After in seconds before it becomes a
// Duration, which would overflow past 292 years and come out tiny or
// negative; ReconnectPolicy.MaxRetryAfter caps it again, lower.
const maxRetryAfterSeconds = 365 * 24 * 3600

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(min(secs, maxRetryAfterSeconds)) * time.Second
	} else if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return maxRetryAfterSeconds * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxRetryAfterSeconds*time.Second)
		}
	}
	return 0
}

package wsauth

import (
	"errors"

	"github.com/wsauth/wsauth/internal/redact"
)

const redacted = redact.Placeholder

// redactor scrubs the credentials of one connection attempt out of the
// strings and errors the client produces. Providers register every secret
// they put on the wire (Handshake.AddSecret) and every query parameter that
// carries one (Handshake.AddSecretParam); the user's URL registers its own
// credential-like parameters. It is safe for concurrent use: the refresher
// adds the secrets of a refresh while the writer may be redacting an error.
type redactor = redact.Set

// sentinels are the client's errors the reconnect policy and callers test
// for; a scrubbed error still matches them.
var sentinels = []error{ErrClosed, ErrQueueFull, ErrDeliveryUnknown, ErrUnconfirmed, ErrPingTimeout, ErrCredentialRejected,
	ErrNoCredential, ErrRedirect, ErrEchoedCredential, ErrInsecureTransport, ErrProtocol, ErrCertificate}

// scrubError is err with every secret red knows scrubbed from its text,
// in a form that still satisfies errors.Is for the client's sentinels and
// errors.As for a scrubbed copy of its HTTPError, CloseError or AuthError.
func scrubError(red *redactor, err error) error {
	if err == nil || red == nil {
		return err
	}
	var keep []error
	var he *HTTPError
	if errors.As(err, &he) {
		cp := *he
		cp.Body, cp.Location = red.Cut(cp.Body, maxErrorBody), red.String(cp.Location)
		keep = append(keep, &cp)
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		keep = append(keep, &CloseError{Code: ce.Code, Reason: red.String(ce.Reason)})
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		keep = append(keep, &AuthError{Message: red.String(ae.Message)})
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			keep = append(keep, s)
		}
	}
	return red.Error(err, keep...)
}

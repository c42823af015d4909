package server

import (
	"net/http"
	"net/url"
)

// maxTokenRequestBody bounds the form body of a token request.
const maxTokenRequestBody = 16 << 10

// tokenResponse is a successful client-credentials answer (RFC 6749 §4.4.3, §5.1).
type tokenResponse struct {
	AccessToken string  `json:"access_token"`
	TokenType   string  `json:"token_type"`
	ExpiresIn   float64 `json:"expires_in"`
	Scope       string  `json:"scope,omitempty"`
}

// tokenError is an error answer (RFC 6749 §5.2).
type tokenError struct {
	Error string `json:"error"`
}

// serveToken implements the OAuth 2.0 client-credentials grant: a client authenticated by
// HTTP Basic or by client_id/client_secret form fields gets a token for its own id.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return
	}
	ev := s.event(r, StageToken, "")
	if ok, wait := s.tokenLimit.allow(ev.ClientIP); !ok {
		s.refuseHTTP(w, ev, http.StatusTooManyRequests, wait, "rate limited")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequestBody)
	if err := r.ParseForm(); err != nil {
		s.tokenRefuse(w, ev, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}

	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != "" {
		if ok, wait := s.clientLimit.take(id); !ok {
			w.Header().Set("Retry-After", retryAfterValue(wait))
			s.tokenRefuse(w, ev, http.StatusTooManyRequests, "temporarily_unavailable", "client rate limited")
			return
		}
	}
	if id == "" || !s.checkClient(id, secret) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="wsauth"`)
		}
		s.tokenRefuse(w, ev, http.StatusUnauthorized, "invalid_client", "bad client credentials")
		return
	}
	s.clientLimit.refund(id)
	ev.Subject = id
	if s.isRevoked(id) {
		s.tokenRefuse(w, ev, http.StatusUnauthorized, "invalid_client", errRevoked.Error())
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		s.tokenRefuse(w, ev, http.StatusBadRequest, "invalid_request", "no grant_type")
		return
	default:
		s.tokenRefuse(w, ev, http.StatusBadRequest, "unsupported_grant_type", "grant type is not client_credentials")
		return
	}

	token, err := s.cfg.Issuer.Issue(id, s.cfg.TokenTTL)
	if err != nil {
		s.tokenRefuse(w, ev, http.StatusInternalServerError, "server_error", "issuing failed")
		return
	}
	s.stats.tokensIssued.Add(1)
	s.accept(ev, "token issued")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   seconds(s.cfg.TokenTTL),
		Scope:       r.PostForm.Get("scope"),
	})
}

// tokenRefuse answers with an RFC 6749 §5.2 error and reports the refusal.
func (s *Server) tokenRefuse(w http.ResponseWriter, ev AuthEvent, status int, code, detail string) {
	ev.Status, ev.Reason, ev.Detail = status, http.StatusText(status), detail
	s.report(ev)
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, tokenError{Error: code})
}

// checkClient reports whether secret is client id's.
func (s *Server) checkClient(id, secret string) bool {
	return checkSecret(s.cfg.Clients, id, secret)
}

package wsauthtest

import "github.com/wsauth/wsauth/server"

// Option configures NewServer. Options apply in the order given; WithConfig
// hooks run after all the others.
type Option func(*settings)

type settings struct {
	handler server.Handler
	tls     bool
	hooks   []func(*server.Config)
}

// WithHandler serves authenticated connections with h instead of the
// default, server.Echo(), which sends every message back with its type.
func WithHandler(h server.Handler) Option {
	return func(s *settings) { s.handler = h }
}

// WithTLS serves https:// and wss:// with a self-signed certificate for
// 127.0.0.1, instead of the default plain http:// and ws://. Clients trust
// it through Server.Client or Server.TLSConfig.
func WithTLS() Option {
	return func(s *settings) { s.tls = true }
}

// WithConfig lets fn change anything in the server's configuration before
// it starts: session lifetime, enabled methods, rate limits, stores, a
// verifier of your own, and so on. fn sees the configuration NewServer
// documents, with the handler already set; several WithConfig hooks run in
// order. Default none.
//
// Config.OnAuth may be set: the Server still records every decision and
// then calls it. Changing the endpoint paths changes the URLs the Server
// reports.
func WithConfig(fn func(*server.Config)) Option {
	return func(s *settings) { s.hooks = append(s.hooks, fn) }
}

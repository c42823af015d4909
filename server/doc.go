// Package server is the reference server of wsauth: an http.Handler that implements the
// server side of six ways to authenticate a WebSocket, with the security duties that go with
// them, and speaks the wire protocol of docs/protocol.md.
//
// The patterns, in the order a handshake is searched for them:
//
//   - header: "Authorization: Bearer <token>" (non-browser clients);
//   - subprotocol: the token base64url-encoded in Sec-WebSocket-Protocol behind a prefix
//     such as "base64url.bearer.authorization.k8s.io." (non-browser clients);
//   - ticket: "?ticket=…", a single-use ticket from POST /api/ws-ticket (recommended for
//     browsers);
//   - query: "?token=…" or "?access_token=…", the token in the URL (leaks into logs;
//     short-lived tokens only);
//   - cookie: the session cookie set by POST /api/login, with an Origin allowlist against
//     cross-site WebSocket hijacking, and an Origin required;
//   - first message: {"type":"auth","token":"…"} within Config.AuthTimeout of the upgrade.
//
// Header and subprotocol failures are answered 401 before the upgrade; the browser patterns
// are upgraded and then closed with 1008 and a fixed reason, because a browser can see a
// close reason but not the status of a failed upgrade.
//
// Around the patterns the server enforces what the protocol promises: Origin checked by
// scheme, host and port against its own origin and an exact allowlist, per-IP rate limits
// on handshakes and endpoints (the client IP taken from forwarding headers of trusted
// proxies only), per-account limits on failed logins, a cap on connections waiting for
// first-message auth and an optional one per principal, small read limits before
// authentication, session expiry with an optional notice, mid-connection refresh that must
// keep the same principal, pings that close a dead peer's socket, revocation that closes
// live connections, and a Close that closes every hijacked connection and waits for it.
// Tokens, tickets, cookie values and passwords never appear in its logs or errors.
//
// Below the handler, NewHTTPServer gives an http.Server the timeouts a server reachable
// from the network needs and a ConnLimiter that caps TCP connections per IP and in total;
// a server not built with it should set the same:
//
//	srv, err := server.New(cfg)
//	// handle err
//	lim, err := server.NewConnLimiter(server.ConnLimits{TrustedProxies: cfg.TrustedProxies})
//	// handle err
//	hs := server.NewHTTPServer(srv, lim)
//	go hs.ListenAndServeTLS(certFile, keyFile)
//	// at shutdown: srv.Close() (the WebSockets), then hs.Shutdown(ctx)
//
// Several instances act as one through Config.Cluster (revocations and logouts reach every
// instance), shared ticket and session stores, and Config.Limits (the rate limits, the
// per-account limits and the per-principal cap counted for the deployment); package
// server/redisstore provides all of them on Redis, and docs/redis.md shows two `wsauth
// serve` processes behind one Redis.
//
// The application sees only authenticated connections: a Handler gets a *Conn whose
// Principal says who is on it, and whose Read yields application messages only (refresh
// messages are answered by the server).
//
// For tests the server has fault hooks (CloseAll, Revoke, ExpireSessions, RefuseHandshakes,
// Pause, GoingAway), also reachable over HTTP under Config.ControlPrefix when
// Config.TestControls is set, and an HMACIssuer that mints and verifies signed tokens.
package server

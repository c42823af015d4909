// Package redisstore keeps the shared state of several wsauth reference servers (package
// server) in Redis, so that they act as one deployment: a ticket minted by one instance is
// redeemed on any of them, once; a cookie session is known to all; a revocation or a logout
// on one closes the sockets it concerns on every instance; and the rate limits (per IP, and
// of failed logins per account) and the per-principal connection cap hold for the
// deployment rather than per instance, so a second instance does not double an attacker's
// budget or a principal's connections.
//
// Each instance makes its own client and Store and lets the Store configure it:
//
//	opt, err := redisstore.ParseURL("redis://redis.internal:6379/0")
//	if err != nil { … }
//	rdb := redis.NewClient(opt)
//	defer rdb.Close()
//	cfg := server.Config{Verifier: verifier, Handler: app} // the same Verifier key everywhere
//	redisstore.New(rdb, nil).Configure(&cfg)                // tickets, sessions, cluster, limits
//	srv, err := server.New(cfg)
//
// Two such processes (two `wsauth serve --redis URL`) behind a load balancer are the
// Example below, in one process.
//
// # What is where
//
//   - TicketStore: a key per ticket, expired by Redis (PX); Consume is GETDEL, so of any
//     number of concurrent redemptions on any number of instances exactly one succeeds.
//   - SessionStore: a key per cookie session expiring with the session (PXAT), and an index
//     per subject so that Store.EndSessions can end them all.
//   - Cluster: revocations, unrevocations and ended sessions go out on a pub/sub channel;
//     revocations are also kept in a set, which an instance reads whenever its subscription
//     is (re)established, so that nothing missed while it was cut off stays missed. A
//     revocation made while Redis is down applies at once on its instance and is sent when
//     Redis is back.
//   - Limits: token buckets (per IP, per account) and connection leases (per principal) run
//     as scripts on Redis's clock.
//
// Tickets and session ids are bearer secrets, so keys and messages carry their
// server.SecretHash, never the value: whoever can read Redis (a replica, a backup, MONITOR)
// cannot connect as anyone. Nothing secret is logged.
//
// # When Redis is down
//
// The server fails closed: the ticket, login and logout endpoints and ticket and cookie
// handshakes are answered 503 Service Unavailable with Retry-After: 2, which a wsauth client
// honours; nothing is authenticated without the store's answer. Handshakes that need no
// store (bearer tokens in a header, subprotocol, query or first message) go on, with the
// rate limits kept per instance meanwhile, and established connections are not touched.
// go-redis reconnects on its own; nothing needs a restart. Use ParseURL, or set its client
// options yourself, so that a call during an outage fails in milliseconds rather than after
// go-redis's default retries.
//
// Run Redis with persistence if revocations must survive a Redis restart: a Redis that
// comes back empty has lost the tickets, the sessions and the revocation list, and the
// instances adopt that (closing the cookie connections of the lost sessions). An instance
// started while Redis is down knows no revocation until it has connected.
package redisstore

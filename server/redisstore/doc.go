// Package redisstore keeps the shared state of several wsauth reference servers in Redis,
// so that they act as one: a ticket minted by one instance is redeemed on any (once), a
// cookie session is known to all, a revocation or a logout on one closes the sockets it
// concerns on every instance, and rate limits hold for the deployment rather than per
// instance.
package redisstore

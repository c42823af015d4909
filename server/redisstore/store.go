package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
)

// Options configures a Store. The zero value, or nil, gives the defaults in the comments.
type Options struct {
	// Prefix begins every key and the pub/sub channel of the Store, so that several
	// deployments can share one Redis. Default "wsauth:". With Redis Cluster it must hold
	// a hash tag, such as "{wsauth}:", because scripts touch several keys of a subject.
	Prefix string
	// Timeout bounds each Redis operation; one that takes longer fails with an error
	// wrapping server.ErrStoreUnavailable. Default 2 seconds; keep it below the server's
	// AuthTimeout (5 seconds by default). It bounds network reads only if the client was
	// made with ContextTimeoutEnabled; otherwise go-redis's own ReadTimeout applies.
	Timeout time.Duration
	// LeaseTTL is how long a connection slot taken from a SlotLimiter outlives an instance
	// that died holding it; live instances renew their slots every LeaseTTL/3. Default
	// 1 minute.
	LeaseTTL time.Duration
	// Logger receives the Store's log records: lost and regained subscriptions, publishes
	// kept for later, fallbacks to local limits. Default nil: silent. No ticket, session id
	// or token is ever logged.
	Logger *slog.Logger
}

// Store is one Redis shared by the instances of a deployment. It makes the ticket store,
// the session store, a Cluster per instance and the shared limits; Configure puts them all
// into a server.Config. A Store does not own the client: close it after the servers.
//
// Redis 6.2 or later is required (GETDEL, SET PXAT); standalone, Sentinel (a failover
// client) and, with a hash tag in Options.Prefix, Cluster. Tickets and session ids are
// bearer secrets, so keys hold their server.SecretHash, never the value: whoever reads
// Redis (a backup, MONITOR, a replica) cannot connect as anyone.
type Store struct {
	rdb      redis.UniversalClient
	prefix   string
	timeout  time.Duration
	leaseTTL time.Duration
	log      *slog.Logger
}

// New returns a Store on rdb with opts, which may be nil.
func New(rdb redis.UniversalClient, opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	st := &Store{rdb: rdb, prefix: o.Prefix, timeout: o.Timeout, leaseTTL: o.LeaseTTL, log: o.Logger}
	if st.prefix == "" {
		st.prefix = "wsauth:"
	}
	if st.timeout <= 0 {
		st.timeout = 2 * time.Second
	}
	if st.leaseTTL <= 0 {
		st.leaseTTL = time.Minute
	}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	return st
}

// Configure makes cfg use the Store: its TicketStore, SessionStore and Limits, and a new
// Cluster. Call it once per server.Config: each instance needs its own Cluster.
func (st *Store) Configure(cfg *server.Config) {
	cfg.TicketStore = st.TicketStore()
	cfg.SessionStore = st.SessionStore()
	cfg.Cluster = st.NewCluster()
	cfg.Limits = st.Limits()
}

// Revoke revokes subject on every instance, as server.Server.Revoke does, from anywhere that
// can reach Redis (an admin tool, a job): live connections of subject are closed with 1008
// "Revoked" and its credentials refused until Unrevoke. The revocation list is kept in
// Redis, without expiry; an instance started later learns it when it subscribes.
func (st *Store) Revoke(ctx context.Context, subject string) error {
	if subject == "" {
		return errors.New("redisstore: revoke: empty subject")
	}
	return st.send(ctx, wireEvent{Kind: server.ClusterRevoke, Subject: subject})
}

// Unrevoke lifts Revoke on every instance.
func (st *Store) Unrevoke(ctx context.Context, subject string) error {
	return st.send(ctx, wireEvent{Kind: server.ClusterUnrevoke, Subject: subject})
}

// Revoked returns the subjects revoked now, in no particular order.
func (st *Store) Revoked(ctx context.Context) ([]string, error) {
	ctx, cancel := st.op(ctx)
	defer cancel()
	subjects, err := st.rdb.SMembers(ctx, st.key("revoked")).Result()
	if err != nil {
		return nil, unavailable("list revoked", err)
	}
	return subjects, nil
}

// ParseURL parses a Redis URL (redis://, rediss://, unix://) as redis.ParseURL does, and
// sets what a client for a Store needs: ContextTimeoutEnabled, so that Options.Timeout
// bounds every call, and one attempt per dial (DialerRetries 1) and, unless the URL sets
// max_retries, one retry per command (MaxRetries 1), so that in an outage a handshake is
// refused at once rather than after go-redis's default retries (about 1.7 s a call).
// Its errors never quote the URL, which may hold a password: not even the part that does
// not parse, which net/url would quote (a "#" in an unescaped password ends the host).
func ParseURL(rawURL string) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("redisstore: Redis URL does not parse; in its user name and password, %-encode @ : / ? # [ ] % and spaces")
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// go-redis quotes the path and query values; a password has no business there,
		// but a user may have put it there by mistake.
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return nil, fmt.Errorf("redisstore: Redis URL: %s", msg)
	}
	opt.ContextTimeoutEnabled = true
	opt.DialerRetries = 1
	if !u.Query().Has("max_retries") {
		opt.MaxRetries = 1
	}
	return opt, nil
}

// op bounds one Redis operation by Options.Timeout.
func (st *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, st.timeout)
}

// key is the Redis key called name under the Store's prefix.
func (st *Store) key(name string) string {
	return st.prefix + name
}

// secretKey is the key of a ticket or session: its hash, never the secret.
func (st *Store) secretKey(kind, secret string) string {
	return st.prefix + kind + ":" + server.SecretHash(secret)
}

// unavailable wraps an error of Redis as server.ErrStoreUnavailable. Its text names the
// operation and what go-redis said, which never contains a value of ours: keys hold
// hashes.
func unavailable(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, server.ErrStoreUnavailable, err)
}

// randomID returns 256 random bits, base64url: the form of the server's own secrets.
func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomTag returns 64 random bits in hex, for names that must be unique but are not
// secrets (instance origins, lease members).
func randomTag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

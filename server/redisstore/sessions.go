package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
)

// SessionStore is a server.SessionStore in Redis: a cookie from a login on one instance is
// known to all. A session is one key, prefix+"session:"+SecretHash(id), holding its data as
// JSON and expiring at SessionData.Expires (PXAT); each subject has an index,
// prefix+"subject-sessions:"+subject, a sorted set of the hashes of its sessions by expiry,
// so that Store.EndSessions can end them all.
type SessionStore struct {
	st *Store
}

// SessionStore returns the Store's session store.
func (st *Store) SessionStore() *SessionStore {
	return &SessionStore{st: st}
}

// createScript stores a session and indexes it under its subject, dropping the index
// entries of expired sessions and keeping the index alive as long as its last session.
// KEYS: session, index. ARGV: value, expiry (Unix ms), session hash.
var createScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
`)

// Create stores d under a new id of 256 random bits, base64url; see server.SessionStore.
// A session that has already expired is not stored.
func (ss *SessionStore) Create(ctx context.Context, d server.SessionData) (string, error) {
	id := randomID()
	if !time.Now().Before(d.Expires) {
		return id, nil
	}
	val, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("redisstore: encoding session data: %w", err)
	}
	ctx, cancel := ss.st.op(ctx)
	defer cancel()
	keys := []string{ss.st.secretKey("session", id), ss.st.subjectKey(d.Subject)}
	exp := strconv.FormatInt(d.Expires.UnixMilli(), 10)
	if err := createScript.Run(ctx, ss.st.rdb, keys, val, exp, server.SecretHash(id)).Err(); err != nil {
		return "", unavailable("create session", err)
	}
	return id, nil
}

// Get returns the session; see server.SessionStore.
func (ss *SessionStore) Get(ctx context.Context, id string) (server.SessionData, error) {
	ctx, cancel := ss.st.op(ctx)
	defer cancel()
	val, err := ss.st.rdb.Get(ctx, ss.st.secretKey("session", id)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return server.SessionData{}, server.ErrNoSession
	case err != nil:
		return server.SessionData{}, unavailable("get session", err)
	}
	var d server.SessionData
	if err := json.Unmarshal(val, &d); err != nil {
		return server.SessionData{}, fmt.Errorf("redisstore: decoding session data: %w", err)
	}
	if !time.Now().Before(d.Expires) {
		return server.SessionData{}, server.ErrNoSession
	}
	return d, nil
}

// Delete removes the session; see server.SessionStore. It does not close the session's
// connections: the server's logout does that, on every instance through its Cluster, and
// Store.EndSession does both.
func (ss *SessionStore) Delete(ctx context.Context, id string) error {
	_, err := ss.st.deleteSession(ctx, server.SecretHash(id))
	return err
}

// subjectKey is the index of subject's sessions. Subjects are not secrets.
func (st *Store) subjectKey(subject string) string {
	return st.prefix + "subject-sessions:" + subject
}

// deleteSession removes the session whose id hashes to h and its index entry, and reports
// whether it existed.
func (st *Store) deleteSession(ctx context.Context, h string) (bool, error) {
	ctx, cancel := st.op(ctx)
	defer cancel()
	val, err := st.rdb.GetDel(ctx, st.prefix+"session:"+h).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, unavailable("delete session", err)
	}
	var d server.SessionData
	if json.Unmarshal(val, &d) == nil {
		// A stale index entry costs nothing but a little memory until it expires; the
		// session itself is gone, which is what matters.
		if err := st.rdb.ZRem(ctx, st.subjectKey(d.Subject), h).Err(); err != nil {
			st.log.Warn("redisstore: session index not updated", "subject", d.Subject, "error", err)
		}
	}
	return true, nil
}

// EndSession ends a cookie session everywhere: it deletes the session and closes its live
// connections on every instance with 1008 "Logged out", as a logout does, from anywhere
// that can reach Redis. Ending an unknown session is not an error.
func (st *Store) EndSession(ctx context.Context, id string) error {
	h := server.SecretHash(id)
	if _, err := st.deleteSession(ctx, h); err != nil {
		return err
	}
	return st.send(ctx, wireEvent{Kind: server.ClusterEndSession, Session: h})
}

// endSessionsScript deletes every session of a subject and its index, and returns the
// hashes of the sessions that still existed. KEYS: index. ARGV: session key prefix.
var endSessionsScript = redis.NewScript(`
local ended = {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('DEL', ARGV[1] .. h) == 1 then
    table.insert(ended, h)
  end
end
redis.call('DEL', KEYS[1])
return ended
`)

// EndSessions ends every cookie session of subject, as EndSession does for one, and
// returns how many there were. Unlike Revoke it does not refuse the subject's other
// credentials, nor a new login.
func (st *Store) EndSessions(ctx context.Context, subject string) (int, error) {
	octx, cancel := st.op(ctx)
	hashes, err := endSessionsScript.Run(octx, st.rdb, []string{st.subjectKey(subject)}, st.prefix+"session:").StringSlice()
	cancel()
	if err != nil {
		return 0, unavailable("end sessions", err)
	}
	for _, h := range hashes {
		if err := st.send(ctx, wireEvent{Kind: server.ClusterEndSession, Session: h}); err != nil {
			return len(hashes), err
		}
	}
	return len(hashes), nil
}

package redisstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

func TestSessionStore(t *testing.T) {
	d := newDeployment(t)
	a, b := d.store(t).SessionStore(), d.store(t).SessionStore()
	ctx := ctxT(t)
	now := time.Now().Round(0)
	data := server.SessionData{Subject: "alice", Created: now, Expires: now.Add(time.Hour)}
	id, err := a.Create(ctx, data)
	require.NoError(t, err)
	require.Len(t, id, 43, "256 random bits, base64url")
	other, err := a.Create(ctx, data)
	require.NoError(t, err)
	require.NotEqual(t, id, other)

	got, err := b.Get(ctx, id)
	require.NoError(t, err, "a session is known to every instance")
	require.Equal(t, "alice", got.Subject)
	require.True(t, data.Expires.Equal(got.Expires))
	require.True(t, data.Created.Equal(got.Created))

	require.NoError(t, b.Delete(ctx, id))
	_, err = a.Get(ctx, id)
	require.ErrorIs(t, err, server.ErrNoSession)
	require.NoError(t, a.Delete(ctx, id), "deleting an unknown session is no error")
	_, err = a.Get(ctx, "never created")
	require.ErrorIs(t, err, server.ErrNoSession)

	expired, err := a.Create(ctx, server.SessionData{Subject: "alice", Created: now, Expires: now.Add(-time.Second)})
	require.NoError(t, err)
	_, err = a.Get(ctx, expired)
	require.ErrorIs(t, err, server.ErrNoSession)
}

// TestSessionKeys: sessions are named by their hash and expire in Redis with the session;
// the subject's index lives as long as its last session.
func TestSessionKeys(t *testing.T) {
	d := newDeployment(t)
	ss := d.store(t).SessionStore()
	ctx := ctxT(t)
	now := time.Now()
	id, err := ss.Create(ctx, server.SessionData{Subject: "alice", Created: now, Expires: now.Add(time.Hour)})
	require.NoError(t, err)
	_, err = ss.Create(ctx, server.SessionData{Subject: "alice", Created: now, Expires: now.Add(2 * time.Hour)})
	require.NoError(t, err)
	c := d.rs.Client(t)
	key := "wsauth:session:" + server.SecretHash(id)
	require.Contains(t, d.keys(t), key)
	for _, k := range d.keys(t) {
		require.NotContains(t, k, id)
	}
	val, err := c.Get(ctx, key).Result()
	require.NoError(t, err)
	require.NotContains(t, val, id)
	ttl, err := c.PTTL(ctx, key).Result()
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 60)
	ttl, err = c.PTTL(ctx, "wsauth:subject-sessions:alice").Result()
	require.NoError(t, err)
	require.InDelta(t, (2 * time.Hour).Seconds(), ttl.Seconds(), 60, "the index outlives neither session")
}

// TestEndSessions ends every session of a subject and no other.
func TestEndSessions(t *testing.T) {
	d := newDeployment(t)
	st := d.store(t)
	ss := st.SessionStore()
	ctx := ctxT(t)
	now := time.Now()
	mk := func(subject string) string {
		id, err := ss.Create(ctx, server.SessionData{Subject: subject, Created: now, Expires: now.Add(time.Hour)})
		require.NoError(t, err)
		return id
	}
	a1, a2, b1 := mk("alice"), mk("alice"), mk("bob")
	n, err := st.EndSessions(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range []string{a1, a2} {
		_, err := ss.Get(ctx, id)
		require.ErrorIs(t, err, server.ErrNoSession)
	}
	_, err = ss.Get(ctx, b1)
	require.NoError(t, err)
	n, err = st.EndSessions(ctx, "alice")
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, st.EndSession(ctx, b1))
	_, err = ss.Get(ctx, b1)
	require.ErrorIs(t, err, server.ErrNoSession)
	require.NotContains(t, d.keys(t), "wsauth:subject-sessions:bob", "the last session took its index along")
}

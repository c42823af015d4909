package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	logging.Disable() // go-redis logs every failed dial of an outage to stderr
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestStopRestart: Stop is an outage that keeps the data, Kill a crash that loses it; both
// come back on the same socket, and the same client reconnects by itself.
func TestStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	s.Stop(t)
	require.Error(t, c.Ping(ctx).Err(), "the server is down")
	s.Restart(t)
	got, err := c.Get(ctx, "k").Result()
	require.NoError(t, err, "the client reconnects without help")
	require.Equal(t, "v", got, "Stop saved the data")

	require.NoError(t, c.Set(ctx, "k2", "v2", 0).Err())
	s.Kill(t)
	s.Restart(t)
	require.ErrorIs(t, c.Get(ctx, "k2").Err(), redis.Nil, "Kill lost what was not saved")
	require.NoError(t, c.Get(ctx, "k").Err(), "what Stop saved is still there")
}

func TestURL(t *testing.T) {
	s := Start(t)
	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(ctxT(t)).Err())
}

// TestPassword: a server started with Password refuses clients without it; Options and URL
// carry it, and Stop and Restart still work.
func TestPassword(t *testing.T) {
	s := Start(t, Password("p@ss:w/rd#1"))
	ctx := ctxT(t)
	anon := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Options().Addr})
	t.Cleanup(func() { _ = anon.Close() })
	require.Error(t, anon.Ping(ctx).Err(), "no password, no access")

	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	require.Equal(t, "p@ss:w/rd#1", opt.Password, "the URL escapes the password")
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	s.Stop(t)
	s.Restart(t)
	require.NoError(t, s.Client(t).Get(ctx, "k").Err())
}

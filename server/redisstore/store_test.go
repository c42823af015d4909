package redisstore

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	opt, err := ParseURL("redis://:hunter2@127.0.0.1:6379/3")
	require.NoError(t, err)
	require.True(t, opt.ContextTimeoutEnabled)
	require.Equal(t, 1, opt.MaxRetries)
	require.Equal(t, 1, opt.DialerRetries)
	require.Equal(t, 3, opt.DB)
	require.Equal(t, "hunter2", opt.Password)

	opt, err = ParseURL("unix:///run/redis.sock?max_retries=5")
	require.NoError(t, err)
	require.Equal(t, "unix", opt.Network)
	require.Equal(t, 5, opt.MaxRetries, "the URL's own setting wins")

	for _, bad := range []string{
		"redis://:hunter2@host:port-is-not-a-number", "http://:hunter2@host/", "redis://:hunter2@[::1/",
		"redis://default:hunter2#x@host", // '#' unescaped: net/url quotes ":hunter2" as the port
		"redis://host:hunter2", "redis://:hunter2%zz@host", "redis://:hunter2@host/hunter2", "redis://:hunter2@host/0?db=hunter2",
	} {
		_, err = ParseURL(bad)
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), "hunter2", "an error never quotes the password")
	}
}

package redisstore

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9/logging"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/internal/redistest"
)

// exampleRedisEnv names the variable through which the examples find their Redis, as a
// deployment would.
const exampleRedisEnv = "WSAUTH_REDIS_URL"

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// go-redis logs every failed dial of an outage to stderr; the tests cause outages.
	logging.Disable()
	// Each test starts its own redis-server; the examples, which cannot, share this one.
	ok, err := redistest.Available()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var rs *redistest.Server
	if ok {
		bin, _ := redistest.Binary()
		if rs, err = redistest.StartProcess(bin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Setenv(exampleRedisEnv, rs.URL())
	} else {
		// An example cannot skip itself; without redis-server, skip them all here, as the
		// tests skip themselves.
		fmt.Fprintln(os.Stderr, "redis-server not found: apt-get install redis-server; skipping the examples and the tests")
		flag.Parse()
		skip := "^Example"
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
			skip = f.Value.String() + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
	}
	code := m.Run()
	if rs != nil {
		if err := rs.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

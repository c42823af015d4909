package interop

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cmdClient drives `wsauth connect --events json`: stdin lines are sent,
// stdout lines are the messages received, stderr lines are events.
type cmdClient struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *log[event]
	out   *log[string]
	// other is whatever stderr line is not an event, for failure messages.
	other *log[string]

	exited   chan struct{}
	exitCode int // valid once exited is closed
}

// cmdEvent is a line of --events json (cmd/wsauth/events.go and
// docs/cli.md), with the verdict the connected line will carry.
type cmdEvent struct {
	Time    time.Time  `json:"time"`
	Event   string     `json:"event"`
	Attempt int        `json:"attempt"`
	Why     string     `json:"why"`
	Action  string     `json:"action"`
	DelayMS *int64     `json:"delay_ms"`
	Code    int        `json:"code"`
	Reason  string     `json:"reason"`
	Status  int        `json:"status"`
	Expiry  *time.Time `json:"expiry"`
	Verdict string     `json:"verdict"`
	Cause   string     `json:"cause"`
	Error   string     `json:"error"`
}

func (e cmdEvent) event() event {
	ev := event{Time: e.Time, Kind: e.Event, Attempt: e.Attempt, Why: e.Why, Action: e.Action,
		Code: e.Code, Reason: e.Reason, Status: e.Status, Verdict: e.Verdict, Err: e.Error}
	if e.DelayMS != nil {
		ev.Delay = time.Duration(*e.DelayMS) * time.Millisecond
	}
	if e.Expiry != nil {
		ev.Expiry = *e.Expiry
	}
	return ev
}

func startCommand(t *testing.T, url string, args, env []string) *cmdClient {
	t.Helper()
	bin := wsauthCommand(t)
	all := append([]string{"connect", "--events", "json", "--backoff-initial", "100ms", "--backoff-max", "1s"}, args...)
	all = append(all, url)
	cmd := exec.Command(bin, all...)
	cmd.Env = append(cleanEnv(), env...)
	c := &cmdClient{cmd: cmd, log: newLog[event](), out: newLog[string](), other: newLog[string](),
		exited: make(chan struct{})}
	cmd.Stdout = &lineWriter{line: c.out.add}
	cmd.Stderr = &lineWriter{line: func(s string) {
		var e cmdEvent
		if json.Unmarshal([]byte(s), &e) == nil && e.Event != "" {
			c.log.add(e.event())
			return
		}
		c.other.add(s)
	}}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	c.stdin = stdin
	require.NoError(t, cmd.Start())
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			c.exitCode = ee.ExitCode()
		default:
			c.exitCode = -2
		}
		c.log.close()
		c.out.close()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
			return
		default:
		}
		if t.Failed() {
			// Whatever it waits for is not coming.
			cmd.Process.Kill()
			<-c.exited
			return
		}
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// cleanEnv is the test's environment without WSAUTH_ variables, so that
// the user's own token never reaches a test server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSAUTH_") {
			env = append(env, kv)
		}
	}
	return env
}

func (c *cmdClient) events() *log[event] { return c.log }

func (c *cmdClient) send(t *testing.T, text string) {
	t.Helper()
	_, err := io.WriteString(c.stdin, text+"\n")
	require.NoError(t, err, "writing to the command's stdin; events:\n%s", c.log.dump())
}

func (c *cmdClient) recv(t *testing.T) string {
	t.Helper()
	return c.out.next(t, "a line on stdout", func(string) bool { return true })
}

func (c *cmdClient) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, c.stdin.Close())
	code := c.wait(t)
	require.Equal(t, 0, code, "end of stdin closes cleanly and exits 0; events:\n%s\nstderr:\n%s", c.log.dump(), c.other.dump())
}

// gaveUpRE finds the GaveUpError's Why in the stop cause the command
// prints.
var gaveUpRE = regexp.MustCompile(`gave up \(([a-z]+)\)`)

func (c *cmdClient) waitStopped(t *testing.T) stopped {
	t.Helper()
	code := c.wait(t)
	ev := c.log.next(t, "stopped", is("stopped"))
	st := stopped{ev: ev, exit: code}
	if m := gaveUpRE.FindStringSubmatch(ev.Err); m != nil {
		st.gaveUp = m[1]
	}
	// docs/cli.md: 3 means gave up on authentication, 1 anything else.
	if st.gaveUp == "authentication" {
		require.Equal(t, 3, code, "exit code after giving up on authentication")
	} else {
		require.Equal(t, 1, code, "exit code after stopping on its own")
	}
	return st
}

func (c *cmdClient) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.exited:
		return c.exitCode
	case <-time.After(waitLong):
		t.Fatalf("the command did not exit within %s; events:\n%s\nstderr:\n%s", waitLong, c.log.dump(), c.other.dump())
		return 0
	}
}

// lineWriter hands every complete line written to it to line.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

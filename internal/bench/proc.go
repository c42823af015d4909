package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// launcher starts the child processes of one run: this same executable
// with the hidden subcommand, the run's key in the environment.
type launcher struct {
	exe string
	env []string

	mu   sync.Mutex
	kids map[*child]struct{}
}

func newLauncher(key string) (*launcher, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &launcher{exe: exe, env: childEnv(os.Environ(), key), kids: map[*child]struct{}{}}, nil
}

// childEnv is env with the run's key, and, for a binary built with -race,
// without the race runtime's second of sleep at every exit.
func childEnv(env []string, key string) []string {
	env = slices.Clone(env)
	race := "atexit_sleep_ms=0"
	i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORACE=") })
	switch {
	case i < 0:
		env = append(env, "GORACE="+race)
	case !strings.Contains(env[i], "atexit_sleep_ms"):
		env[i] += " " + race
	}
	return append(env, keyEnv+"="+key)
}

// child is a running child process.
type child struct {
	l      *launcher
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan line
	stderr *tail
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

func (l *launcher) start(ctx context.Context, s spec) (*child, error) {
	arg, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	name := s.Role
	if s.Impl != "" {
		name += "/" + s.Impl
	}
	c := &child{l: l, name: name, lines: make(chan line, 64), stderr: &tail{max: 4096}, exited: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, l.exe, childArg, string(arg))
	c.cmd.Env = l.env
	c.cmd.SysProcAttr = childAttr()
	c.cmd.Stderr = c.stderr
	c.cmd.WaitDelay = 5 * time.Second
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.kids[c] = struct{}{}
	l.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ln line
			if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
				ln = line{Kind: "error", Err: "unreadable line: " + sc.Text()}
			}
			c.lines <- ln
		}
		close(c.lines)
		// Wait only after stdout is read to its end, as exec requires.
		c.err = c.cmd.Wait()
		l.mu.Lock()
		delete(l.kids, c)
		l.mu.Unlock()
		close(c.exited)
	}()
	return c, nil
}

// killAll kills every child still running: the run ended early.
func (l *launcher) killAll() {
	l.mu.Lock()
	kids := make([]*child, 0, len(l.kids))
	for c := range l.kids {
		kids = append(kids, c)
	}
	l.mu.Unlock()
	for _, c := range kids {
		c.kill()
		<-c.exited
	}
}

// expect returns the child's next line of kind, within timeout. An error
// line, the end of its output or the timeout is an error, and a child that
// timed out is killed.
func (c *child) expect(kind string, timeout time.Duration) (line, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case ln, ok := <-c.lines:
			switch {
			case !ok:
				<-c.exited
				return line{}, c.failure(fmt.Errorf("exited before %q (%v)", kind, c.err))
			case ln.Kind == "error":
				return line{}, c.failure(errors.New(ln.Err))
			case ln.Kind == kind:
				return ln, nil
			}
		case <-tm.C:
			c.kill()
			return line{}, c.failure(fmt.Errorf("no %q within %s", kind, timeout))
		}
	}
}

// failure names the child and adds the end of its stderr.
func (c *child) failure(err error) error {
	if s := strings.TrimSpace(c.stderr.String()); s != "" {
		return fmt.Errorf("%s: %w\n%s", c.name, err, s)
	}
	return fmt.Errorf("%s: %w", c.name, err)
}

// tell sends a command line.
func (c *child) tell(cmd string) error {
	_, err := io.WriteString(c.stdin, cmd+"\n")
	return err
}

// finish waits for the child to exit on its own, killing it after
// timeout, and reports a failed exit.
func (c *child) finish(timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	go func() {
		// Drain what the child still says, so that it never blocks on
		// stdout.
		for range c.lines {
		}
	}()
	select {
	case <-c.exited:
	case <-tm.C:
		c.kill()
		<-c.exited
		return c.failure(fmt.Errorf("did not exit within %s", timeout))
	}
	if c.err != nil {
		return c.failure(c.err)
	}
	return nil
}

// stop ends the child's stdin, which tells it to shut down, and waits.
func (c *child) stop(timeout time.Duration) error {
	_ = c.stdin.Close()
	return c.finish(timeout)
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

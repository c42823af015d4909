// Package redistest starts a real redis-server for a test: its own process, listening on a
// unix socket in a temporary directory (no TCP port, so nothing to race for), without
// persistence of its own. It can stop and restart the same server, on the same socket, to
// simulate an outage.
//
// Where redis-server is not installed the test is skipped with a message naming
// `apt-get install redis-server`; with WSAUTH_REQUIRE_REDIS=1 in the environment (CI) it
// fails instead. Nothing stands in for Redis.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvRequire is the environment variable that turns a missing redis-server from a skip
// into a failure.
const EnvRequire = "WSAUTH_REQUIRE_REDIS"

// startTimeout bounds the wait for a redis-server to accept connections, and for one to
// exit; generous, for busy CI machines.
const startTimeout = 30 * time.Second

// Server is a redis-server process owned by a test.
type Server struct {
	bin      string
	dir      string
	sock     string
	password string

	mu   sync.Mutex
	proc *process
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done closes
}

// Binary returns the path of redis-server, or an error naming the package to install.
func Binary() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not found: apt-get install redis-server")
	}
	return bin, nil
}

// Available reports whether redis-server is installed; when it is not and EnvRequire is
// "1" it returns an error saying so, for a TestMain that must not skip silently.
func Available() (bool, error) {
	if _, err := Binary(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			return false, fmt.Errorf("%v (%s=1)", err, EnvRequire)
		}
		return false, nil
	}
	return true, nil
}

// Option configures a Server started by Start or StartProcess.
type Option func(*Server)

// Password makes the server require pw from its clients (requirepass); Options and URL
// carry it.
func Password(pw string) Option {
	return func(s *Server) { s.password = pw }
}

// Start starts a redis-server for t and stops it in t.Cleanup. It skips t when
// redis-server is missing, or fails t when EnvRequire is "1".
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%v (%s=1)", err, EnvRequire)
		}
		t.Skipf("%v (set %s=1 to fail instead)", err, EnvRequire)
	}
	s, err := StartProcess(bin, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// StartProcess starts a redis-server from bin (see Binary) outside any test, for examples
// and TestMain; the caller must Close it.
func StartProcess(bin string, opts ...Option) (*Server, error) {
	// A unix socket path is limited to about 100 bytes, which t.TempDir() can exceed.
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, sock: filepath.Join(dir, "redis.sock")}
	for _, o := range opts {
		o(s)
	}
	if err := s.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Options returns go-redis options for the server: a fresh value each call. The context's
// deadline bounds each command (ContextTimeoutEnabled), as redisstore expects.
func (s *Server) Options() *redis.Options {
	return &redis.Options{Network: "unix", Addr: s.sock, Password: s.password, ContextTimeoutEnabled: true}
}

// URL returns the server's address as a URL that redis.ParseURL accepts:
// unix:///…/redis.sock, or unix://:PASSWORD@/…/redis.sock with Password.
func (s *Server) URL() string {
	u := url.URL{Scheme: "unix", Path: s.sock}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	return u.String()
}

// Client returns a new client of the server, closed in t.Cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down as an orderly outage: it saves its data into its directory
// (SHUTDOWN SAVE) and exits; Restart brings it back with that data, on the same socket.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(true); err != nil {
		t.Fatal(err)
	}
}

// Kill ends the server at once (SIGKILL): a crash, its data lost.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.stop(false); err != nil {
		t.Fatal(err)
	}
}

// Restart starts the server again after Stop or Kill, on the same socket and directory, and
// returns once it answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server if it runs and removes its directory.
func (s *Server) Close() error {
	err := s.stop(false)
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

// start runs redis-server and waits until it says it is ready and answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("redistest: redis-server is already running")
	}
	args := []string{
		"--port", "0",
		"--unixsocket", s.sock,
		"--unixsocketperm", "700",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	cmd := exec.Command(s.bin, args...)
	p := &process{cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		// Copy the log and close ready at the line that says the server accepts
		// connections ("Ready to accept connections" since Redis 6, "The server is now
		// ready to accept connections" before).
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.log.Write([]byte(line + "\n"))
			if !signalled && strings.Contains(strings.ToLower(line), "ready to accept connections") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.done)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-p.done:
		return fmt.Errorf("redistest: redis-server exited before it was ready (%v):\n%s", p.err, p.log)
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redistest: redis-server not ready within %v:\n%s", startTimeout, p.log)
	}
	c := redis.NewClient(s.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redistest: redis-server does not answer PING: %w\n%s", err, p.log)
	}
	s.proc = p
	return nil
}

// stop ends the running server, if any: with save, by SHUTDOWN SAVE; else by SIGKILL.
func (s *Server) stop(save bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if save {
		opt := s.Options()
		// SHUTDOWN's connection just closes; go-redis would retry the command.
		opt.MaxRetries, opt.DialerRetries = -1, 1
		c := redis.NewClient(opt)
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		_ = c.ShutdownSave(ctx).Err()
		cancel()
		_ = c.Close()
	} else {
		_ = p.cmd.Process.Kill()
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redistest: redis-server did not exit within %v:\n%s", startTimeout, p.log)
	}
	if save {
		if st, err := os.Stat(filepath.Join(s.dir, "dump.rdb")); err != nil || st.Size() == 0 {
			return fmt.Errorf("redistest: SHUTDOWN SAVE left no dump.rdb:\n%s", p.log)
		}
	}
	return nil
}

// lockedBuffer collects a process's log from two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

package main

import (
	"bufio"
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

// serverProc is one running server child.
type serverProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan msg
	stderr *tail
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// startServer starts a server child listening on addr and waits for it
// to say it is ready; it returns when it was listening.
func startServer(addr, hexKey string, timeout time.Duration) (*serverProc, time.Time, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, time.Time{}, err
	}
	p := &serverProc{lines: make(chan msg, 16), stderr: &tail{max: 4096}, exited: make(chan struct{})}
	p.cmd = exec.Command(exe, serverArg, addr)
	p.cmd.Env = childEnv(os.Environ(), hexKey)
	p.cmd.SysProcAttr = childAttr()
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, time.Time{}, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, time.Time{}, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var m msg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = msg{Kind: "error", Err: "unreadable line: " + sc.Text()}
			}
			p.lines <- m
		}
		close(p.lines)
		p.err = p.cmd.Wait() // only after stdout is read to its end
		close(p.exited)
	}()
	m, err := p.expect("ready", timeout)
	if err != nil {
		p.kill()
		return nil, time.Time{}, err
	}
	return p, time.Unix(0, m.At), nil
}

// childEnv is env with the run's key, and, for a binary built with -race,
// without the race runtime's second of sleep at every exit.
func childEnv(env []string, hexKey string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, keyEnv+"=") })
	race := "atexit_sleep_ms=0"
	i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORACE=") })
	switch {
	case i < 0:
		env = append(env, "GORACE="+race)
	case !strings.Contains(env[i], "atexit_sleep_ms"):
		env[i] += " " + race
	}
	return append(env, keyEnv+"="+hexKey)
}

// expect returns the child's next line of kind within timeout; an error
// line, the end of its output or the timeout is an error.
func (p *serverProc) expect(kind string, timeout time.Duration) (msg, error) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case m, ok := <-p.lines:
			switch {
			case !ok:
				<-p.exited
				return msg{}, p.failure(fmt.Errorf("exited before %q (%v)", kind, p.err))
			case m.Kind == "error":
				return msg{}, p.failure(errors.New(m.Err))
			case m.Kind == kind:
				return m, nil
			}
		case <-tm.C:
			return msg{}, p.failure(fmt.Errorf("no %q within %s", kind, timeout))
		}
	}
}

// report asks the server for what it recorded.
func (p *serverProc) report(timeout time.Duration) (*records, error) {
	if _, err := io.WriteString(p.stdin, "report\n"); err != nil {
		return nil, p.failure(err)
	}
	m, err := p.expect("records", timeout)
	if err != nil {
		return nil, err
	}
	return m.Records, nil
}

// goingAway makes the server send going_away on every connection and
// returns on how many it was delivered.
func (p *serverProc) goingAway(timeout time.Duration) (int, error) {
	if _, err := io.WriteString(p.stdin, "going_away\n"); err != nil {
		return 0, p.failure(err)
	}
	m, err := p.expect("going_away", timeout)
	return m.N, err
}

// stop stops the server gracefully (SIGTERM, or the end of its stdin
// where there is no SIGTERM) and waits for it to exit.
func (p *serverProc) stop(timeout time.Duration) error {
	if stopSignal != nil {
		if err := p.cmd.Process.Signal(stopSignal); err != nil {
			return p.failure(err)
		}
	} else {
		_ = p.stdin.Close()
	}
	if _, err := p.expect("stopped", timeout); err != nil {
		p.kill()
		return err
	}
	return p.wait(timeout)
}

// kill kills the server at once, as a crash would, and waits for it.
func (p *serverProc) kill() {
	_ = p.cmd.Process.Signal(killSignal)
	go func() {
		for range p.lines { // drain, so that the reader reaches Wait
		}
	}()
	<-p.exited
}

// wait waits for the child to exit after it stopped, killing it after
// timeout.
func (p *serverProc) wait(timeout time.Duration) error {
	go func() {
		for range p.lines {
		}
	}()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-p.exited:
	case <-tm.C:
		_ = p.cmd.Process.Signal(killSignal)
		<-p.exited
		return p.failure(fmt.Errorf("did not exit within %s", timeout))
	}
	if p.err != nil {
		return p.failure(p.err)
	}
	return nil
}

// failure adds the end of the child's stderr.
func (p *serverProc) failure(err error) error {
	if s := strings.TrimSpace(p.stderr.String()); s != "" {
		return fmt.Errorf("server: %w\n%s", err, s)
	}
	return fmt.Errorf("server: %w", err)
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

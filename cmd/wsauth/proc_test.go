package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

// Generous deadlines: CI is a busy 2-core machine running these with -race.
const (
	waitTimeout = 20 * time.Second
	exitTimeout = 30 * time.Second
)

// testSecret is the HMAC key of the servers the tests start.
const testSecret = "cli-test-secret-0123456789"

// lines collects what a subprocess writes, line by line, and lets a test
// wait for a line.
type lines struct {
	mu      sync.Mutex
	partial []byte
	all     []string
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// snapshot returns the complete lines so far.
func (l *lines) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// text returns everything written so far.
func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.all {
		b.WriteString(s + "\n")
	}
	return b.String() + string(l.partial)
}

// waitFor waits until a line after the first `from` lines satisfies ok,
// and returns its index.
func (l *lines) waitFor(t testing.TB, what string, from int, ok func(string) bool) int {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.all); i++ {
			if ok(l.all[i]) {
				l.mu.Unlock()
				return i
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %s; got:\n%s", what, waitTimeout, l.text())
		}
	}
}

// waitLine waits for a line equal to want, after line from.
func (l *lines) waitLine(t testing.TB, from int, want string) int {
	t.Helper()
	return l.waitFor(t, "line "+want, from, func(s string) bool { return s == want })
}

// proc is a running wsauth subprocess.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *lines
	stderr *lines
	done   chan struct{}
	err    error
}

// start runs the binary with args; env adds to a cleaned environment.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	p := &proc{t: t, cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	// A grandchild (a token command) that keeps our pipes open must not
	// hold Wait forever.
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	p.stdin = in
	require.NoError(t, cmd.Start())
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("wsauth %s\n--- stdout:\n%s--- stderr:\n%s", strings.Join(cmd.Args[1:], " "), p.stdout.text(), p.stderr.text())
		}
	})
	return p
}

// cleanEnv is the test's environment without the variables wsauth reads,
// so that a developer's own settings cannot leak into the tests.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSAUTH_") {
			env = append(env, kv)
		}
	}
	return env
}

// send writes one line to the process's stdin.
func (p *proc) send(line string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.t, err)
}

// closeStdin ends the process's input.
func (p *proc) closeStdin() {
	p.t.Helper()
	require.NoError(p.t, p.stdin.Close())
}

// exitCode waits for the process to end and returns its exit code.
func (p *proc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		p.t.Fatalf("wsauth %v did not exit within %s; stderr:\n%s", p.cmd.Args[1:], exitTimeout, p.stderr.text())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(p.t, p.err)
	return 0
}

// requireExit waits for the process to end with code.
func (p *proc) requireExit(code int) {
	p.t.Helper()
	got := p.exitCode()
	require.Equal(p.t, code, got, "exit code of wsauth %v; stderr:\n%s", p.cmd.Args[1:], p.stderr.text())
}

// runBin runs the binary to completion and returns its exit code, stdout and
// stderr.
func runBin(t testing.TB, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := start(t, env, args...)
	p.closeStdin()
	code := p.exitCode()
	return code, p.stdout.text(), p.stderr.text()
}

// serveProc is `wsauth serve` as a subprocess.
type serveProc struct {
	*proc
	base string // http://127.0.0.1:PORT
	ws   string // ws://127.0.0.1:PORT/ws
}

// startServe runs `wsauth serve` on a free port with the test secret, test
// controls and JSON logs, and waits until it answers its health check.
func startServe(t testing.TB, extra ...string) *serveProc {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--secret", testSecret, "--test-controls", "--log-format", "json"}, extra...)
	p := start(t, nil, args...)
	t.Cleanup(func() {
		// Graceful stop: SIGTERM, which closes every WebSocket with 1001.
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(exitTimeout):
			}
		}
	})
	const prefix = "wsauth serve: listening on "
	i := p.stdout.waitFor(t, "listening line", 0, func(s string) bool { return strings.HasPrefix(s, prefix) })
	base := strings.TrimPrefix(p.stdout.snapshot()[i], prefix)
	s := &serveProc{proc: p, base: base, ws: strings.Replace(strings.Replace(base, "https://", "wss://", 1), "http://", "ws://", 1) + "/ws"}
	if strings.HasPrefix(base, "http://") {
		s.waitHealthy(t)
	}
	return s
}

// waitHealthy polls the health endpoint until it answers, with a deadline.
func (s *serveProc) waitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				http.DefaultClient.CloseIdleConnections()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not healthy within %s: %v", waitTimeout, err)
		}
		<-tick.C
	}
}

// control posts to a fault hook of the server and returns how many
// connections it affected.
func (s *serveProc) control(t testing.TB, name string, body any) int {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/control/"+name, bytes.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "POST /control/%s", name)
	var out struct {
		Affected int `json:"affected"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	http.DefaultClient.CloseIdleConnections()
	return out.Affected
}

// waitStarted waits until the echo application has the connection of
// subject: the server has registered it, so the fault hooks see it. (A
// client reports "connected" as soon as the 101 arrives, a moment before
// the server tracks the connection.)
func (s *serveProc) waitStarted(t testing.TB, subject string) {
	t.Helper()
	s.waitLog(t, "connection started for "+subject, func(r logRecord) bool {
		return r.str("msg") == "connection started" && r.str("subject") == subject
	})
}

// logRecord is one JSON log line of serve.
type logRecord map[string]any

func (r logRecord) str(k string) string {
	s, _ := r[k].(string)
	return s
}

func (r logRecord) num(k string) int {
	f, _ := r[k].(float64)
	return int(f)
}

// waitLog waits for a log record of serve that satisfies ok.
func (s *serveProc) waitLog(t testing.TB, what string, ok func(logRecord) bool) logRecord {
	t.Helper()
	var rec logRecord
	s.stderr.waitFor(t, what, 0, func(line string) bool {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) != nil || !ok(r) {
			return false
		}
		rec = r
		return true
	})
	return rec
}

// logs returns the log records of serve so far that satisfy ok.
func (s *serveProc) logs(ok func(logRecord) bool) []logRecord {
	var out []logRecord
	for _, line := range s.stderr.snapshot() {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && ok(r) {
			out = append(out, r)
		}
	}
	return out
}

// waitEnded waits for serve to log the end of subject's connection and
// returns the close code the client sent.
func (s *serveProc) waitEnded(t testing.TB, subject string) int {
	t.Helper()
	r := s.waitLog(t, "connection ended for "+subject, func(r logRecord) bool {
		return r.str("msg") == "connection ended" && r.str("subject") == subject
	})
	return r.num("close_code")
}

// accepted returns the handshakes serve accepted for subject, up to now:
// it first syncs with the server's log.
func (s *serveProc) accepted(t testing.TB, subject string) []logRecord {
	t.Helper()
	s.sync(t)
	return s.logs(func(r logRecord) bool {
		return r.str("msg") == "auth accepted" && r.str("stage") == "handshake" && r.str("subject") == subject
	})
}

var syncs atomic.Int64

// sync waits until the server has logged everything it did before now:
// lines from two processes' pipes arrive in no particular order, so a test
// that saw a client's output asks the server for a fresh log line (a ticket
// request) and waits for it.
func (s *serveProc) sync(t testing.TB) {
	t.Helper()
	subject := fmt.Sprintf("sync-%d", syncs.Add(1))
	iss, err := server.NewHMACIssuer([]byte(testSecret))
	require.NoError(t, err)
	tok, err := iss.Issue(subject, time.Minute)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/ws-ticket", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s.waitLog(t, "log line of "+subject, func(r logRecord) bool { return r.str("subject") == subject })
}

// mint mints a token for subject with the binary itself, as a user would.
func mint(t testing.TB, subject string) string {
	t.Helper()
	code, out, errOut := runBin(t, nil, "token", "--secret", testSecret, "--sub", subject, "--ttl", "1h")
	require.Equal(t, 0, code, errOut)
	return strings.TrimSpace(out)
}

// event is one line of `connect --events json`.
type event struct {
	Time        time.Time `json:"time"`
	Event       string    `json:"event"`
	Attempt     *int      `json:"attempt"`
	Why         string    `json:"why"`
	Action      string    `json:"action"`
	DelayMS     *int64    `json:"delay_ms"`
	Code        int       `json:"code"`
	Reason      string    `json:"reason"`
	Status      int       `json:"status"`
	Subprotocol string    `json:"subprotocol"`
	Cause       string    `json:"cause"`
	Error       string    `json:"error"`
}

// waitEvent waits for a JSON event after line from, returning its index.
func waitEvent(t testing.TB, p *proc, from int, ok func(event) bool) int {
	t.Helper()
	return p.stderr.waitFor(t, "event", from, func(line string) bool {
		var e event
		return json.Unmarshal([]byte(line), &e) == nil && ok(e)
	})
}

func isEvent(name string) func(event) bool {
	return func(e event) bool { return e.Event == name }
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files, for `serve --tls-cert` and `connect --cacert`.
func selfSignedCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "wsauth test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

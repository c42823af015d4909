package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
)

// A token source of the command line: where raw tokens come from. The
// client's TokenCache sits in front of each; the sources themselves never
// cache.
//
//	--token / WSAUTH_TOKEN   a fixed token
//	--token-file             the file's content, read again on every attempt
//	--token-command          the command's stdout, run again on every attempt
//	--oauth2-token-url …     OAuth 2.0 client credentials, cached until near expiry
type tokenSource struct {
	// name is the flag that chose the source, for messages.
	name  string
	fetch wsauth.TokenFunc
	// everyAttempt asks for the cached token to be dropped before every
	// connection attempt, so that the source is consulted each time.
	everyAttempt bool
}

// maxTokenSize bounds what is read from a token file or command.
const maxTokenSize = 64 << 10

// staticSource always yields token.
func staticSource(name, token string, scrub *scrubber) *tokenSource {
	scrub.Add(token)
	tok := bearer(token)
	return &tokenSource{name: name, fetch: func(context.Context) (*oauth2.Token, error) {
		c := *tok
		return &c, nil
	}}
}

// fileSource reads path on every call: a sidecar that rotates the file is
// picked up at the next connection attempt or refresh.
func fileSource(path string, scrub *scrubber) *tokenSource {
	return &tokenSource{name: "--token-file", everyAttempt: true, fetch: func(context.Context) (*oauth2.Token, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxTokenSize+1))
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		return tokenFrom("token file "+path, data, scrub)
	}}
}

// defaultTokenCommandTimeout bounds one run of --token-command.
const defaultTokenCommandTimeout = 10 * time.Second

// commandSource runs command with sh -c on every call; its trimmed stdout is
// the token. Its stderr goes to ours (it is the user's own command, and the
// place where it explains a failure). A run that outlasts timeout is killed.
func commandSource(command string, timeout time.Duration, stderr io.Writer, scrub *scrubber) *tokenSource {
	return &tokenSource{name: "--token-command", everyAttempt: true, fetch: func(ctx context.Context) (*oauth2.Token, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", command)
		var out limitedBuffer
		out.max = maxTokenSize + 1
		cmd.Stdout = &out
		cmd.Stderr = stderr
		// A grandchild that keeps stdout open must not hold us past the
		// timeout.
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("token command: no token within %s", timeout)
		}
		if err != nil {
			// The error names the exit status, never the output.
			return nil, fmt.Errorf("token command: %w", err)
		}
		return tokenFrom("token command", out.Bytes(), scrub)
	}}
}

// oauth2Source fetches tokens with the OAuth 2.0 client-credentials grant
// through hc (which carries --cacert). The client's TokenCache keeps each
// token until shortly before it expires, and turns the endpoint's refusal
// into a wsauth.HTTPError, which the client treats as a rejected credential
// for a 401 or 403.
func oauth2Source(cfg *clientcredentials.Config, hc *http.Client, scrub *scrubber) *tokenSource {
	scrub.Add(cfg.ClientSecret)
	return &tokenSource{name: "--oauth2-token-url", fetch: func(ctx context.Context) (*oauth2.Token, error) {
		tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
		if err != nil {
			return nil, err
		}
		scrub.Add(tok.AccessToken)
		return tok, nil
	}}
}

// tokenFrom makes a token out of what a file or command produced.
func tokenFrom(what string, data []byte, scrub *scrubber) (*oauth2.Token, error) {
	if len(data) > maxTokenSize {
		return nil, fmt.Errorf("%s: more than %d bytes", what, maxTokenSize)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil, fmt.Errorf("%s: empty", what)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%s: more than one line", what)
	}
	scrub.Add(s)
	return bearer(s), nil
}

// bearer wraps a raw token. The client's token cache reads a JWT's exp
// claim, so that refreshes and the cache plan ahead of it.
func bearer(s string) *oauth2.Token {
	return &oauth2.Token{AccessToken: s, TokenType: "Bearer"}
}

// freshEachAttempt drops the cached token before every connection attempt,
// so that a token file or command is consulted each time. A token the server
// rejected stays rejected: the provider reports it to the cache (Reject),
// and the cache refuses to hand it out again even when the file still holds
// it.
type freshEachAttempt struct {
	inner wsauth.Authenticator
	cache *wsauth.TokenCache
}

func (f *freshEachAttempt) Prepare(ctx context.Context, why wsauth.Reason, hs *wsauth.Handshake) (wsauth.Proof, error) {
	f.cache.Invalidate(nil)
	return f.inner.Prepare(ctx, why, hs)
}

// limitedBuffer keeps at most max bytes and drops the rest, so that a
// runaway command cannot fill memory.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

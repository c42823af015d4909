package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/wsauth/wsauth/server"
)

type tokenFlags struct {
	secret string
	sub    string
	ttl    time.Duration
}

func tokenCommand() *command {
	return &command{
		name:    "token",
		summary: "mint a token the reference server accepts (wsauth serve --secret)",
		usage:   "--secret KEY [--sub NAME] [--ttl D]",
		help: `
Print a token signed with KEY (HMAC-SHA256, JWT compact form, claims sub, iat, exp, jti),
as 'wsauth serve --secret KEY' and server.NewHMACIssuer([]byte(KEY)) verify it. Only the
token is printed, on one line, so that it can be captured:

  export WSAUTH_TOKEN=$(wsauth token --secret "$KEY" --sub alice --ttl 10m)

Every run mints a different token (fresh jti), even within the same second.`,
		groups: []flagGroup{{"Flags", []string{"secret", "sub", "ttl"}}},
		flags: func() (*flag.FlagSet, any) {
			fs := flag.NewFlagSet("token", flag.ContinueOnError)
			f := &tokenFlags{}
			fs.StringVar(&f.secret, "secret", "", "HMAC `KEY`, at least 16 bytes; required unless WSAUTH_SECRET is set")
			fs.StringVar(&f.sub, "sub", printedTokenSub, "subject `NAME`: who the token says its bearer is")
			fs.DurationVar(&f.ttl, "ttl", defaultTokenTTL, "lifetime `D` of the token")
			return fs, f
		},
		run: func(_ context.Context, cfg any, args []string, s stdio) int {
			tok, err := mintToken(cfg.(*tokenFlags), args, s.getenv)
			if err != nil {
				return fail(s, "token", err)
			}
			fmt.Fprintln(s.out, tok)
			return exitOK
		},
	}
}

func mintToken(f *tokenFlags, args []string, getenv func(string) string) (string, error) {
	if len(args) > 0 {
		return "", usagef("takes no arguments, got %q", args)
	}
	secret := f.secret
	if secret == "" {
		secret = getenv(envSecret)
	}
	if secret == "" {
		return "", usagef("--secret (or %s) is required", envSecret)
	}
	if len(secret) < minSecretLen {
		return "", usagef("--secret must be at least %d bytes", minSecretLen)
	}
	if f.sub == "" {
		return "", usagef("--sub must not be empty")
	}
	if f.ttl <= 0 {
		return "", usagef("--ttl must be positive")
	}
	iss, err := server.NewHMACIssuer([]byte(secret))
	if err != nil {
		return "", usagef("--secret: %v", err)
	}
	return iss.Issue(f.sub, f.ttl)
}

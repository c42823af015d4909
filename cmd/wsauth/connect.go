package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/wsauth/wsauth"
)

// runConnect runs a configured connect: one client, a pump from stdin to
// Send, and Receive printed on stdout. It returns the exit code.
func runConnect(ctx context.Context, cfg *connectConfig, s stdio) int {
	sink := newEventSink(s.err, cfg.events, cfg.scrub)
	if cfg.oauthHC != nil {
		defer cfg.oauthHC.CloseIdleConnections()
	}
	c, err := wsauth.New(cfg.url.String(), clientOptions(cfg, sink))
	if err != nil {
		if errors.Is(err, wsauth.ErrInsecureTransport) {
			err = usagef("%s is neither TLS (wss://) nor loopback: the credential would travel in clear text; use wss:// or --insecure", cfg.scrub.URL(cfg.url))
		}
		return fail(s, "connect", err)
	}

	var closeOnce sync.Once
	closeClient := func(cause string) {
		closeOnce.Do(func() {
			sink.note("closing", cause, nil)
			c.Close()
		})
	}
	go pumpStdin(ctx, c, cfg, s.in, sink, closeClient)
	go func() {
		select {
		case <-ctx.Done():
			closeClient("signal")
		case <-c.Done():
		}
	}()

	out := &printer{w: s.out, json: cfg.output == "json"}
	var outErr error
	for {
		typ, data, err := c.Receive(context.Background())
		if err != nil {
			break
		}
		if outErr = out.print(typ, data); outErr != nil {
			closeClient("output")
			break
		}
	}
	c.Close()
	sink.waitStopped(5 * time.Second)
	code := exitCode(c.Err())
	if outErr != nil {
		fmt.Fprintf(s.err, "wsauth connect: writing to stdout: %v\n", outErr)
		return exitFailure
	}
	if code != exitOK && cfg.events == eventsNone {
		fmt.Fprintf(s.err, "wsauth connect: %s\n", cfg.scrub.Error(c.Err()))
	}
	return code
}

// exitCode maps the client's stop cause to the exit code.
func exitCode(err error) int {
	var gu *wsauth.GaveUpError
	switch {
	case errors.As(err, &gu) && gu.Why == "authentication":
		return exitAuth
	case err == nil || errors.Is(err, wsauth.ErrClosed):
		return exitOK
	}
	return exitFailure
}

// clientOptions turns the configuration into the client's options.
func clientOptions(cfg *connectConfig, sink *eventSink) *wsauth.Options {
	o := &wsauth.Options{
		Dialect:       cfg.dialect,
		TLSConfig:     cfg.tlsConfig,
		Header:        cfg.header,
		Subprotocols:  cfg.subprotocols,
		AllowInsecure: cfg.insecure,
		OnEvent:       sink.clientEvent,
		Liveness:      wsauth.Liveness{PingInterval: cfg.ping},
		Reconnect: wsauth.ReconnectPolicy{
			MaxAuthFailures: cfg.maxAuthFailures,
			Backoff:         &wsauth.FullJitter{Initial: cfg.backoffInitial, Multiplier: 2, Max: cfg.backoffMax},
			Classify:        reauthOn(cfg.reauthCodes),
		},
		Renewal: wsauth.RenewalPolicy{Strategy: cfg.renewal, Lead: cfg.refreshLead},
	}
	if cfg.ping == 0 {
		o.Liveness.PingInterval = -1 // off
	}
	var cache *wsauth.TokenCache
	if cfg.source != nil {
		// One cache for the connection attempts and the refresher.
		cache = wsauth.NewTokenCache(cfg.source.fetch, 0)
		o.Renewal.Tokens = cache
	}
	switch cfg.auth {
	case "ticket":
		o.Auth = &wsauth.TicketAuth{Endpoint: cfg.ticketURL, Tokens: cache, Param: cfg.param}
	case "query":
		o.Auth = &wsauth.QueryAuth{Tokens: cache, Param: cfg.param}
	case "first-message":
		o.Auth = &wsauth.FirstMessageAuth{Tokens: cache}
	case "header":
		o.Auth = &wsauth.HeaderAuth{Tokens: cache}
	case "subprotocol":
		o.Auth = &wsauth.SubprotocolAuth{Tokens: cache, Prefix: cfg.bearerPrefix}
	case "cookie":
		o.Auth = &wsauth.CookieAuth{LoginURL: cfg.loginURL, LoginBody: cfg.loginBody, Origin: cfg.origin}
	}
	if o.Auth != nil && cache != nil && cfg.source.everyAttempt {
		o.Auth = &freshEachAttempt{inner: o.Auth, cache: cache}
	}
	return o
}

// reauthOn is the policy override of --reauth-codes: those close codes
// mean "fresh credentials", the rest is the client's table.
func reauthOn(codes []wsauth.StatusCode) func(wsauth.Ending) wsauth.Action {
	if len(codes) == 0 {
		return nil
	}
	return func(e wsauth.Ending) wsauth.Action {
		if e.Code != 0 && slices.Contains(codes, e.Code) {
			return wsauth.ActionReauth
		}
		return wsauth.ActionDefault
	}
}

// pumpStdin sends every line of in as a text message, in order, each once
// the connection is authenticated (Send queues until then). At the end of
// in it waits for a first connection and --wait, then closes with 1000.
func pumpStdin(ctx context.Context, c *wsauth.Client, cfg *connectConfig, in io.Reader, sink *eventSink, closeClient func(string)) {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, rerr := r.ReadString('\n')
		if line != "" || rerr == nil {
			line = trimEOL(line)
			if err := c.SendText(ctx, line); err != nil {
				if !errors.Is(err, wsauth.ErrDeliveryUnknown) {
					return // the client stopped, or a signal: that path ends the command
				}
				// The connection died under this frame; the client never
				// resends on its own, and neither does the command.
				sink.note("send_failed", "", err)
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				sink.note("stdin_error", "", rerr)
			}
			break
		}
	}
	if c.WaitConnected(ctx) != nil {
		return
	}
	if cfg.wait > 0 {
		t := time.NewTimer(cfg.wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-c.Done():
			return
		}
	}
	closeClient("eof")
}

func trimEOL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
		if n := len(s); n > 0 && s[n-1] == '\r' {
			s = s[:n-1]
		}
	}
	return s
}

// printer writes received messages on stdout, one line each.
type printer struct {
	w    io.Writer
	json bool
}

// binaryPrefix marks a binary message in text output.
const binaryPrefix = "base64:"

type messageJSON struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

func (p *printer) print(typ wsauth.MessageType, data []byte) error {
	var line []byte
	switch {
	case p.json:
		m := messageJSON{Type: "text", Data: string(data)}
		if typ == wsauth.MessageBinary {
			m = messageJSON{Type: "binary", Data: base64.StdEncoding.EncodeToString(data)}
		}
		var err error
		if line, err = json.Marshal(m); err != nil {
			return err
		}
	case typ == wsauth.MessageBinary:
		line = append([]byte(binaryPrefix), base64.StdEncoding.EncodeToString(data)...)
	default:
		line = data
	}
	// One write per message, so that a reader of the pipe gets whole lines.
	_, err := p.w.Write(append(line, '\n'))
	return err
}

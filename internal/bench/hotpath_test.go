package main

import (
	"context"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/server"
)

// The hot paths as go test benchmarks, raw coder/websocket against wsauth,
// with the echo server in a process of its own (the command's raw server,
// started through the same re-execution), so that -benchmem counts the
// client's allocations only:
//
//	go test -run '^$' -bench . -benchmem ./internal/bench
//
// The root package's bench_test.go has in-process variants.

// benchServer starts the raw echo server and returns its URL and a token
// minter with its key.
func benchServer(b testing.TB) (string, tokens) {
	b.Helper()
	key := hex.EncodeToString(server.RandomKey())
	l, err := newLauncher(key)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bn := &bench{l: l}
	srv, err := bn.startServer(ctx, roleRawServer)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.stop(); err != nil {
			b.Error(err)
		}
		cancel()
	})
	iss, err := issuerFromKey(key)
	if err != nil {
		b.Fatal(err)
	}
	return srv.url(), tokens{iss}
}

var hotImpls = []string{implRaw, implWS, implWSInt}

func dialForBench(b *testing.B, impl, url string, t tokens) endpoint {
	b.Helper()
	if impl == implWSInt && !hasReceiveInto() {
		b.Skip("wsauth.Client has no ReceiveInto in this build")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep, err := dialEndpoint(ctx, impl, url, t, benchSize)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ep.close)
	return ep
}

const (
	benchSize   = 64
	benchWindow = 128
)

// BenchmarkRoundTrip: send one message, wait for its echo.
func BenchmarkRoundTrip(b *testing.B) {
	url, t := benchServer(b)
	msg := payload(benchSize)
	for _, impl := range hotImpls {
		b.Run(impl, func(b *testing.B) {
			ep := dialForBench(b, impl, url, t)
			bg := context.Background()
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				if err := ep.send(bg, msg); err != nil {
					b.Fatal(err)
				}
				if err := ep.recv(bg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPipelined: one goroutine sends b.N messages while another
// receives their echoes, the sender at most benchWindow messages ahead (as
// the command's pipelined figure).
func BenchmarkPipelined(b *testing.B) {
	url, t := benchServer(b)
	msg := payload(benchSize)
	for _, impl := range hotImpls {
		b.Run(impl, func(b *testing.B) {
			ep := dialForBench(b, impl, url, t)
			bg := context.Background()
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			var sendErr error
			window := make(chan struct{}, benchWindow)
			wg.Go(func() {
				for range b.N {
					window <- struct{}{}
					if sendErr = ep.send(bg, msg); sendErr != nil {
						return
					}
				}
			})
			for range b.N {
				if err := ep.recv(bg); err != nil {
					b.Fatal(err)
				}
				<-window
			}
			wg.Wait()
			if sendErr != nil {
				b.Fatal(sendErr)
			}
		})
	}
}

// BenchmarkDialClose: open a connection with header authentication and
// close it with the close handshake, one after another (the command's
// dial figure).
func BenchmarkDialClose(b *testing.B) {
	url, t := benchServer(b)
	bg := context.Background()
	b.Run(implRaw, func(b *testing.B) {
		tok, err := t.mint()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			ws, err := rawDial(bg, url, tok, nil)
			if err != nil {
				b.Fatal(err)
			}
			_ = ws.Close(websocket.StatusNormalClosure, "")
		}
	})
	b.Run(implWS, func(b *testing.B) {
		ts, err := t.static()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			c, err := wsauth.Dial(bg, url, wsauthOptions(ts, 0))
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

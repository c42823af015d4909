package wsauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// The benchmarks compare the client with raw coder/websocket against the
// same loopback server in the same run, so that the cost of the queue, the
// single reader and the dialect's inspection is visible:
//
//	go test -run '^$' -bench . -benchmem
func benchServer(b *testing.B, echo bool) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.SetReadLimit(-1)
		for {
			typ, data, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if echo && ws.Write(r.Context(), typ, data) != nil {
				return
			}
		}
	}))
	b.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

var benchPayload = []byte(strings.Repeat("x", 128))

func BenchmarkEchoRoundTrip(b *testing.B) {
	ctx := context.Background()
	b.Run("raw-coder", func(b *testing.B) {
		ws, _, err := websocket.Dial(ctx, benchServer(b, true), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ws.CloseNow()
		b.SetBytes(int64(len(benchPayload)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := ws.Write(ctx, websocket.MessageText, benchPayload); err != nil {
				b.Fatal(err)
			}
			if _, _, err := ws.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wsauth", func(b *testing.B) {
		c, err := Dial(ctx, benchServer(b, true), &Options{Liveness: Liveness{PingInterval: -1}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.SetBytes(int64(len(benchPayload)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := c.Send(ctx, MessageText, benchPayload); err != nil {
				b.Fatal(err)
			}
			if _, _, err := c.Receive(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReceiveInto is the round trip with a reused receive buffer:
// the client's side allocates nothing per message.
func BenchmarkReceiveInto(b *testing.B) {
	ctx := context.Background()
	c, err := Dial(ctx, benchServer(b, true), &Options{Liveness: Liveness{PingInterval: -1}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchPayload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Send(ctx, MessageText, benchPayload); err != nil {
			b.Fatal(err)
		}
		if _, buf, err = c.ReceiveInto(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendThroughput has 8 goroutines sending at once to a server
// that only reads: the queue's cost under contention.
func BenchmarkSendThroughput(b *testing.B) {
	ctx := context.Background()
	const senders = 8
	run := func(b *testing.B, send func() error) {
		b.SetBytes(int64(len(benchPayload)))
		b.ReportAllocs()
		b.ResetTimer()
		var wg sync.WaitGroup
		per := b.N/senders + 1
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if err := send(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.Run("raw-coder", func(b *testing.B) {
		ws, _, err := websocket.Dial(ctx, benchServer(b, false), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ws.CloseNow()
		run(b, func() error { return ws.Write(ctx, websocket.MessageText, benchPayload) })
	})
	b.Run("wsauth", func(b *testing.B) {
		c, err := Dial(ctx, benchServer(b, false), &Options{Liveness: Liveness{PingInterval: -1}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, func() error { return c.Send(ctx, MessageText, benchPayload) })
	})
}

package wsauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Reading. coder/websocket processes control frames (pongs, pings, the
// close) only while a read is in progress, and a read whose context ends
// closes the connection. So one goroutine at a time holds the reader's
// role on a connection (a token in physConn.rtok), and two kinds of
// goroutine take it:
//
//   - a Receive or ReceiveInto whose context cannot end reads the socket
//     itself, which costs no goroutine switch and, with ReceiveInto, no
//     allocation: the fast path of an application that receives in a
//     loop;
//   - the connection's background reader reads when no such receiver has
//     held the role for a little while (handover), so that pings are
//     answered and pongs seen while the application is busy or not
//     receiving, and hands messages to Receive through the client's inbox.
//
// Whoever holds the role hands every message it reads to the dialect
// first; protocol messages never reach the application. A message the
// background reader delivered is in the inbox before it gives the role
// back, and a receiver that takes the role looks in the inbox once more
// before it reads, so messages keep their order.

// handover is how long the role stays with the application after one of
// its receivers last had it, before the background reader takes over.
const handover = 50 * time.Millisecond

// message is one application message on its way to Receive, in a buffer of
// the pool.
type message struct {
	typ MessageType
	buf *[]byte
}

// buffers hold the messages the background reader reads; Receive gives
// them back once it has copied the message out.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooled keeps a single huge message from pinning its buffer in the
// pool.
const maxPooled = 64 << 10

func getBuf() *[]byte { return buffers.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	buffers.Put(b)
}

// readMessage reads one message into dst's capacity, growing it as needed,
// and returns the filled slice. Only the holder of the role calls it.
func (pc *physConn) readMessage(dst []byte) (MessageType, []byte, error) {
	// No context: one would arm a timer per frame; fail closes the socket
	// to end the read.
	typ, r, err := pc.ws.Reader(context.Background())
	if err != nil {
		return 0, dst, readError(err)
	}
	return pc.readBody(typ, r, dst)
}

// readPooled reads one message into a buffer of the pool, taken once the
// message has begun: an idle connection holds no buffer while it waits.
func (pc *physConn) readPooled() (MessageType, *[]byte, error) {
	typ, r, err := pc.ws.Reader(context.Background())
	if err != nil {
		return 0, nil, readError(err)
	}
	b := getBuf()
	typ, *b, err = pc.readBody(typ, r, *b)
	if err != nil {
		putBuf(b)
		return 0, nil, err
	}
	return typ, b, nil
}

// readBody reads the rest of the message r began into dst's capacity,
// growing it as needed.
func (pc *physConn) readBody(typ MessageType, r io.Reader, dst []byte) (MessageType, []byte, error) {
	dst = dst[:0]
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, max(512, cap(dst)))
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		switch {
		case err == io.EOF:
			pc.reads.Add(1)
			return typ, dst, nil
		case err != nil:
			return 0, dst, readError(err)
		}
	}
}

// violations are how coder/websocket words the protocol violations it
// detects on reading, which it answers with a close 1002 of its own; a
// message over the read limit is its ErrMessageTooBig (close 1009).
var violations = []string{
	"received header with unexpected rsv bits", "received unknown opcode",
	"received control frame payload with invalid length", "received fragmented control frame",
	"received invalid close payload", "received continuation frame without",
	"received new data message without finishing",
}

// readError marks a read error that is the server's protocol violation,
// detected by the client, as ErrProtocol.
func readError(err error) error {
	msg := err.Error()
	if errors.Is(err, websocket.ErrMessageTooBig) || slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(msg, v) }) {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return err
}

// readLoop is the background reader.
func (pc *physConn) readLoop() {
	defer pc.wg.Done()
	// Messages the dialect's Open read past its exchange come first; the
	// role is not given out before.
	for _, p := range pc.pending {
		if !pc.dispatch(MessageText, p) {
			return
		}
	}
	pc.pending = nil
	pc.rtok <- struct{}{}
	for {
		if !pc.takeRole() {
			return
		}
		// Messages a receiver split off a frame come before anything read
		// now.
		for len(pc.parts) > 0 {
			m := pc.parts[0]
			pc.parts = pc.parts[1:]
			if !pc.deliver(m) {
				pc.rtok <- struct{}{}
				return
			}
		}
		typ, b, err := pc.readPooled()
		if err != nil {
			pc.fail(err)
			pc.rtok <- struct{}{}
			return
		}
		ok := pc.dispatchBuf(typ, b)
		pc.rtok <- struct{}{}
		if !ok {
			return
		}
	}
}

// takeRole takes the reader's role for the background reader: at once
// when no receiver of the application wants it, after handover when one
// had it lately. False means the connection is done.
func (pc *physConn) takeRole() bool {
	for {
		if wait := pc.handoverLeft(); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-pc.kick:
				t.Stop()
			case <-pc.dead:
				t.Stop()
				return false
			}
			continue
		}
		select {
		case <-pc.rtok:
		case <-pc.dead:
			return false
		}
		if pc.handoverLeft() > 0 {
			// A receiver took the role in the meantime and gave it back.
			pc.rtok <- struct{}{}
			continue
		}
		return true
	}
}

// handoverLeft is how long the role still belongs to the application's
// receivers.
func (pc *physConn) handoverLeft() time.Duration {
	if pc.direct.Load() > 0 {
		return handover
	}
	last := pc.lastDirect.Load()
	if last == 0 {
		return 0
	}
	return time.Duration(last + int64(handover) - time.Now().UnixNano())
}

// dispatchBuf hands one message the background reader read to the dialect
// and the application; b goes with the message or back to the pool.
func (pc *physConn) dispatchBuf(typ MessageType, b *[]byte) bool {
	if pc.split == nil {
		if !pc.protocol(typ, *b) {
			putBuf(b)
			return !pc.isDead()
		}
		return pc.deliver(message{typ: typ, buf: b})
	}
	ok := pc.dispatch(typ, *b)
	putBuf(b)
	return ok
}

// dispatch hands data (and, for a dialect that batches, each message in
// it) to the dialect, and what is the application's to the inbox, copied
// into buffers of the pool.
func (pc *physConn) dispatch(typ MessageType, data []byte) bool {
	parts := [][]byte{data}
	if pc.split != nil {
		parts = pc.split.SplitFrame(typ, data)
	}
	for _, p := range parts {
		if !pc.protocol(typ, p) {
			if pc.isDead() {
				return false
			}
			continue
		}
		b := getBuf()
		*b = append(*b, p...)
		if !pc.deliver(message{typ: typ, buf: b}) {
			return false
		}
	}
	return true
}

// protocol gives one server message to the dialect and acts on what it
// says; it reports whether the message is the application's.
func (pc *physConn) protocol(typ MessageType, data []byte) bool {
	in := pc.c.dialect.Inspect(typ, data)
	if in.Kind == InboundAuthOK {
		if pc.settle(VerdictExplicit, in.ExpiresIn) || in.ExpiresIn <= 0 {
			return false
		}
		// A confirmation after the verdict tells the session's lifetime.
		in = Inbound{Kind: InboundExpiring, ExpiresIn: in.ExpiresIn}
	}
	switch in.Kind {
	case InboundData:
		pc.settle(VerdictFirstMessage, 0)
		pc.received.Add(1)
		return true
	case InboundReply:
		if len(in.Reply) > 0 {
			_ = pc.write(pc.ctx, MessageText, in.Reply)
		}
	case InboundIgnore:
	default:
		pc.notes.push(in)
	}
	return false
}

// deliver hands a message to Receive, waiting for room: a slow application
// slows the reading of the socket rather than growing memory without
// bound. The pinger does not count that wait against the connection.
func (pc *physConn) deliver(m message) bool {
	pc.delivering.Store(true)
	defer pc.delivering.Store(false)
	select {
	case <-pc.gate:
	case <-pc.dead:
		putBuf(m.buf)
		return false
	}
	select {
	case pc.c.inbox <- m:
		return true
	case <-pc.dead:
		putBuf(m.buf)
		return false
	}
}

// readDirect reads on pc, which the caller holds the role of, until an
// application message comes, and returns it in dst (reused and grown) or,
// with own, in a fresh slice of its own. Protocol messages are handled on
// the way. False means pc died; the role is given back either way.
func (pc *physConn) readDirect(dst []byte, own bool) (MessageType, []byte, bool) {
	defer func() {
		pc.lastDirect.Store(time.Now().UnixNano())
		pc.rtok <- struct{}{}
	}()
	if len(pc.parts) > 0 {
		m := pc.parts[0]
		pc.parts = pc.parts[1:]
		typ, data, _ := pc.c.take(m, dst, own)
		return typ, data, true
	}
	var scratch *[]byte
	if own {
		scratch = getBuf()
		defer putBuf(scratch)
		dst = *scratch
	}
	for {
		typ, data, err := pc.readMessage(dst)
		if own {
			*scratch = data
		}
		if err != nil {
			pc.fail(err)
			return 0, nil, false
		}
		dst = data
		parts := [][]byte{data}
		if pc.split != nil {
			parts = pc.split.SplitFrame(typ, data)
		}
		var first []byte
		found := false
		for _, p := range parts {
			if !pc.protocol(typ, p) {
				continue
			}
			if !found {
				first, found = p, true
				continue
			}
			// Later messages of the same frame wait with the role, ahead
			// of anything read after them.
			b := getBuf()
			*b = append(*b, p...)
			pc.parts = append(pc.parts, message{typ: typ, buf: b})
		}
		if pc.isDead() {
			return 0, nil, false
		}
		if !found {
			continue
		}
		if own {
			return typ, append([]byte(nil), first...), true
		}
		if len(parts) > 1 {
			// first may sit anywhere in data: move it to the front.
			n := copy(data, first)
			return typ, data[:n], true
		}
		return typ, first, true
	}
}

package wsauth

import (
	"context"
	"fmt"
	"sync"
)

// Confirmation. A frame handed to the operating system can still be lost
// when the connection dies with it in flight; no client can prevent that,
// but none may hide it. A pong answers a ping only after the server's
// WebSocket layer has read every frame before the ping, so a pong confirms
// every message written before its ping. The client confirms:
//
//   - on demand, for SendConfirmed, which returns only once its message is
//     confirmed (several waiting sends share one ping);
//   - on its liveness timer, when sends were written since the last
//     confirmation, so that plain sends are confirmed every few seconds;
//   - by a completed close handshake or a retirement's drain.
//
// When a connection ends with plain sends written on it after the last
// confirmation, EventUnconfirmed says how many, and with
// Limits.KeepUnconfirmed which.

// Frame is one message the client wrote.
type Frame struct {
	Type MessageType
	Data []byte
}

// confirmations is one connection's bookkeeping of written and confirmed
// sends.
type confirmations struct {
	mu        sync.Mutex
	written   int64  // sends written on the connection
	confirmed int64  // of them, the first confirmed by a pong
	kept      []kept // copies of the unconfirmed plain sends, oldest first, with KeepUnconfirmed
	round     chan struct{}
}

// kept is a copy of a plain send, with its sequence number.
type kept struct {
	seq   int64
	frame Frame
}

// wrote records a send written on the connection and returns its sequence
// number. A plain send is kept, when the client keeps them, until
// confirmed.
func (pc *physConn) wrote(typ MessageType, data []byte, keep bool) int64 {
	k := &pc.conf
	k.mu.Lock()
	defer k.mu.Unlock()
	k.written++
	if keep {
		k.kept = append(k.kept, kept{seq: k.written, frame: Frame{Type: typ, Data: append([]byte(nil), data...)}})
	}
	return k.written
}

// mustConfirm reports whether the kept sends have reached the limit, so
// that the next send waits for a confirmation first.
func (pc *physConn) mustConfirm() bool {
	n := pc.c.o.KeepUnconfirmed
	if n <= 0 {
		return false
	}
	pc.conf.mu.Lock()
	defer pc.conf.mu.Unlock()
	return len(pc.conf.kept) >= n
}

// confirm waits until every send up to seq is confirmed, pinging if no
// round that covers it is in flight. It returns an error wrapping
// ErrUnconfirmed when the connection ends first.
func (pc *physConn) confirm(ctx context.Context, seq int64) error {
	for {
		k := &pc.conf
		k.mu.Lock()
		if k.confirmed >= seq {
			k.mu.Unlock()
			return nil
		}
		if pc.isDead() {
			k.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrUnconfirmed, scrubError(pc.red, pc.err))
		}
		// A round in flight may not cover seq; then the next one will.
		round := k.round
		if round == nil {
			round = pc.startRoundLocked()
		}
		k.mu.Unlock()
		select {
		case <-round:
		case <-pc.dead:
			return fmt.Errorf("%w: %w", ErrUnconfirmed, scrubError(pc.red, pc.err))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startRoundLocked pings for everything written so far; the pong, or the
// connection's end, closes the returned channel. conf.mu must be held.
func (pc *physConn) startRoundLocked() chan struct{} {
	k := &pc.conf
	round := make(chan struct{})
	k.round = round
	target := k.written
	pc.tickMu.Lock()
	if pc.tickDone {
		// Shut down: there is nothing left to confirm with.
		pc.tickMu.Unlock()
		k.round = nil
		close(round)
		return round
	}
	pc.wg.Add(1)
	pc.tickMu.Unlock()
	go func() {
		defer pc.wg.Done()
		pc.nudge() // someone must read to see the pong
		ctx, cancel := context.WithTimeout(pc.ctx, pc.c.o.PongTimeout)
		err := pc.ws.Ping(ctx)
		cancel()
		if err != nil && pc.ctx.Err() == nil {
			pc.fail(fmt.Errorf("%w (%s)", ErrPingTimeout, pc.c.o.PongTimeout))
		}
		k.mu.Lock()
		if err == nil {
			pc.confirmedLocked(target)
		}
		k.round = nil
		k.mu.Unlock()
		close(round)
	}()
	return round
}

// confirmedLocked marks every send up to seq confirmed. conf.mu must be
// held.
func (pc *physConn) confirmedLocked(seq int64) {
	k := &pc.conf
	if seq <= k.confirmed {
		return
	}
	k.confirmed = seq
	drop := 0
	for drop < len(k.kept) && k.kept[drop].seq <= seq {
		drop++
	}
	clear(k.kept[:drop])
	k.kept = k.kept[drop:]
}

// confirmAll marks everything written confirmed: the server answered the
// close handshake or the drain's ping.
func (pc *physConn) confirmAll() {
	pc.conf.mu.Lock()
	pc.confirmedLocked(pc.conf.written)
	pc.conf.mu.Unlock()
}

// unconfirmed is what was written on the connection after its last
// confirmation: how many, and the copies kept of them.
func (pc *physConn) unconfirmed() (int, []Frame) {
	pc.conf.mu.Lock()
	defer pc.conf.mu.Unlock()
	var frames []Frame
	for _, k := range pc.conf.kept {
		frames = append(frames, k.frame)
	}
	return int(pc.conf.written - pc.conf.confirmed), frames
}

// reportUnconfirmed emits EventUnconfirmed for a connection that ended
// with unconfirmed sends.
func (c *Client) reportUnconfirmed(pc *physConn) {
	if n, kept := pc.unconfirmed(); n > 0 {
		c.emit(Event{Kind: EventUnconfirmed, Unconfirmed: n, Frames: kept})
	}
}

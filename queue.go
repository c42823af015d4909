package wsauth

import (
	"container/list"
	"sync"
)

// sendQueue orders the client's sends and lets them through one at a time,
// only to an authenticated connection. It outlives physical connections:
// while the client reconnects, sends wait here, in the order Send was
// called, and flow once a new connection has authenticated.
//
// There is no writer goroutine: the Send at the head of the queue writes
// the frame itself, so an uncontended send costs no goroutine switch.
type sendQueue struct {
	mu    sync.Mutex
	items list.List // of *sendItem, oldest first
	limit int
	err   error // the stop cause once closed

	// live is the connection sends may be written to, nil while there is
	// none (connecting, or a rotation switching connections).
	live *physConn
	// busy is set while a send is being written; idle is closed when it
	// ends, for pause.
	busy bool
	idle chan struct{}
}

// sendItem is one Send waiting for its turn.
type sendItem struct {
	// elem is the item's place in the queue, nil once it left it.
	elem *list.Element
	// wake is signalled when the item may have become able to go.
	wake chan struct{}
}

func newSendQueue(limit int) *sendQueue {
	q := &sendQueue{limit: limit}
	q.items.Init()
	return q
}

// enqueue adds a send at the tail, or fails at once when the queue is full
// or closed.
func (q *sendQueue) enqueue() (*sendItem, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return nil, q.err
	}
	if q.items.Len() >= q.limit {
		return nil, ErrQueueFull
	}
	it := &sendItem{wake: make(chan struct{}, 1)}
	it.elem = q.items.PushBack(it)
	return it, nil
}

// turn reports whether it may write now, and on which connection; when it
// may, it leaves the queue and the queue is busy until done is called.
// After the queue closed, it leaves the queue and err is the stop cause.
func (q *sendQueue) turn(it *sendItem) (pc *physConn, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		q.leaveLocked(it)
		return nil, q.err
	}
	if q.items.Front() != it.elem || q.busy || q.live == nil || q.live.isDead() {
		return nil, nil
	}
	q.leaveLocked(it)
	q.busy = true
	q.idle = make(chan struct{})
	return q.live, nil
}

// done ends the write that turn allowed.
func (q *sendQueue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	close(q.idle)
	q.wakeFrontLocked()
}

// cancel withdraws it for a Send whose context ended, unless it already
// left the queue.
func (q *sendQueue) cancel(it *sendItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.leaveLocked(it)
}

func (q *sendQueue) leaveLocked(it *sendItem) {
	if it.elem == nil {
		return
	}
	wasFront := q.items.Front() == it.elem
	q.items.Remove(it.elem)
	it.elem = nil
	if wasFront {
		q.wakeFrontLocked()
	}
}

// setLive lets sends through to pc.
func (q *sendQueue) setLive(pc *physConn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.live = pc
	q.wakeFrontLocked()
}

// pause stops sends to pc and waits for the one being written, if any.
func (q *sendQueue) pause(pc *physConn) {
	q.mu.Lock()
	if q.live == pc {
		q.live = nil
	}
	var idle chan struct{}
	if q.busy {
		idle = q.idle
	}
	q.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// len is the number of queued sends.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Len()
}

// close fails every queued send with err, and every later one.
func (q *sendQueue) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	q.live = nil
	for e := q.items.Front(); e != nil; e = e.Next() {
		signal(e.Value.(*sendItem).wake)
	}
}

// wakeFrontLocked tells the head of the queue to look again.
func (q *sendQueue) wakeFrontLocked() {
	if front := q.items.Front(); front != nil {
		signal(front.Value.(*sendItem).wake)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

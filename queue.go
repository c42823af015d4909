package wsauth

import "sync"

// sendQueue orders the client's sends and lets them through one at a time,
// only to an authenticated connection. It outlives physical connections:
// while the client reconnects, sends wait here, in the order Send was
// called, and flow once a new connection has authenticated.
//
// There is no writer goroutine: the Send at the head of the queue writes
// the frame itself, and a Send that finds the queue empty and a live
// connection idle writes at once without queueing at all, so an
// uncontended send costs neither a goroutine switch nor an allocation.
type sendQueue struct {
	mu    sync.Mutex
	head  *sendItem // oldest waiting send
	tail  *sendItem
	n     int
	limit int
	err   error // the stop cause once closed

	// live is the connection sends may be written to, nil while there is
	// none (connecting, or a rotation switching connections).
	live *physConn
	// busy is set while a send is being written; idle, when someone waits
	// for the write to end (pause), is closed when it does.
	busy bool
	idle chan struct{}
}

// sendItem is one Send waiting for its turn, in the queue's list.
type sendItem struct {
	prev, next *sendItem
	queued     bool
	// wake is signalled when the item may have become able to go.
	wake chan struct{}
}

// items are reused: a send that waits costs no allocation once the pool is
// warm.
var items = sync.Pool{New: func() any { return &sendItem{wake: make(chan struct{}, 1)} }}

// fast lets a send write at once when nothing waits before it and the live
// connection is idle; the queue is then busy until done.
func (q *sendQueue) fast() *physConn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil || q.n > 0 || q.busy || q.live == nil || q.live.isDead() {
		return nil
	}
	q.busy = true
	return q.live
}

// enqueue adds a send at the tail, or fails at once when the queue is full
// or closed.
func (q *sendQueue) enqueue() (*sendItem, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return nil, q.err
	}
	if q.n >= q.limit {
		return nil, ErrQueueFull
	}
	it := items.Get().(*sendItem)
	select {
	case <-it.wake: // a signal left from its last use
	default:
	}
	it.prev, it.next, it.queued = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = it
	} else {
		q.head = it
	}
	q.tail = it
	q.n++
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
	if q.head != it || q.busy || q.live == nil || q.live.isDead() {
		return nil, nil
	}
	q.leaveLocked(it)
	q.busy = true
	return q.live, nil
}

// release returns a send's item for reuse once it has left the queue.
func (q *sendQueue) release(it *sendItem) { items.Put(it) }

// done ends the write that turn or fast allowed.
func (q *sendQueue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	if q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
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
	if !it.queued {
		return
	}
	wasFront := q.head == it
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		q.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		q.tail = it.prev
	}
	it.prev, it.next, it.queued = nil, nil, false
	q.n--
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
		if q.idle == nil {
			q.idle = make(chan struct{})
		}
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
	return q.n
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
	for it := q.head; it != nil; it = it.next {
		signal(it.wake)
	}
}

// wakeFrontLocked tells the head of the queue to look again.
func (q *sendQueue) wakeFrontLocked() {
	if q.head != nil {
		signal(q.head.wake)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

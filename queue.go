package wsauth

import (
	"container/list"
	"sync"
)

// sendItem is one Send waiting for its outcome.
type sendItem struct {
	typ  MessageType
	data []byte
	// done receives exactly one result: nil once written, or why not.
	done chan error
	// elem is the item's place in the queue; nil once a writer took it or
	// it was removed. Guarded by the queue's mutex.
	elem *list.Element
	// abandoned is the error of a Send that gave up while a writer held
	// the item; if the writer hands it back unwritten, that is the result.
	// Guarded by the queue's mutex.
	abandoned error
}

// sendQueue is the client's bounded FIFO of sends. It outlives physical
// connections: each connection's writer takes from it while that
// connection is the live one, so sends made while reconnecting wait here
// and flow, in order, only once a new connection has authenticated.
type sendQueue struct {
	mu    sync.Mutex
	items list.List
	limit int
	err   error // the stop cause once closed
	// notify wakes the writer after a push; one writer takes at a time.
	notify chan struct{}
}

func newSendQueue(limit int) *sendQueue {
	q := &sendQueue{limit: limit, notify: make(chan struct{}, 1)}
	q.items.Init()
	return q
}

// push appends it, or fails at once when the queue is full or closed.
func (q *sendQueue) push(it *sendItem) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	if q.items.Len() >= q.limit {
		return ErrQueueFull
	}
	it.elem = q.items.PushBack(it)
	q.signal()
	return nil
}

// pushFront returns an item a writer took but never wrote, ahead of the
// rest, so order is kept.
func (q *sendQueue) pushFront(it *sendItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it.abandoned != nil {
		it.done <- it.abandoned
		return
	}
	if q.err != nil {
		it.done <- q.err
		return
	}
	it.elem = q.items.PushFront(it)
	q.signal()
}

// cancel withdraws it for a Send whose context ended with err. It reports
// whether the item was still queued: then it will never be written. When a
// writer holds it, the writer's outcome stands, except that an item handed
// back unwritten ends with err instead of waiting for the next connection.
func (q *sendQueue) cancel(it *sendItem, err error) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it.elem == nil {
		it.abandoned = err
		return false
	}
	q.items.Remove(it.elem)
	it.elem = nil
	return true
}

// take removes and returns the first item, waiting for one until stop is
// closed or the queue is closed.
func (q *sendQueue) take(stop <-chan struct{}) (*sendItem, bool) {
	for {
		q.mu.Lock()
		if q.err != nil {
			q.mu.Unlock()
			return nil, false
		}
		if front := q.items.Front(); front != nil {
			it := q.items.Remove(front).(*sendItem)
			it.elem = nil
			if q.items.Len() > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return it, true
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-stop:
			return nil, false
		}
	}
}

// len is the number of queued sends.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Len()
}

// close fails every queued send with err, and every later push.
func (q *sendQueue) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	for e := q.items.Front(); e != nil; e = e.Next() {
		it := e.Value.(*sendItem)
		it.elem = nil
		it.done <- err
	}
	q.items.Init()
	q.signal()
}

// signal wakes a waiting writer; callers hold mu.
func (q *sendQueue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

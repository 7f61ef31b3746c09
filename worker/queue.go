package worker

import (
	"sync"
	"sync/atomic"
)

// jobQueue hands messages to the handler goroutines. A push wakes one idle
// goroutine; a woken goroutine that takes a message and sees more waiting
// wakes the next before it runs its own, and only one wake-up is under way at
// a time. A burst is thus spread over as many goroutines as it keeps busy,
// while handlers that finish fast drain it without a wake-up per message
// (the wake-ups, not the handlers, were the cost of a channel per message).
// Its length is bounded by the handler slots: only a message holding a slot
// is pushed.
type jobQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []*Message
	head    int // items[head:] wait
	waiting int // goroutines in pop's Wait
	waking  int // of those, signalled and not yet back
	closed  bool
}

func newJobQueue(capacity int) *jobQueue {
	q := &jobQueue{items: make([]*Message, 0, capacity)}
	q.cond.L = &q.mu
	return q
}

// push queues a read's messages, in order.
func (q *jobQueue) push(batch ...*Message) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	if q.head > 0 && (q.head == len(q.items) || len(q.items)+len(batch) > cap(q.items)) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, batch...)
	wake := q.wakeOne()
	q.mu.Unlock()
	if wake {
		q.cond.Signal()
	}
}

// wakeOne reports whether to signal a waiting goroutine, and counts it as
// waking: only when one waits and none is already on its way. Called with mu
// held.
func (q *jobQueue) wakeOne() bool {
	if q.waiting > q.waking && q.waking == 0 {
		q.waking++
		return true
	}
	return false
}

// pop takes the next message, waiting for one; ok is false once the queue is
// closed and empty.
func (q *jobQueue) pop() (m *Message, ok bool) {
	q.mu.Lock()
	for q.head == len(q.items) {
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		q.waiting++
		q.cond.Wait()
		q.waiting--
		if q.waking > 0 {
			q.waking--
		}
	}
	m = q.items[q.head]
	q.items[q.head] = nil
	q.head++
	wake := q.head < len(q.items) && q.wakeOne()
	q.mu.Unlock()
	if wake {
		q.cond.Signal()
	}
	return m, true
}

// empty reports whether no message waits for a handler.
func (q *jobQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == len(q.items)
}

// close lets the goroutines return once the queue is empty.
func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// handlerCap holds the handlers running at once, on the handler goroutines
// and on the fetchers (inline.go), to WORKER_CONCURRENCY. The semaphore's
// slots do not: read-ahead adds slots for messages that wait in the job
// queue, and a message run on its fetcher does not wait there. A handler
// goroutine takes one per message, which only waits while fetchers run
// lone messages on the others; a fetcher only takes one that is free.
type handlerCap struct {
	used    atomic.Int64
	most    int64
	waiters atomic.Int64 // handler goroutines waiting in take
	mu      sync.Mutex
	freed   sync.Cond
}

func newHandlerCap(most int) *handlerCap {
	c := &handlerCap{most: int64(most)}
	c.freed.L = &c.mu
	return c
}

// tryTake takes one if one is free.
func (c *handlerCap) tryTake() bool {
	for {
		n := c.used.Load()
		if n >= c.most {
			return false
		}
		if c.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// take takes one, waiting until one is free.
func (c *handlerCap) take() {
	if c.tryTake() {
		return
	}
	c.mu.Lock()
	c.waiters.Add(1)
	for !c.tryTake() {
		c.freed.Wait()
	}
	c.waiters.Add(-1)
	c.mu.Unlock()
}

// give gives one back.
func (c *handlerCap) give() {
	c.used.Add(-1)
	if c.waiters.Load() > 0 {
		c.mu.Lock()
		c.freed.Broadcast()
		c.mu.Unlock()
	}
}

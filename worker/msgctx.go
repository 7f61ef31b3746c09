package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// msgContext is the context a handler goroutine passes to the messages it
// runs. The goroutine keeps one and reuses it from message to message: it
// carries the running message's deadline (WORKER_HANDLER_TIMEOUT), and it is
// cancelled when that deadline passes, when the message's lease is lost, or
// when the shutdown deadline cancels every handler; a cancelled one is
// replaced before the next message. (context.WithTimeout per message cost
// more than the rest of a no-op handler's run.) Its values are the runtime
// handler context's.
type msgContext struct {
	parent   context.Context
	deadline atomic.Int64 // unix ns of the running message's deadline; 0 for none
	state    atomic.Int32 // live, timedOut or cancelled
	done     chan struct{}
	timer    *time.Timer // fires at the deadline

	mu         sync.Mutex
	afters     map[*func()]struct{} // AfterFunc callbacks not yet run or stopped
	stopParent func() bool
}

const (
	live int32 = iota
	timedOut
	cancelled
)

func newMsgContext(parent context.Context) *msgContext {
	c := &msgContext{parent: parent, done: make(chan struct{})}
	c.timer = time.AfterFunc(time.Hour, func() { c.cancel(timedOut) })
	c.timer.Stop()
	c.stopParent = context.AfterFunc(parent, func() { c.cancel(cancelled) })
	return c
}

// start arms the deadline for a message that may run for d (0: no limit).
func (c *msgContext) start(d time.Duration) {
	if d <= 0 {
		c.deadline.Store(0)
		return
	}
	c.deadline.Store(time.Now().Add(d).UnixNano())
	c.timer.Reset(d)
}

// finish disarms the deadline after a message and reports whether c can run
// the next one: false once it is cancelled, or its timer fired meanwhile.
func (c *msgContext) finish() (reusable bool) {
	if c.deadline.Load() != 0 && !c.timer.Stop() {
		return false // fired, or about to cancel c
	}
	return c.state.Load() == live
}

// release detaches c from its parent once nobody runs messages with it.
func (c *msgContext) release() {
	c.timer.Stop()
	c.stopParent()
}

func (c *msgContext) cancel(why int32) {
	if !c.state.CompareAndSwap(live, why) {
		return
	}
	close(c.done)
	c.mu.Lock()
	fs := c.afters
	c.afters = nil
	c.mu.Unlock()
	for f := range fs {
		(*f)()
	}
}

func (c *msgContext) Deadline() (time.Time, bool) {
	if ns := c.deadline.Load(); ns != 0 {
		return time.Unix(0, ns), true
	}
	return c.parent.Deadline()
}

func (c *msgContext) Done() <-chan struct{} { return c.done }

func (c *msgContext) Err() error {
	switch c.state.Load() {
	case timedOut:
		return context.DeadlineExceeded
	case cancelled:
		return context.Canceled
	}
	return nil
}

func (c *msgContext) Value(key any) any { return c.parent.Value(key) }

// AfterFunc lets contexts derived from c (context.WithCancel and the like)
// follow its cancellation without a goroutine each; the context package
// looks for this method.
func (c *msgContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.state.Load() != live {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if c.afters == nil {
		c.afters = map[*func()]struct{}{}
	}
	c.afters[&f] = struct{}{}
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afters[&f]
		delete(c.afters, &f)
		return ok
	}
}

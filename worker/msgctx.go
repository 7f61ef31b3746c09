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
	timer    *time.Timer // armed for the earliest deadline not yet checked

	mu         sync.Mutex
	running    bool                 // a message runs with c
	armed      bool                 // timer is set
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
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	c.stopParent = context.AfterFunc(parent, func() { c.cancel(cancelled) })
	return c
}

// start sets the deadline of a message that starts now and may run for d
// (0: no limit). The timer is not reset per message: once armed it fires at
// the deadline it was armed for, and expire moves it on to the running
// message's deadline if that is later. Timers set and stopped per message
// were a good part of a no-op handler's cost.
func (c *msgContext) start(now time.Time, d time.Duration) {
	if d <= 0 {
		c.deadline.Store(0)
		return
	}
	c.mu.Lock()
	c.deadline.Store(now.Add(d).UnixNano())
	c.running = true
	if !c.armed {
		c.armed = true
		c.timer.Reset(d)
	}
	c.mu.Unlock()
}

// finish ends a message's run and reports whether c can run the next one:
// false once it is cancelled.
func (c *msgContext) finish() (reusable bool) {
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()
	return c.state.Load() == live
}

// expire runs when the timer fires: it cancels c if the running message is
// past its deadline, or re-arms the timer for that deadline.
func (c *msgContext) expire() {
	c.mu.Lock()
	if !c.running || c.state.Load() != live {
		c.armed = false
		c.mu.Unlock()
		return
	}
	left := time.Until(time.Unix(0, c.deadline.Load()))
	if left > 0 {
		c.timer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.armed = false
	fs := c.cancelLocked(timedOut)
	c.mu.Unlock()
	runAll(fs)
}

// release detaches c from its parent once nobody runs messages with it.
func (c *msgContext) release() {
	c.timer.Stop()
	c.stopParent()
}

func (c *msgContext) cancel(why int32) {
	c.mu.Lock()
	fs := c.cancelLocked(why)
	c.mu.Unlock()
	runAll(fs)
}

// cancelLocked cancels c and returns the AfterFunc callbacks to run once mu
// is released. Called with mu held.
func (c *msgContext) cancelLocked(why int32) map[*func()]struct{} {
	if !c.state.CompareAndSwap(live, why) {
		return nil
	}
	close(c.done)
	fs := c.afters
	c.afters = nil
	return fs
}

func runAll(fs map[*func()]struct{}) {
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

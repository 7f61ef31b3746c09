package worker

import (
	"context"
	"sync"
	"time"
)

// semaphore counts the free handler slots. A fetcher that wants a batch
// waits until enough slots are free, woken once when they are, not once per
// slot a finishing handler gives back (a channel of tokens did the latter:
// a wake-up of the fetcher per message). Waiters are served in the order they
// came, so a busy fetcher cannot starve the reclaimer or another stream —
// unless the streams have priorities (priority.go), which then pick the
// stream served next.
type semaphore struct {
	mu      sync.Mutex
	free    int
	waiters []*slotWaiter
	prio    *priorities // nil: first come, first served
	hold    *time.Timer // with priorities: wakes the waiters when slots held back are let go
}

type slotWaiter struct {
	min   int
	class *slotClass    // the stream it asks for; nil: not a stream's fetcher (reclaim, suspects, take-over)
	wake  chan struct{} // cap 1
}

func newSemaphore(n int) *semaphore { return &semaphore{free: n} }

// acquire waits until least slots are free and takes up to most of those free.
// It gives up, returning 0, when ctx ends or timeout passes (0: no timeout);
// tick, when not nil, is called every second while it waits.
func (s *semaphore) acquire(ctx context.Context, least, most int, timeout time.Duration, tick func()) int {
	return s.acquireFor(ctx, nil, least, most, timeout, tick)
}

// acquireFor is acquire for a stream's fetcher of class c (nil when the
// streams have no priorities).
func (s *semaphore) acquireFor(ctx context.Context, c *slotClass, least, most int, timeout time.Duration, tick func()) int {
	s.mu.Lock()
	if s.prio == nil {
		if len(s.waiters) == 0 && s.free >= least {
			n := min(s.free, most)
			s.free -= n
			s.mu.Unlock()
			return n
		}
	} else {
		s.prio.activate(c)
		if len(s.waiters) == 0 && s.free >= least && s.prio.mayTake(c) {
			n := min(s.free, most)
			s.free -= n
			s.prio.grant(c, n)
			s.mu.Unlock()
			return n
		}
	}
	w := &slotWaiter{min: least, class: c, wake: make(chan struct{}, 1)} // not before: a read that finds slots free allocates nothing
	s.waiters = append(s.waiters, w)
	if s.prio != nil { // the priorities may serve it ahead of those waiting
		if c != nil {
			c.waiting++
		}
		s.wakeNext()
	}
	s.mu.Unlock()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var ticks <-chan time.Time
	if tick != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-w.wake:
			s.mu.Lock()
			if i := s.next(); i >= 0 && s.waiters[i] == w && s.free >= least {
				s.remove(i)
				n := min(s.free, most)
				s.free -= n
				if s.prio != nil {
					s.prio.grant(c, n)
				}
				s.wakeNext()
				s.mu.Unlock()
				return n
			}
			s.mu.Unlock()
		case <-ticks:
			tick()
		case <-expired:
			return s.leave(w, most)
		case <-ctx.Done():
			return s.leave(w, 0)
		}
	}
}

// leave removes w from the waiters; it still takes up to most slots if they
// were granted meanwhile (a wake-up raced the timeout), and, with
// priorities, if its stream may take them now.
func (s *semaphore) leave(w *slotWaiter, most int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.waiters {
		if x == w {
			s.remove(i)
			break
		}
	}
	n := 0
	if most > 0 && s.free >= 1 && (s.prio == nil || (s.next() < 0 && s.prio.mayTake(w.class))) {
		n = min(s.free, most)
		s.free -= n
		if s.prio != nil {
			s.prio.grant(w.class, n)
		}
	}
	s.wakeNext()
	return n
}

// release gives back n slots and wakes the waiter served next once enough
// are free.
func (s *semaphore) release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.free += n
	s.wakeNext()
	s.mu.Unlock()
}

// resize adds d slots, or takes -d away (readahead.go): free may go below
// zero until enough are given back.
func (s *semaphore) resize(d int) {
	s.mu.Lock()
	s.free += d
	if d > 0 {
		s.wakeNext()
	}
	s.mu.Unlock()
}

// borrow takes n slots whether or not they are free (fetch.go: the entries
// of a blocking read that held fewer): free may go below zero until enough
// are given back.
func (s *semaphore) borrow(n int) {
	s.mu.Lock()
	s.free -= n
	s.mu.Unlock()
}

// remove takes waiter i out of the queue. Called with mu held.
func (s *semaphore) remove(i int) {
	if c := s.waiters[i].class; c != nil {
		c.waiting--
	}
	if i == 0 {
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		return
	}
	s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
}

// next is the index of the waiter served next, or -1 when none may be:
// the first, or the one the priorities pick. Called with mu held.
func (s *semaphore) next() int {
	if len(s.waiters) == 0 {
		return -1
	}
	if s.prio == nil {
		return 0
	}
	return s.prio.pick(s.waiters)
}

// wakeNext wakes the waiter served next if its minimum is free. Called with
// mu held.
func (s *semaphore) wakeNext() {
	i := s.next()
	if i >= 0 && s.free >= s.waiters[i].min {
		select {
		case s.waiters[i].wake <- struct{}{}:
		default:
		}
	}
	if i < 0 && s.prio != nil && len(s.waiters) > 0 && s.free > 0 {
		s.holdUntilLet(s.prio.heldFor(s.prio.best(s.waiters)))
	}
}

// holdUntilLet makes sure the waiters are looked at again when slots held
// back for another stream's read are let go, d from now, even if no slot is
// released meanwhile. Called with mu held.
func (s *semaphore) holdUntilLet(d time.Duration) {
	if d <= 0 {
		d = time.Millisecond
	}
	if s.hold == nil {
		s.hold = time.AfterFunc(d, func() {
			s.mu.Lock()
			s.wakeNext()
			s.mu.Unlock()
		})
		return
	}
	s.hold.Reset(d)
}

// backlog records that a fetcher of c found more entries waiting (on) or
// drained its stream, stopped or paused (off), for the priorities: a strict
// priority holds slots back from lower streams while a higher one has
// entries to read, even between its reads.
func (s *semaphore) backlog(c *slotClass, on bool) {
	s.mu.Lock()
	if on {
		s.prio.activate(c)
		c.backlogged++
	} else {
		c.backlogged--
	}
	s.wakeNext()
	s.mu.Unlock()
}

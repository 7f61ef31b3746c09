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
// came, so a busy fetcher cannot starve the reclaimer or another stream.
type semaphore struct {
	mu      sync.Mutex
	free    int
	waiters []*slotWaiter
}

type slotWaiter struct {
	min  int
	wake chan struct{} // cap 1
}

func newSemaphore(n int) *semaphore { return &semaphore{free: n} }

// acquire waits until least slots are free and takes up to most of those free.
// It gives up, returning 0, when ctx ends or timeout passes (0: no timeout);
// tick, when not nil, is called every second while it waits.
func (s *semaphore) acquire(ctx context.Context, least, most int, timeout time.Duration, tick func()) int {
	w := &slotWaiter{min: least, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	if len(s.waiters) == 0 && s.free >= least {
		n := min(s.free, most)
		s.free -= n
		s.mu.Unlock()
		return n
	}
	s.waiters = append(s.waiters, w)
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
			if s.free >= least && s.first() == w {
				s.waiters = s.waiters[1:]
				n := min(s.free, most)
				s.free -= n
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
// were granted meanwhile (a wake-up raced the timeout).
func (s *semaphore) leave(w *slotWaiter, most int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			break
		}
	}
	n := 0
	if most > 0 && s.free >= 1 {
		n = min(s.free, most)
		s.free -= n
	}
	s.wakeNext()
	return n
}

// release gives back n slots and wakes the first waiter once enough are free.
func (s *semaphore) release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.free += n
	s.wakeNext()
	s.mu.Unlock()
}

func (s *semaphore) first() *slotWaiter {
	if len(s.waiters) == 0 {
		return nil
	}
	return s.waiters[0]
}

// wakeNext wakes the first waiter if its minimum is free. Called with mu held.
func (s *semaphore) wakeNext() {
	if w := s.first(); w != nil && s.free >= w.min {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

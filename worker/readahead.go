package worker

import (
	"context"
	"sync/atomic"
	"time"
)

// Read-ahead lets a read bring more entries than there are free handlers:
// with few handlers and fast ones, reads of a handful of entries each cost
// a round trip, and a command for Redis, per handful. Messages read ahead
// wait in the job queue, in memory, for a handler.
//
// A message waiting unseen must not outlive its lease, or another consumer
// takes it over while it waits here. So the read-ahead is kept to what the
// handlers finish in about readAheadWork, measured as they run: all of it
// (WORKER_READ_AHEAD) for no-op handlers, a few for handlers of a
// millisecond, none for handlers of a second. It is also kept within
// readAheadBytes of entries. And a message that waited a lease period all
// the same (a handler that turned slow) is confirmed as this consumer's
// before it runs, and skipped when it is not (confirmLate, process).
//
// The look at the pace rests while no handler finishes anything and none
// is granted: an idle worker's ticks, 40 a second, were three quarters of
// its context switches and half its CPU. The first message a handler
// finishes wakes it (done).
const (
	readAheadWork  = 20 * time.Millisecond
	readAheadBytes = 1 << 20
	readAheadEvery = 25 * time.Millisecond
	readAheadRest  = 4 // looks in a row that found nothing finished and granted none, before the look rests
)

// readAhead adds handler slots to the semaphore for the messages that may
// wait read ahead, and takes them away again as the handlers slow.
type readAhead struct {
	most int        // WORKER_READ_AHEAD
	sem  *semaphore // the slots it adds to

	handled atomic.Int64 // messages the handlers finished, ever
	entry   atomic.Int64 // bytes of a recent read's average entry

	resting atomic.Bool   // Run waits for a message to be finished (done) before it looks again
	wake    chan struct{} // done's word to a resting Run; one deep

	granted int     // slots added now
	rate    float64 // messages handled per second, smoothed
	last    int64   // handled at the last look

	rested func() // called each time Run rests; tests only
}

// newReadAhead is the read-ahead of up to most slots added to sem.
func newReadAhead(most int, sem *semaphore) *readAhead {
	return &readAhead{most: most, sem: sem, wake: make(chan struct{}, 1)}
}

// done counts a message a handler finished, and wakes Run if it rests.
func (a *readAhead) done() {
	a.handled.Add(1)
	if a.resting.Load() && a.resting.CompareAndSwap(true, false) {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// Run looks at the handlers' pace every readAheadEvery until ctx ends,
// and rests while there is nothing to look at (readAheadRest).
func (a *readAhead) Run(ctx context.Context) error {
	t := time.NewTicker(readAheadEvery)
	defer t.Stop()
	last := time.Now()
	quiet := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			before := a.last
			if a.runOnce(now.Sub(last)) == 0 && a.last == before {
				quiet++
			} else {
				quiet = 0
			}
			last = now
		}
		if quiet < readAheadRest {
			continue
		}
		// Resting is said before handled is read, and done reads resting
		// after it counts: a message finished meanwhile is seen by one
		// of the two. A word left in wake by a done that raced with this
		// only makes a later rest end at once.
		a.resting.Store(true)
		if a.handled.Load() != a.last {
			a.resting.Store(false)
			quiet = 0
			continue
		}
		t.Stop()
		if a.rested != nil {
			a.rested()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
		}
		quiet = 0
		last = time.Now()
		t.Reset(readAheadEvery)
	}
}

// runOnce sets the read-ahead from the messages finished in the elapsed
// time and returns it.
func (a *readAhead) runOnce(elapsed time.Duration) int {
	n := a.handled.Load()
	rate := float64(n-a.last) / max(elapsed, time.Millisecond).Seconds()
	a.last = n
	a.rate = (a.rate + rate) / 2
	want := int(a.rate * readAheadWork.Seconds())
	if size := a.entry.Load(); size > 0 {
		want = min(want, readAheadBytes/int(size))
	}
	want = max(0, min(want, a.most))
	if d := want - a.granted; d != 0 {
		a.sem.resize(d)
		a.granted = want
	}
	return want
}

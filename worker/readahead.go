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
const (
	readAheadWork  = 20 * time.Millisecond
	readAheadBytes = 1 << 20
	readAheadEvery = 25 * time.Millisecond
)

// readAhead adds handler slots to the semaphore for the messages that may
// wait read ahead, and takes them away again as the handlers slow.
type readAhead struct {
	most int        // WORKER_READ_AHEAD
	sem  *semaphore // the slots it adds to

	handled atomic.Int64 // messages the handlers finished, ever
	entry   atomic.Int64 // bytes of a recent read's average entry

	granted int     // slots added now
	rate    float64 // messages handled per second, smoothed
	last    int64   // handled at the last look
}

// Run looks at the handlers' pace every readAheadEvery until ctx ends.
func (a *readAhead) Run(ctx context.Context) error {
	t := time.NewTicker(readAheadEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			a.runOnce(now.Sub(last))
			last = now
		}
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

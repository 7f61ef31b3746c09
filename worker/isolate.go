package worker

import (
	"context"
	"slices"
	"sync"
	"time"
)

// A crash charges a delivery to every entry the process had read and not
// acknowledged, not only to the one that caused it. Entries read beside a
// message that kills every process it runs in would reach the attempt limit
// with it and be dead-lettered as abandoned, never having failed. So an
// entry delivered twice already without finishing is a suspect: it is
// claimed (and its delivery counted) only when its turn comes, suspects run
// one at a time, and each is acknowledged before the next runs. A poison
// message's crashes are then charged to it and to ordinary work that
// happened to run beside it (charged once, which does not make it a suspect
// twice over), never again to the suspects queued behind it; an innocent
// suspect finishes on its own turn. The first redelivery after a crash —
// the common case of a worker killed mid-batch — still runs in batches, at
// full concurrency.
//
// Suspects do not run with the whole process to themselves: waiting for
// every handler slot would hold the process idle behind its longest
// handler.

// isolateAfter is how many unfinished deliveries make an entry a suspect:
// two, or fewer when the attempt limit would otherwise be reached first.
// With one attempt allowed there is nothing to isolate: a redelivered entry
// is dead-lettered.
func (r *engine) isolateAfter() int {
	return max(0, min(2, r.cfg.MaxAttempts-1))
}

type suspect struct{ stream, id string }

// suspects is the queue of entries waiting to run one at a time, each
// queued once.
type suspects struct {
	mu     sync.Mutex
	queue  []suspect
	queued map[suspect]bool
	wake   chan struct{} // one token: the queue is not empty
}

// isolate queues suspects of this consumer's pending list.
func (r *engine) isolate(stream string, ids []string) {
	q := &r.suspects
	q.mu.Lock()
	for _, id := range ids {
		s := suspect{stream, id}
		if !q.queued[s] {
			q.queued[s] = true
			q.queue = append(q.queue, s)
		}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// unqueueSuspect takes stream's entry id out of the queue, when it is
// there: an ordered partition's replay runs it in its place (replayOwn),
// and the queue would run it again. One the isolate loop has taken and
// claimed already is not idle, and the replay's claim skips it; one it has
// taken and is still waiting a handler slot for may run twice, as
// at-least-once delivery allows.
func (r *engine) unqueueSuspect(stream, id string) {
	q := &r.suspects
	s := suspect{stream, id}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.queued[s] {
		return
	}
	delete(q.queued, s)
	q.queue = slices.DeleteFunc(q.queue, func(e suspect) bool { return e == s })
}

func (r *engine) nextSuspect() (suspect, bool) {
	q := &r.suspects
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		return suspect{}, false
	}
	s := q.queue[0]
	q.queue = q.queue[1:]
	delete(q.queued, s)
	return s, true
}

// isolateLoop runs the queued suspects one at a time until ctx ends. What is
// still queued then stays pending and is claimed again by this consumer's
// next run or, after the min-idle, by another consumer.
func (r *engine) isolateLoop(ctx context.Context) error {
	for {
		s, ok := r.nextSuspect()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-r.suspects.wake:
				continue
			}
		}
		r.runSuspect(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// runSuspect takes a handler slot, claims the suspect (counting its
// delivery) and runs it, waiting until its outcome is recorded.
func (r *engine) runSuspect(ctx context.Context, s suspect) {
	if r.sem.acquire(ctx, 1, 1, 0, nil) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	claimed, err := r.consumer.Claim(cctx, s.stream, []string{s.id}, 0, 0)
	cancel()
	if err != nil {
		r.release(1)
		// It stays pending: a reclaim pass finds it again after the min-idle.
		r.logger.Warn("claiming a suspect entry to run it failed", "stream", s.stream, "id", s.id, "error", err)
		return
	}
	r.metrics.Reclaim.Trimmed(r.logger, s.stream, claimed.Deleted, false)
	// One handled here since it was queued, its acknowledgement not yet
	// written (a retry in place that waited a min-idle for a slot), does
	// not run again.
	entries := r.notAckWaiting(s.stream, claimed.Entries) // acks.go
	r.runAlone(ctx, s.stream, r.claimedMessages(ctx, s.stream, entries), 1, nil)
}

// runAlone runs a suspect, msgs (its message, or none when its claim left
// nothing to run), on the n slots reserved for it, and waits until its
// outcome is recorded, beating b every second meanwhile (nil: none). It
// reports whether the message ran. The isolate loop, a take-over and an
// ordered partition's replay run suspects this way.
func (r *engine) runAlone(ctx context.Context, stream string, msgs []*Message, n int, b *beat) bool {
	for _, m := range msgs {
		m.settle, m.done = true, make(chan struct{})
	}
	// On the slots taken, which the message's worker frees (or dispatch,
	// when nothing is left to run: dead-lettered, trimmed, no longer ours,
	// or a duplicate inside the dedupe window).
	if r.dispatch(ctx, msgs, n) == 0 {
		return false
	}
	m := msgs[0]
	r.logger.Info("running a suspect message on its own", "stream", stream, "id", m.ID, "type", shownType(m.Type), "attempt", m.Attempt)
	start := time.Now()
	waitBeating(ctx, m.done, b) // shutdown: it finishes, or is handed over, as any other
	r.logger.Debug("suspect message done", "stream", stream, "id", m.ID, "took", time.Since(start).Round(time.Millisecond))
	return true
}

package worker

import (
	"container/heap"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamworker/streamworker/wire"
)

// Retries in place (WORKER_RETRY_IN_PLACE_MAX). A failed message whose
// retry falls due soon is not copied into its stream's delayed set: its
// entry stays pending, this consumer's, and the message waits here for its
// backoff, then runs again as its next attempt, with the same ID, through
// the dispatch path (cancelled and duplicate messages are dropped there) on
// a handler slot of its own: waiting takes none. A copy through the delayed
// set costs Redis two scripts (the settle and the promotion), an XADD, a
// second read and a second entry; waiting here costs it nothing, and the
// acknowledgement of the attempt that succeeds ends the entry.
//
// Only a retry due within a lease period of its delivery waits here: it
// runs before its entry's idle time needs renewing, and none is renewed
// for it. One held up past that by busy handler slots (it waits for them
// with its stream's fetcher, under the stream's priority) is confirmed as
// ours before it runs (admit, confirmLate), as any message that waited a
// lease period is, and so is one sent to the delayed set after all: another
// consumer may have claimed it meanwhile. Until its handler returns our own
// reclaim passes leave it out (notSettleWaiting). The retry is a copy of
// the message made from the entry's fields, copied too: it holds only its
// own bytes, not the read it came in, and nothing the failed attempt changed.
//
// Not in place: a suspect (it is settled before the next one runs), a
// message of a partitioned stream (its keyed messages are retried in place
// by the order gate; the others could be handed to the partition's next
// owner meanwhile), a retry due later, and one past inPlaceMost messages or
// inPlaceBytes bytes waiting: they go through the delayed set, as do those
// due while their stream is paused, and, at shutdown, what waits here, due
// when it would have run (flush). A process that dies leaves them pending:
// a reclaim pass runs them after the min-idle, the claim counting one
// attempt more (claimedMessages); the attempts made in place are not
// counted again.
const (
	inPlaceMost  = 4096
	inPlaceBytes = 64 << 20
)

// inPlace holds the retries waiting in place, soonest first.
type inPlace struct {
	mu     sync.Mutex
	due    inPlaceHeap
	bytes  int                    // of the messages in due
	ids    map[inPlaceID]struct{} // every retry from add until its handler returns or it leaves (forget): due's, those taken for a slot, queued for a handler or running
	closed bool                   // shutdown: nothing more waits here
	kick   chan struct{}
}

type inPlaceID struct{ stream, id string }

// inPlaceRetry is a message waiting for its retry, as its next attempt.
type inPlaceRetry struct {
	m  *Message  // the next attempt's copy
	at time.Time // when it runs
	// For its copy in the delayed set, if it goes there after all.
	failed  int           // the attempt that failed
	outcome string        // OutcomeRetried, or OutcomeDelayed (a DelayError)
	delay   time.Duration // its backoff
	cause   error         // the handler's error
}

type inPlaceHeap []inPlaceRetry

func (h inPlaceHeap) Len() int           { return len(h) }
func (h inPlaceHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h inPlaceHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *inPlaceHeap) Push(x any)        { *h = append(*h, x.(inPlaceRetry)) }
func (h *inPlaceHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = inPlaceRetry{}
	*h = old[:len(old)-1]
	return x
}

func newInPlace() *inPlace {
	return &inPlace{ids: map[inPlaceID]struct{}{}, kick: make(chan struct{}, 1)}
}

// add queues x and reports whether it was queued: not past the bounds, nor
// after close.
func (p *inPlace) add(x inPlaceRetry) bool {
	p.mu.Lock()
	if p.closed || len(p.ids) >= inPlaceMost || p.bytes+x.m.size > inPlaceBytes {
		p.mu.Unlock()
		return false
	}
	heap.Push(&p.due, x)
	p.bytes += x.m.size
	p.ids[inPlaceID{x.m.Stream, x.m.ID}] = struct{}{}
	first := p.due[0].m == x.m
	p.mu.Unlock()
	if first {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns the retries due at now and when the next one falls due
// (zero: none waits).
func (p *inPlace) take(now time.Time) (due []inPlaceRetry, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.due) > 0 && !p.due[0].at.After(now) {
		x := heap.Pop(&p.due).(inPlaceRetry)
		p.bytes -= x.m.size
		due = append(due, x)
	}
	if len(p.due) > 0 {
		next = p.due[0].at
	}
	return due, next
}

// putBack queues again what take returned and could not be dispatched.
func (p *inPlace) putBack(xs []inPlaceRetry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range xs {
		heap.Push(&p.due, x)
		p.bytes += x.m.size
	}
}

// close makes later adds fail and returns what waits in the heap; those
// taken from it for a slot or queued for a handler go on.
func (p *inPlace) close() []inPlaceRetry {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	out := []inPlaceRetry(p.due)
	p.due, p.bytes = nil, 0
	return out
}

// forget ends the waiting of ms: their handlers returned, or they left
// (dropped before running, or sent to the delayed set).
func (p *inPlace) forget(ms ...*Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range ms {
		delete(p.ids, inPlaceID{m.Stream, m.ID})
	}
}

// len is how many retries wait (in the heap, for a slot or for a handler)
// or run.
func (p *inPlace) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// waiting returns the IDs of stream's entries waiting here, for the
// reclaimer, rarely.
func (p *inPlace) waiting(stream string) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out map[string]bool
	for k := range p.ids {
		if k.stream == stream {
			if out == nil {
				out = map[string]bool{}
			}
			out[k.id] = true
		}
	}
	return out
}

// retryInPlace queues m, which failed with cause, to run again as attempt
// after delay, and reports whether it did; false sends the retry through the
// delayed set.
func (r *engine) retryInPlace(m *Message, attempt int, outcome string, delay time.Duration, cause error) bool {
	if delay > r.cfg.RetryInPlaceMax || m.settle || m.readAt.IsZero() || r.stopping.Load() ||
		(r.order != nil && r.order.ordered(m.Stream)) {
		return false
	}
	at := time.Now().Add(delay)
	if at.After(m.readAt.Add(r.leaseEvery() * 3 / 4)) { // a quarter of a lease period to spare for the timer and a slot
		return false
	}
	fields := make([]string, len(m.fields))
	for i, f := range m.fields {
		fields[i] = strings.Clone(f)
	}
	again := &Message{}
	again.fill(m.Stream, m.ID, fields)
	again.Attempt, again.Deliveries, again.readAt, again.retried = attempt, m.Deliveries, m.readAt, true
	return r.inPlace.add(inPlaceRetry{m: again, at: at, failed: m.Attempt, outcome: outcome, delay: delay, cause: cause})
}

// inPlaceLoop dispatches the retries waiting in place as they fall due,
// each on a handler slot it waits for with the fetchers, until ctx ends.
// One due while its stream is paused goes to the delayed set, to wait in
// the stream with the rest.
func (r *engine) inPlaceLoop(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next := r.inPlace.take(time.Now())
		for len(due) > 0 {
			due = r.dispatchInPlace(ctx, due)
			if ctx.Err() != nil {
				r.inPlace.putBack(due)
				return nil
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-r.inPlace.kick:
			timer.Stop() // since Go 1.23 no stale tick is left in timer.C
		case <-timer.C:
		}
	}
}

// dispatchInPlace hands what it can of due, the first message's stream's,
// to the handler pool and returns the rest: the other streams', and, if ctx
// ends while it waits for slots, what it could not hand over.
func (r *engine) dispatchInPlace(ctx context.Context, due []inPlaceRetry) []inPlaceRetry {
	stream := due[0].m.Stream
	pause := r.pauses.of(stream)
	var batch, rest, paused []inPlaceRetry
	for _, x := range due {
		switch {
		case x.m.Stream != stream:
			rest = append(rest, x)
		case pause != nil && pause.paused.Load():
			paused = append(paused, x)
		default:
			batch = append(batch, x)
		}
	}
	r.settleInPlace(paused, true)
	for len(batch) > 0 {
		n := r.sem.acquireFor(ctx, r.classes[stream], 1, len(batch), 0, nil)
		if n == 0 { // ctx ended: back to wait, to be flushed to the delayed set
			return append(rest, batch...)
		}
		ms := make([]*Message, n)
		for i := range ms {
			ms[i] = batch[i].m
		}
		all := slices.Clone(ms)
		run, handed := r.admit(ctx, ms, n) // cancel.go, dispatch.go: drops the cancelled, duplicates and those another consumer took meanwhile
		if len(run) < len(all) {
			for _, m := range all {
				if !slices.Contains(run, m) {
					r.inPlace.forget(m)
				}
			}
		}
		if pause != nil {
			r.metrics.Slots.WithLabelValues(pause.stream).Add(float64(handed))
		}
		r.jobs.push(run...)
		batch = batch[n:]
	}
	return rest
}

// flushInPlace writes what waits in place to the delayed set, each due when
// it would have run, and makes later failures go there: the process is
// stopping. It is called once the dispatch loop has stopped, before the
// settle loop does.
func (r *engine) flushInPlace() {
	xs := r.inPlace.close()
	if len(xs) == 0 {
		return
	}
	r.settleInPlace(xs, false)
	r.logger.Info("shutting down: retries waiting in place moved to the delayed set", "count", len(xs))
}

// settleInPlace sends the retries xs through the delayed set, due now or
// when each would have run. Those that waited a lease period are confirmed
// as ours first (confirm): one another consumer has claimed is its own now,
// and one Redis does not confirm stays pending for a reclaim pass. Their
// failures were counted when they began to wait.
func (r *engine) settleInPlace(xs []inPlaceRetry, now bool) {
	byStream := map[string][]inPlaceRetry{}
	for _, x := range xs {
		byStream[x.m.Stream] = append(byStream[x.m.Stream], x)
	}
	for stream, list := range byStream {
		ms := make([]*Message, len(list))
		for i, x := range list {
			ms[i] = x.m
		}
		all := slices.Clone(ms)
		mine, err := r.confirm(ms)
		if err != nil {
			r.logger.Warn("retries waiting in place could not be confirmed as ours before going to the delayed set; they stay pending for a reclaim pass",
				"stream", stream, "count", len(all)-len(mine), "error", err)
		}
		for _, x := range list {
			if !slices.Contains(mine, x.m) {
				continue
			}
			m, at := x.m, x.at
			if now {
				at = time.Now()
			}
			s := settleReq{
				stream: m.Stream, id: m.ID, typ: m.Type, attempt: x.failed, outcome: x.outcome, delay: x.delay, cause: x.cause,
				logCtx: context.Background(), counted: true, due: at.UnixMilli(), envelope: wire.EncodeEnvelope(m.ID, retryFields(m, m.Attempt)),
			}
			if !r.settles.add(s) {
				r.logger.Error("could not schedule retry; message stays pending", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type))
			}
		}
		r.inPlace.forget(all...) // after the adds: settles.waiting covers those from now on
	}
}

// inPlaceLog logs m's failure, retried in place after delay, as settled
// logs one retried through the delayed set.
func (r *engine) inPlaceLog(logCtx context.Context, m *Message, outcome string, delay time.Duration, cause error) {
	if outcome == OutcomeDelayed {
		r.logger.DebugContext(logCtx, "message delayed in place", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "run_in", delay.Round(time.Millisecond), "reason", cause.Error())
	} else if ok, skipped := r.failLogs.allow(m.Stream, m.Type, outcome); ok {
		r.logger.InfoContext(logCtx, "message failed; retrying in place", notLogged(skipped, "stream", m.Stream, "id", m.ID, "type", shownType(m.Type),
			"attempt", m.Attempt, "retry_in", delay.Round(time.Millisecond), "error", firstLine(cause.Error()))...)
	}
}

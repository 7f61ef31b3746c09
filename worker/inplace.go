package worker

import (
	"container/heap"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
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
// acknowledgement of the attempt that succeeds ends the entry. A retry runs
// only once Redis has answered since it failed (a read of any stream, or
// else a lease call for it: confirmRetries), as a copy is written only if
// Redis takes it: while Redis does not answer, a retry is left pending for
// a reclaim pass, its attempts not spent.
//
// Only a retry due within a lease period of its delivery waits here: it
// runs before its entry's idle time needs renewing, and none is renewed
// for it. One held up past that by busy handler slots (it waits for them
// with its stream's fetcher, under the stream's priority) is leased again
// every half lease period while it waits and before it runs
// (confirmRetries), so that no other consumer claims it however long it
// waits, and so is one sent to the delayed set after all. Until its handler returns our own
// reclaim passes leave it out (notSettleWaiting). The retry is a copy of
// the message made from the entry's fields, copied too: it holds only its
// own bytes, not the read it came in, and nothing the failed attempt changed.
// An entry trimmed from the stream while its retry waited is pending no
// more: the retry is written to the delayed set as a copy, as it would have
// been at its failure (rescue). Each stream's retries wait, and take slots,
// on their own, so that one stream held back (strict priorities) holds up
// no other's.
//
// Not in place: a suspect (it is settled before the next one runs), a
// message of a partitioned stream (its keyed messages are retried in place
// by the order gate; the others could be handed to the partition's next
// owner meanwhile), a retry due later, and one past inPlaceMost messages or
// inPlaceBytes bytes waiting (per stream): they go through the delayed set, as do those
// due while their stream is paused, and, at shutdown, what waits here, due
// when it would have run (flush). A process that dies leaves them pending:
// a reclaim pass runs them after the min-idle, the claim counting one
// attempt more (claimedMessages); the attempts made in place are not
// counted, as they were never written.
const (
	inPlaceMost  = 4096
	inPlaceBytes = 64 << 20
)

// inPlaces are the retries waiting in place, by stream key: only the
// streams whose retries may wait in place (not the ordered partitions).
type inPlaces map[string]*inPlace

func newInPlaces(streams []string, ordered func(string) bool) inPlaces {
	ps := inPlaces{}
	for _, s := range streams {
		if !ordered(s) {
			ps[s] = newInPlace(s)
		}
	}
	return ps
}

// forget ends the waiting of m (inPlace.forget).
func (ps inPlaces) forget(m *Message) {
	if p := ps[m.Stream]; p != nil {
		p.forget(m)
	}
}

// waiting returns the IDs of stream's retries in place, for the reclaimer.
func (ps inPlaces) waiting(stream string) map[string]bool {
	if p := ps[stream]; p != nil {
		return p.waiting()
	}
	return nil
}

// len is how many retries wait or run, every stream's.
func (ps inPlaces) len() int {
	n := 0
	for _, p := range ps {
		n += p.len()
	}
	return n
}

// inPlace holds one stream's retries waiting in place, soonest first.
type inPlace struct {
	stream string
	mu     sync.Mutex
	due    inPlaceHeap
	bytes  int                 // of the messages in due
	ids    map[string]struct{} // every retry from add until its handler returns or it leaves (forget): due's, those taken for a slot, queued for a handler or running
	closed bool                // shutdown: nothing more waits here
	kick   chan struct{}
}

// inPlaceRetry is a message waiting for its retry, as its next attempt.
type inPlaceRetry struct {
	m       *Message  // the next attempt's copy
	at      time.Time // when it runs
	answers uint64    // engine.answers when it failed
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

func newInPlace(stream string) *inPlace {
	return &inPlace{stream: stream, ids: map[string]struct{}{}, kick: make(chan struct{}, 1)}
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
	p.ids[x.m.ID] = struct{}{}
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
		delete(p.ids, m.ID)
	}
}

// len is how many retries wait (in the heap, for a slot or for a handler)
// or run.
func (p *inPlace) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// waiting returns the IDs of the retries waiting or running, for the
// reclaimer, rarely.
func (p *inPlace) waiting() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return nil
	}
	out := make(map[string]bool, len(p.ids))
	for id := range p.ids {
		out[id] = true
	}
	return out
}

// retryInPlace queues m, which failed with cause, to run again after delay
// as the message of fields (retryFields: a slice of the caller's, whose
// strings it copies), and reports whether it did; false sends the retry
// through the delayed set.
func (r *engine) retryInPlace(m *Message, fields []string, outcome string, delay time.Duration, cause error) bool {
	p := r.inPlace[m.Stream]
	if p == nil || delay > r.cfg.RetryInPlaceMax || m.settle || m.readAt.IsZero() || r.stopping.Load() {
		return false
	}
	at := time.Now().Add(delay)
	if at.After(m.readAt.Add(r.leaseEvery() * 3 / 4)) { // a quarter of a lease period to spare for the timer and a slot
		return false
	}
	for i, f := range fields {
		fields[i] = strings.Clone(f) // not the read's memory
	}
	again := &Message{}
	again.fill(m.Stream, m.ID, fields) // its attempt from the field retryFields set
	again.Deliveries, again.readAt, again.retried = m.Deliveries, m.readAt, true
	return p.add(inPlaceRetry{m: again, at: at, answers: r.answers.Load(), failed: m.Attempt, outcome: outcome, delay: delay, cause: cause})
}

// inPlaceLoop dispatches p's retries as they fall due, each on a handler
// slot it waits for with its stream's fetcher, until ctx ends. One due while
// its stream is paused goes to the delayed set, to wait in the stream with
// the rest.
func (r *engine) inPlaceLoop(ctx context.Context, p *inPlace) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next := p.take(time.Now())
		if len(due) > 0 {
			if rest := r.dispatchInPlace(ctx, p, due); len(rest) > 0 { // ctx ended
				p.putBack(rest)
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
		case <-p.kick:
			timer.Stop() // since Go 1.23 no stale tick is left in timer.C
		case <-timer.C:
		}
	}
}

// dispatchInPlace hands due to the handler pool and returns what it could
// not: if ctx ends while it waits for slots.
func (r *engine) dispatchInPlace(ctx context.Context, p *inPlace, due []inPlaceRetry) []inPlaceRetry {
	pause := r.pauses.of(p.stream)
	for len(due) > 0 {
		if pause != nil && pause.paused.Load() {
			r.settleInPlace(p, due, true)
			return nil
		}
		// Waiting for slots half a lease period at most at a time: those
		// that waited a lease period since their delivery are leased again
		// between waits (confirmRetries), so that no other consumer claims
		// them meanwhile, however long the stream is held back.
		n := r.sem.acquireFor(ctx, r.classes[p.stream], 1, len(due), r.leaseEvery()/2, nil)
		if n == 0 {
			if ctx.Err() != nil { // back to wait, to be flushed to the delayed set
				return due
			}
			due = r.confirmRetries(p, due, false)
			continue
		}
		if pause != nil && pause.paused.Load() { // paused while it waited
			r.release(n)
			continue
		}
		batch := r.confirmRetries(p, due[:n], true)
		due = due[n:]
		ms := make([]*Message, len(batch))
		for i, x := range batch {
			ms[i] = x.m
		}
		all := slices.Clone(ms)
		run, handed := r.admit(ctx, ms, n) // cancel.go, dispatch.go: drops the cancelled and the duplicates
		if len(run) < len(all) {
			for _, m := range all {
				if !slices.Contains(run, m) {
					p.forget(m)
				}
			}
		}
		if pause != nil {
			r.metrics.Slots.WithLabelValues(pause.stream).Add(float64(handed))
		}
		r.jobs.push(run...)
	}
	return nil
}

// confirmRetries confirms as ours the retries of xs that waited a lease
// period since their delivery or their last confirmation (as confirm does
// for any message that waited) and, with unproven, those since whose
// failure Redis has answered no read (engine.answers), and returns those
// still ours, filtering xs in place. A retry runs only once Redis has
// answered since it failed: as a retry through the delayed set needs its
// settle script written, so that a Redis that does not answer (a handler
// failing for that very reason, say) leaves it pending for a reclaim pass
// instead of burning its attempts meanwhile. Under load the reads answer
// that; a quiet stream's retry is confirmed. Leased again while they wait for slots, none reaches the
// min-idle, so none is claimed by another consumer unless Redis did not
// answer meanwhile; one claimed all the same is its own now, and one
// acknowledged elsewhere is done: both are left out. One found trimmed from
// the stream (deleted while still pending to us) is pending no more: it is
// written to the delayed set as a copy instead (rescueInPlace). When Redis
// does not answer, the late ones stay pending for a reclaim pass. What it
// leaves out is forgotten.
func (r *engine) confirmRetries(p *inPlace, xs []inPlaceRetry, unproven bool) []inPlaceRetry {
	now, answers := time.Now(), r.answers.Load()
	late := func(x inPlaceRetry) bool {
		return now.Sub(x.m.readAt) >= r.leaseEvery() || (unproven && x.answers == answers)
	}
	var ids []string
	for _, x := range xs {
		if late(x) {
			ids = append(ids, x.m.ID)
		}
	}
	if len(ids) == 0 {
		return xs
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	leased, err := r.consumer.Lease(ctx, p.stream, ids)
	r.metrics.Reclaim.Trimmed(r.logger, p.stream, leased.Trimmed, false)
	out := xs[:0]
	var left, rescue []inPlaceRetry
	for _, x := range xs {
		switch state := leased.State(x.m.ID); {
		case !late(x):
			out = append(out, x)
		case err != nil || state == reclaim.Lost || state == reclaim.Gone:
			left = append(left, x)
		case state == reclaim.Trimmed:
			rescue = append(rescue, x)
		default:
			x.m.readAt = now // renewed by the call sent now
			out = append(out, x)
		}
	}
	switch {
	case err != nil:
		r.logger.Warn("retries waiting in place could not be confirmed as ours; they stay pending for a reclaim pass",
			"stream", p.stream, "count", len(left), "error", err)
	case len(left) > 0:
		r.logger.Warn("retries waiting in place were taken over by another consumer, or acknowledged elsewhere, meanwhile; not run here",
			"stream", p.stream, "count", len(left))
	}
	r.rescueInPlace(ctx, p.stream, rescue)
	for _, x := range append(left, rescue...) {
		p.forget(x.m)
	}
	return out
}

// rescueInPlace writes the retries xs, whose entries were trimmed from the
// stream while they waited, to the delayed set as copies due when each
// would have run: the entry is gone, and the copy is all that is left of
// the message.
func (r *engine) rescueInPlace(ctx context.Context, stream string, xs []inPlaceRetry) {
	if len(xs) == 0 {
		return
	}
	pipe := r.client.Pipeline()
	first := xs[0].at
	for _, x := range xs {
		if x.at.Before(first) {
			first = x.at
		}
		pipe.ZAddNX(ctx, wire.DelayedKey(stream), redis.Z{Score: float64(x.at.UnixMilli()), Member: wire.EncodeEnvelope(x.m.ID, retryFields(x.m, x.m.Attempt))})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		ids := make([]string, len(xs))
		for i, x := range xs {
			ids[i] = x.m.ID
		}
		r.logger.Error("retries waiting in place whose entries were trimmed from the stream could not be written to the delayed set; they are lost",
			"stream", stream, "count", len(xs), "ids", strings.Join(ids, ","), "error", err)
		return
	}
	r.logger.Warn("retries waiting in place whose entries were trimmed from the stream meanwhile written to the delayed set as copies",
		"stream", stream, "count", len(xs))
	r.promote.due(stream, first)
}

// flushInPlace writes what waits in place to the delayed set, each due when
// it would have run, and makes later failures go there: the process is
// stopping. It is called once the dispatch loops have stopped, before the
// settle loop does.
func (r *engine) flushInPlace() {
	n := 0
	for _, p := range r.inPlace {
		xs := p.close()
		n += len(xs)
		r.settleInPlace(p, xs, false)
	}
	if n > 0 {
		r.logger.Info("shutting down: retries waiting in place moved to the delayed set", "count", n)
	}
}

// settleInPlace sends p's retries xs through the delayed set, due now or
// when each would have run, once confirmed as ours (confirmRetries). Their
// failures were counted when they began to wait.
func (r *engine) settleInPlace(p *inPlace, xs []inPlaceRetry, now bool) {
	if len(xs) == 0 {
		return
	}
	xs = r.confirmRetries(p, xs, false)
	for _, x := range xs {
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
		p.forget(m) // after the add: settles.waiting covers it from now on
	}
}

package worker

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
)

// leaseEvery is how often running entries get their idle time reset: well
// inside the min-idle, so that a slow handler's entry never looks abandoned.
func (r *engine) leaseEvery() time.Duration {
	return max(r.cfg.ReclaimMinIdle/4, 10*time.Millisecond)
}

// leaseLoop keeps the lease on every running message until ctx ends, which
// engine.Run does once the handlers are done, and stops leasing once
// shutdown has handed the unfinished work over.
func (r *engine) leaseLoop(ctx context.Context) error {
	t := time.NewTicker(r.leaseEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.leaseMu.Lock()
		if r.abandoned.Load() {
			r.leaseMu.Unlock()
			return nil
		}
		r.leaseOnce()
		r.leaseMu.Unlock()
	}
}

// leaseOnce renews the entries that have run for a lease period. A handler
// whose entry another consumer owns now, or whose lease could not be renewed
// before it ran out, has its context cancelled.
//
// A lease runs out a lease period before the min-idle, when other consumers
// may claim the entry. The renewal is waited for until then and no longer:
// go-redis, unless the client has ContextTimeoutEnabled, waits for a reply
// until its read timeout (5s by default) whatever the context says, and a
// handler must be cancelled before its entry can be claimed, not when a
// slow or cut-off connection gives up. A renewal given up on finishes in the
// background (r.renewing), and no other is sent for its stream meanwhile.
func (r *engine) leaseOnce() {
	now := time.Now()
	every := r.leaseEvery()
	due := now.Add(-every).UnixNano()
	expiry := func(w *workerState) time.Time {
		return time.Unix(0, w.leasedAt.Load()).Add(r.cfg.ReclaimMinIdle - every)
	}
	// The workers and the messages they ran when looked at: a handler may
	// finish, and its worker take the next message, at any moment.
	type running struct {
		w *workerState
		m *Message
	}
	byStream := map[string][]running{}
	for _, w := range r.workers {
		if m := w.cur.Load(); m != nil && w.leasedAt.Load() <= due && w.unleased.Load() != m && !w.leaseLost() {
			byStream[m.Stream] = append(byStream[m.Stream], running{w, m})
		}
	}
	for stream, rs := range byStream {
		ids := make([]string, 0, len(rs))
		deadline := time.Now().Add(opTimeout)
		for _, x := range rs {
			ids = append(ids, x.m.ID)
			if e := expiry(x.w); e.Before(deadline) {
				deadline = e
			}
		}
		leased, err := r.renew(stream, ids, deadline)
		if err != nil && !errors.Is(err, redis.Nil) {
			if !errors.Is(err, errRenewing) { // that one sent nothing
				r.metrics.redisError(OpLease)
			}
			r.logger.Warn("renewing leases failed", "stream", stream, "count", len(ids), "error", err)
			after := time.Now()
			for _, x := range rs {
				if !after.Before(expiry(x.w)) {
					r.loseLease(x.w, x.m, "its lease could not be renewed before it ran out")
				}
			}
			continue
		}
		// Renewing took these out of the pending list (XCLAIM drops entries
		// trimmed from the stream), so they are counted here.
		r.metrics.Reclaim.Trimmed(r.logger, stream, leased.Trimmed, true)
		if len(leased.Gone) > 0 {
			r.logger.Info("running messages are no longer pending (acknowledged elsewhere, or trimmed from the stream); their handlers go on",
				"stream", stream, "count", len(leased.Gone), "ids", strings.Join(leased.Gone, ","))
		}
		for _, x := range rs {
			state := leased.State(x.m.ID)
			if state == reclaim.Lost {
				r.loseLease(x.w, x.m, "another consumer owns it now")
				continue
			}
			if x.w.cur.Load() == x.m {
				x.w.leasedAt.Store(now.UnixNano())
			}
			if state == reclaim.Trimmed || state == reclaim.Gone {
				// Its handler goes on, unleased: nobody else can be running
				// an entry that is not pending, and a failure can no longer
				// schedule a retry, as there is no pending entry left to
				// settle.
				x.w.unleased.Store(x.m)
			}
		}
	}
}

// errRenewing is the error of a renewal not sent because the last one for
// the stream has not finished yet.
var errRenewing = errors.New("the last renewal has not finished")

// renew runs a lease renewal (reclaim.Consumer.Lease) of ids, waiting for it until deadline at most.
func (r *engine) renew(stream string, ids []string, deadline time.Time) (reclaim.Leased, error) {
	if !time.Now().Before(deadline) {
		return reclaim.Leased{}, context.DeadlineExceeded
	}
	busy := r.renewing[stream]
	if !busy.CompareAndSwap(false, true) {
		return reclaim.Leased{}, errRenewing
	}
	type result struct {
		leased reclaim.Leased
		err    error
	}
	done := make(chan result, 1)
	r.renewals.Add(1)
	go func() {
		defer r.renewals.Done()
		defer busy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		leased, err := r.consumer.Lease(ctx, stream, ids)
		done <- result{leased, err}
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case res := <-done:
		return res.leased, res.err
	case <-t.C:
		return reclaim.Leased{}, context.DeadlineExceeded
	}
}

// leaseLost reports whether w's current handler has lost its lease (and was
// cancelled): there is nothing left to renew.
func (w *workerState) leaseLost() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// loseLease cancels w's handler if it still runs m.
func (r *engine) loseLease(w *workerState, m *Message, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.Load() != m || w.lost {
		return
	}
	w.lost = true
	w.ctx.cancel(cancelled)
	r.logger.Warn("lease lost; cancelling the handler", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "reason", why)
}

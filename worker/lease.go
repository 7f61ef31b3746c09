package worker

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
)

// sink is the runtime as reclaim sees it: claimed entries enter the same
// dispatch path as fetched ones and take handler slots the same way.
type sink struct{ r *Runtime }

// Reserve waits up to a second for a first free slot (blocked senders on a
// channel are served in order, so a busy fetcher cannot starve the
// reclaimer), then takes up to n of those free now.
func (s sink) Reserve(ctx context.Context, n int) int {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case s.r.slots <- struct{}{}:
	case <-t.C:
		return 0
	case <-ctx.Done():
		return 0
	}
	got := 1
	for got < n {
		select {
		case s.r.slots <- struct{}{}:
			got++
		default:
			return got
		}
	}
	return got
}

func (s sink) Release(n int) { s.r.release(n) }

func (s sink) Deliver(ctx context.Context, stream string, entries []redis.XMessage, reserved int) {
	s.r.dispatch(ctx, stream, entries, reserved, true)
}

// leaseEvery is how often running entries get their idle time reset: well
// inside the min-idle, so that a slow handler's entry never looks abandoned.
func (r *Runtime) leaseEvery() time.Duration {
	return max(r.cfg.ReclaimMinIdle/4, 10*time.Millisecond)
}

// leaseLoop keeps the lease on every running message until the handlers are
// done, and stops leasing once shutdown has handed the unfinished work over.
func (r *Runtime) leaseLoop(workersDone <-chan struct{}) {
	t := time.NewTicker(r.leaseEvery())
	defer t.Stop()
	for {
		select {
		case <-workersDone:
			return
		case <-t.C:
		}
		r.leaseMu.Lock()
		if r.abandoned.Load() {
			r.leaseMu.Unlock()
			return
		}
		r.leaseOnce()
		r.leaseMu.Unlock()
	}
}

// leaseOnce renews the entries that have run for a lease period. A handler
// whose entry another consumer owns now, or whose lease could not be renewed
// before the min-idle ran out, has its context cancelled.
func (r *Runtime) leaseOnce() {
	now := time.Now()
	due := now.Add(-r.leaseEvery()).UnixNano()
	byStream := map[string][]*workerState{}
	for _, w := range r.workers {
		if m := w.cur.Load(); m != nil && w.leasedAt.Load() <= due {
			byStream[m.Stream] = append(byStream[m.Stream], w)
		}
	}
	for stream, ws := range byStream {
		ids := make([]string, 0, len(ws))
		msgs := make([]*Message, 0, len(ws))
		for _, w := range ws {
			if m := w.cur.Load(); m != nil {
				ids = append(ids, m.ID)
				msgs = append(msgs, m)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		lost, err := reclaim.Lease(ctx, r.client, stream, r.cfg.Group, r.cfg.Consumer, ids)
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			r.logger.Warn("renewing leases failed", "stream", stream, "count", len(ids), "error", err)
			for i, w := range ws {
				if now.Sub(time.Unix(0, w.leasedAt.Load())) >= r.cfg.ReclaimMinIdle {
					r.loseLease(w, msgs[i], "its lease could not be renewed within the reclaim min-idle")
				}
			}
			continue
		}
		isLost := make(map[string]bool, len(lost))
		for _, id := range lost {
			isLost[id] = true
		}
		for i, w := range ws {
			if isLost[msgs[i].ID] {
				r.loseLease(w, msgs[i], "another consumer owns it now")
			} else {
				w.leasedAt.Store(now.UnixNano())
			}
		}
	}
}

// loseLease cancels w's handler if it still runs m.
func (r *Runtime) loseLease(w *workerState, m *Message, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.Load() != m || w.lost {
		return
	}
	w.lost = true
	w.cancel()
	r.logger.Warn("lease lost; cancelling the handler", "stream", m.Stream, "id", m.ID, "type", m.Type, "reason", why)
}

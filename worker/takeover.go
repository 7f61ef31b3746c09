package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
)

// takeOver runs when this consumer has just taken partition s, before it
// reads anything new there: the entries still pending in s — for consumers
// that died or gave the partition up with work left, or for an earlier run
// of this one — are claimed and run in ID order, so that the messages of a
// key keep their order across the change of owner. Nobody else reads s now,
// so every pending entry is abandoned work, whatever its idle time.
//
// Claimed entries go through the dispatch path as fetched ones do, a read's
// worth of free slots at a time, with the delivery counted: each earlier
// delivery was an attempt, and an entry past the attempt limit is
// dead-lettered instead of run (claimedMessages). A suspect (delivered
// IsolateAfter times without finishing, see isolate.go) runs alone, claimed
// on its turn, and the entries after it wait until it is done; its key's
// earlier messages run before it, its later ones after.
//
// It reports whether s may now be read, false when ctx ended first.
func (r *engine) takeOver(ctx context.Context, s *streamState) bool {
	f := r.newFetcher(s, slog.LevelWarn)
	cursor, taken := "-", 0
	for ctx.Err() == nil {
		s.beat.beat()
		if !f.ensureGroup(ctx, ctx) {
			continue
		}
		if f.paused(ctx) { // pause.go: a paused stream's pending entries wait too
			continue
		}
		n := r.acquire(ctx, s.beat, false)
		if n == 0 {
			return false
		}
		if ctx.Err() != nil {
			r.release(n)
			return false
		}
		pend, err := r.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s.name, Group: r.cfg.Group, Start: cursor, End: "+", Count: int64(n),
		}).Result()
		if err != nil {
			r.release(n)
			if isNoGroup(err) {
				s.groupReady.Store(false)
				continue
			}
			f.fail(ctx, "reading the pending entries of a partition taken over", err)
			continue
		}
		if len(pend) == 0 {
			r.release(n)
			s.redisOK.Store(true)
			if taken > 0 {
				f.log.Info("partition taken over: ran the entries its earlier owners left pending first", "count", taken)
			}
			return true
		}
		last, k, err := r.takePending(ctx, s, pend, n)
		if err != nil {
			f.fail(ctx, "claiming the pending entries of a partition taken over", err)
			continue
		}
		f.failures = 0
		cursor, taken = "("+last, taken+k
	}
	return false
}

// takePending claims and dispatches pending entries from the start of pend
// on the n slots reserved for them, releasing the rest: the entries up to
// the first suspect, or that suspect alone, run and waited for. It returns
// the last ID handled and how many.
func (r *engine) takePending(ctx context.Context, s *streamState, pend []redis.XPendingExt, n int) (string, int, error) {
	limit := int64(r.isolateAfter())
	i := 0
	for i < len(pend) && (limit == 0 || pend[i].RetryCount < limit) {
		i++
	}
	if i > 0 {
		r.release(n - i)
		msgs, err := r.claimPending(ctx, s.name, pend[:i])
		if err != nil {
			r.release(i)
			return "", 0, err
		}
		r.dispatch(ctx, msgs, i)
		return pend[i-1].ID, i, nil
	}
	r.release(n - 1)
	msgs, err := r.claimPending(ctx, s.name, pend[:1])
	if err != nil {
		r.release(1)
		return "", 0, err
	}
	r.runAlone(ctx, s.name, msgs, 1, s.beat)
	return pend[0].ID, 1, nil
}

// claimPending claims entries of any consumer, counting a delivery, and
// builds their messages.
func (r *engine) claimPending(ctx context.Context, stream string, pend []redis.XPendingExt) ([]*Message, error) {
	ids := make([]string, len(pend))
	deliveries := make(map[string]int64, len(pend))
	for i, e := range pend {
		ids[i] = e.ID
		deliveries[e.ID] = e.RetryCount + 1
	}
	sent := time.Now()
	got, err := r.client.XClaim(ctx, &redis.XClaimArgs{
		Stream: stream, Group: r.cfg.Group, Consumer: r.cfg.Consumer, MinIdle: 0, Messages: ids,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claiming pending entries: %w", err)
	}
	entries := make([]reclaim.Entry, 0, len(got))
	seen := make(map[string]bool, len(got))
	for _, e := range got {
		if e.ID == "" {
			continue
		}
		seen[e.ID] = true
		entries = append(entries, reclaim.Entry{XMessage: e, Deliveries: deliveries[e.ID], ClaimedAt: sent})
	}
	var trimmed []string
	for _, id := range ids {
		if !seen[id] {
			trimmed = append(trimmed, id)
		}
	}
	// XCLAIM drops from the pending list the entries trimmed from the stream.
	r.metrics.Reclaim.Trimmed(r.logger, stream, trimmed, false)
	return r.claimedMessages(ctx, stream, entries), nil
}

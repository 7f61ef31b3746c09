package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// mark cancels entry IDs as streamctl cancel does: a member of the stream's
// cancel marks scored by the time of the cancel.
func mark(t *testing.T, c *redis.Client, stream string, at time.Time, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := c.ZAdd(context.Background(), wire.CancelledKey(stream), redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// A cancelled entry not yet delivered, and one a dead consumer left pending
// and the reclaimer takes, are acknowledged without running and counted
// cancelled; the others run. A mark past the retention does not count.
func TestCancelledEntriesAckedUnrun(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0")
	add := func(data string) string {
		t.Helper()
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", data}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Two a consumer read and died with, one cancelled.
	pendingCancelled, pendingRun := add("p-cancelled"), add("p-run")
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 2}).Err(); err != nil {
		t.Fatal(err)
	}
	queuedCancelled := add("q-cancelled")
	expired := add("q-expired")
	for i := range 5 {
		add("q-" + strconv.Itoa(i))
	}
	now := time.Now()
	mark(t, c, stream, now, pendingCancelled, queuedCancelled)
	mark(t, c, stream, now.Add(-wire.CancelRetention-time.Minute), expired)

	var seen counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		seen.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "all seven acked and two cancelled", func() bool {
		return h.outcome("t", OutcomeAcked) == 7 && h.outcome("t", OutcomeCancelled) == 2
	})
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	for _, d := range []string{"p-cancelled", "q-cancelled"} {
		if n := seen.get(d); n != 0 {
			t.Errorf("cancelled entry %s ran %d times", d, n)
		}
	}
	for _, d := range []string{"p-run", "q-expired", "q-0", "q-4"} {
		if n := seen.get(d); n != 1 {
			t.Errorf("entry %s ran %d times, want 1", d, n)
		}
	}
	_ = pendingRun
}

// A mark made while the worker runs takes effect once the worker has read
// the marks again (at a dispatch cancelPoll after the last read): an entry
// cancelled, then added under its ID, is acknowledged unrun.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	var seen counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		seen.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "t", "data", "first") // the first dispatch reads the (no) marks
	eventually(t, "first acked", func() bool { return h.outcome("t", OutcomeAcked) == 1 })
	// An ID ahead of every other: the entry is added under it after the
	// mark, as if it had been queued behind a backlog when it was cancelled.
	id := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10) + "-0"
	mark(t, c, stream, time.Now(), id)
	// Marks are read at a dispatch cancelPoll after the last read: keep
	// the worker dispatching until then (each entry acked before the next).
	marked := time.Now()
	for n := 2; time.Since(marked) <= cancelPoll; n++ {
		h.publish("type", "t", "data", "filler")
		eventually(t, "filler acked", func() bool { return h.outcome("t", OutcomeAcked) == n })
	}
	h.publish("type", "t", "data", "filler") // dispatched after the poll period: reads the mark
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"type", "t", "data", "cancelled"}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the entry cancelled", func() bool { return h.outcome("t", OutcomeCancelled) == 1 })
	if n := seen.get("cancelled"); n != 0 {
		t.Errorf("the cancelled entry ran %d times", n)
	}
}

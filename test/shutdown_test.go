package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
)

// publishSeqs publishes one event of typ per seq 1..n and returns the entry
// ID of each seq.
func publishSeqs(t *testing.T, prod *producer.Producer, stream, typ string, n, sleepMS int) map[int]string {
	t.Helper()
	events := make([]producer.Event, n)
	for i := range events {
		events[i] = producer.Event{Type: typ, Data: payload(i+1, sleepMS)}
	}
	got, err := prod.PublishBatch(context.Background(), stream, events)
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	ids := make(map[int]string, n)
	for i, id := range got {
		ids[i+1] = id
	}
	return ids
}

// undelivered returns the seqs of the entries after the group's last
// delivered ID: those no consumer has been given yet.
func undelivered(t *testing.T, c *redis.Client, stream string) []int {
	t.Helper()
	g := readGroup(t, c, stream)
	entries, err := c.XRange(context.Background(), stream, "("+g.lastDelivered, "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, 0, len(entries))
	for _, e := range entries {
		data, _ := e.Values[wire.FieldData].(string)
		out = append(out, seqOf(t, data))
	}
	slices.Sort(out)
	return out
}

// testDrainOnSIGTERM stops a worker while slow handlers run: they finish and
// are acknowledged, nothing more is fetched, and what was never fetched stays
// in the stream for the next worker, which then handles it.
func testDrainOnSIGTERM(t *testing.T, bin string) {
	t.Parallel()
	const total, concurrency, sleepMS = 12, 4, 1500
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishSeqs(t, newProducer(t, srv), stream, "slow", total, sleepMS)

	w1 := startWorker(t, bin, "worker 1", workerEnv(srv.URL(), stream, "w1", map[string]string{
		"WORKER_CONCURRENCY": fmt.Sprint(concurrency),
	}))
	startedKey := stream + ":started"
	waitFor(t, 30*time.Second, w1, "every handler slot to run a slow message", func() (bool, string) {
		n := c.SCard(ctx, startedKey).Val()
		return n >= concurrency, fmt.Sprintf("%d started", n)
	})
	took := w1.stop(30 * time.Second)
	t.Logf("worker 1 drained and exited %s after SIGTERM", took.Round(time.Millisecond))
	w1.requireCleanLog()

	started := members(t, c, startedKey)
	processed := counts(t, c, stream+":processed")
	if len(started) < concurrency {
		t.Fatalf("started %v, want at least %d", started, concurrency)
	}
	for _, seq := range started {
		if processed[seq] != 1 {
			t.Errorf("seq %d was started before SIGTERM but processed %d times, want once", seq, processed[seq])
		}
	}
	if len(processed) != len(started) {
		t.Errorf("processed %v, want exactly the started %v", processed, started)
	}
	if p, err := c.XPending(ctx, stream, group).Result(); err != nil || p.Count != 0 {
		t.Errorf("XPENDING after the drain: %+v %v, want nothing pending", p, err)
	}
	g := readGroup(t, c, stream)
	if g.entriesRead != int64(len(started)) || g.lag != int64(total-len(started)) || g.delayed != 0 || g.dead != 0 {
		t.Errorf("after the drain: %s; want %d read, lag %d, nothing delayed or dead", g, len(started), total-len(started))
	}
	var want []int
	for seq := 1; seq <= total; seq++ {
		if !slices.Contains(started, seq) {
			want = append(want, seq)
		}
	}
	if got := undelivered(t, c, stream); !slices.Equal(got, want) {
		t.Errorf("undelivered entries %v, want the never-started %v", got, want)
	}

	// The next worker takes over what was left.
	w2 := startWorker(t, bin, "worker 2", workerEnv(srv.URL(), stream, "w2", map[string]string{
		"WORKER_CONCURRENCY": "16",
	}))
	waitFor(t, 30*time.Second, w2, "the next worker to handle the rest", func() (bool, string) {
		n := c.HLen(ctx, stream+":processed").Val()
		g := readGroup(t, c, stream)
		return n == total && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d/%d %s", n, total, g)
	})
	w2.stop(30 * time.Second)
	w2.requireCleanLog()
	for seq, n := range counts(t, c, stream+":processed") {
		if n != 1 {
			t.Errorf("seq %d processed %d times over both workers, want once", seq, n)
		}
	}
}

// testHandOverAtDeadline stops a worker whose handlers outlast the shutdown
// timeout: it exits 0 soon after the timeout, leaving the unfinished entries
// pending (not acknowledged, not retried, not dead) with an idle time past
// the reclaim min-idle, so another consumer may claim them at once.
func testHandOverAtDeadline(t *testing.T, bin string) {
	t.Parallel()
	const total, concurrency = 5, 3
	const shutdownTimeout, minIdle = 500 * time.Millisecond, time.Minute
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	ids := publishSeqs(t, newProducer(t, srv), stream, "block", total, 0)

	w := startWorker(t, bin, "worker", workerEnv(srv.URL(), stream, "w1", map[string]string{
		"WORKER_CONCURRENCY":      fmt.Sprint(concurrency),
		"WORKER_SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
		"WORKER_RECLAIM_MIN_IDLE": minIdle.String(),
	}))
	startedKey := stream + ":started"
	waitFor(t, 30*time.Second, w, "every handler slot to block", func() (bool, string) {
		n := c.SCard(ctx, startedKey).Val()
		return n >= concurrency, fmt.Sprintf("%d started", n)
	})
	took := w.stop(shutdownTimeout + 30*time.Second)
	t.Logf("exited %s after SIGTERM (shutdown timeout %s)", took.Round(time.Millisecond), shutdownTimeout)
	// Generous: the bound is on "soon after the timeout", not on speed.
	if limit := shutdownTimeout + 5*time.Second; took > limit {
		t.Errorf("exit took %s after SIGTERM, want about the shutdown timeout %s (at most %s)", took, shutdownTimeout, limit)
	}
	w.requireCleanLog()

	started := members(t, c, startedKey)
	wantIDs := make([]string, 0, len(started))
	for _, seq := range started {
		wantIDs = append(wantIDs, ids[seq])
	}
	slices.Sort(wantIDs)
	pending, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 100}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, p := range pending {
		gotIDs = append(gotIDs, p.ID)
		if p.Idle < minIdle {
			t.Errorf("pending %s idle %s, want at least the reclaim min-idle %s (handed over at once)", p.ID, p.Idle, minIdle)
		}
		if p.Consumer != "w1" || p.RetryCount != 1 {
			t.Errorf("pending %s: consumer %q, deliveries %d; want w1, 1", p.ID, p.Consumer, p.RetryCount)
		}
	}
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("pending entries %v, want the unfinished (started) ones %v", gotIDs, wantIDs)
	}
	g := readGroup(t, c, stream)
	if g.lag != int64(total-len(started)) || g.delayed != 0 || g.dead != 0 {
		t.Errorf("after the hand-over: %s; want lag %d and nothing retried or dead-lettered", g, total-len(started))
	}
	if n := c.HLen(ctx, stream+":processed").Val(); n != 0 {
		t.Errorf("%d messages recorded as processed, want none", n)
	}
	var warned bool
	for _, rec := range w.logLines() {
		if msg, _ := rec["msg"].(string); rec["level"] == "WARN" && strings.Contains(msg, "handed over") {
			warned = true
		}
	}
	if !warned {
		t.Error("the worker did not log the hand-over")
	}

	// Nothing was lost: the same consumer, restarted with handlers that now
	// finish, takes its handed-over entries back and the never-fetched ones.
	if err := c.Set(ctx, stream+":unblock", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	again := startWorker(t, bin, "worker restarted", workerEnv(srv.URL(), stream, "w1", map[string]string{
		"WORKER_CONCURRENCY": fmt.Sprint(concurrency),
	}))
	waitFor(t, 30*time.Second, again, "the restarted worker to finish everything", func() (bool, string) {
		n := c.HLen(ctx, stream+":processed").Val()
		g := readGroup(t, c, stream)
		return n == total && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d/%d %s", n, total, g)
	})
	again.stop(30 * time.Second)
	again.requireCleanLog()
	for seq, n := range counts(t, c, stream+":processed") {
		if n != 1 {
			t.Errorf("seq %d processed %d times after the restart, want once", seq, n)
		}
	}
}

// testSecondSignal sends SIGTERM twice: the first starts a drain with a long
// timeout, the second ends it at once — unfinished work is handed over and
// the process still exits 0 with a clean log, instead of being killed by the
// signal's default action.
func testSecondSignal(t *testing.T, bin string) {
	t.Parallel()
	const concurrency, minIdle = 2, time.Minute
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishSeqs(t, newProducer(t, srv), stream, "block", concurrency, 0)
	w := startWorker(t, bin, "worker", workerEnv(srv.URL(), stream, "w1", map[string]string{
		"WORKER_CONCURRENCY":      fmt.Sprint(concurrency),
		"WORKER_SHUTDOWN_TIMEOUT": "5m",
		"WORKER_RECLAIM_MIN_IDLE": minIdle.String(),
	}))
	waitFor(t, 30*time.Second, w, "both handlers to block", func() (bool, string) {
		n := c.SCard(ctx, stream+":started").Val()
		return n == concurrency, fmt.Sprintf("%d started", n)
	})
	w.signal(syscall.SIGTERM)
	waitFor(t, 30*time.Second, w, "the drain to begin", func() (bool, string) {
		for _, rec := range w.logLines() {
			if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "shutting down") {
				return true, ""
			}
		}
		return false, "no shutdown log yet"
	})
	start := time.Now()
	w.signal(syscall.SIGTERM)
	if code := w.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after a second SIGTERM, want 0", code)
	}
	t.Logf("exited %s after the second SIGTERM", time.Since(start).Round(time.Millisecond))
	w.requireCleanLog()
	pending, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != concurrency {
		t.Fatalf("%d pending, want the %d unfinished entries", len(pending), concurrency)
	}
	for _, p := range pending {
		if p.Idle < minIdle {
			t.Errorf("pending %s idle %s, want >= %s (handed over)", p.ID, p.Idle, minIdle)
		}
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// TestWarnUntrimmed: without WORKER_RETENTION, a stream above the size
// bound is warned about at start, a smaller one and a missing one are not.
// The bound is lowered from 256 MiB for the test.
func TestWarnUntrimmed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	prefix := testredis.Prefix(t)
	big, small, missing := prefix+"big", prefix+"small", prefix+"missing"
	pipe := c.Pipeline()
	for i := range 500 {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: big, Values: []string{wire.FieldType, "e", wire.FieldData, strings.Repeat("x", 100) + fmt.Sprint(i)}})
	}
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: small, Values: []string{wire.FieldType, "e"}})
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	const bound = 16 << 10
	if n := c.MemoryUsage(ctx, big, 5).Val(); n <= bound {
		t.Fatalf("the big stream takes %d bytes, want more than %d", n, bound)
	}
	if n := c.MemoryUsage(ctx, small, 5).Val(); n > bound {
		t.Fatalf("the small stream takes %d bytes, want at most %d", n, bound)
	}
	var logs syncBuffer
	tr := &trimmer{
		client: c, streams: []string{big, small, missing}, bigAt: bound,
		logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	tr.warnUntrimmed(ctx)
	out := logs.String()
	if strings.Count(out, "WORKER_RETENTION is not set") != 1 || !strings.Contains(out, "stream="+big) {
		t.Errorf("want one warning, for %s:\n%s", big, out)
	}
	if strings.Contains(out, small) || strings.Contains(out, missing) {
		t.Errorf("a warning for a stream under the bound or missing:\n%s", out)
	}
}

// TestDelayedWarn: a delayed set over WORKER_DELAYED_WARN is logged at
// ERROR once while it stays over, and streamworker_delayed_over_bound is 1
// until it is back within the bound.
func TestDelayedWarn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	s := testredis.Prefix(t) + "events"
	delayed := wire.DelayedKey(s)
	var logs syncBuffer
	m := newTrimMetrics(prometheus.NewRegistry())
	tr := &trimmer{
		client: c, streams: []string{s}, warnAt: 3, metrics: m, over: map[string]bool{},
		logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	gauge := func() float64 { return testutil.ToFloat64(m.DelayedOver.WithLabelValues(s)) }
	add := func(members ...string) {
		for _, mb := range members {
			if err := c.ZAdd(ctx, delayed, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: mb}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("a", "b", "c")
	tr.runOnce(ctx)
	if g := gauge(); g != 0 || logs.String() != "" {
		t.Errorf("3 entries, bound 3: gauge %v, log %q; want 0 and nothing", g, logs.String())
	}
	add("d")
	tr.runOnce(ctx)
	tr.runOnce(ctx)
	if g := gauge(); g != 1 {
		t.Errorf("4 entries, bound 3: gauge %v, want 1", g)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 || !strings.Contains(logs.String(), "entries=4") {
		t.Errorf("want one ERROR naming 4 entries over two passes:\n%s", logs.String())
	}
	if err := c.ZRem(ctx, delayed, "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	tr.runOnce(ctx)
	if g := gauge(); g != 0 {
		t.Errorf("back to 2 entries: gauge %v, want 0", g)
	}
}

// TestDeadLettersRetention: with WORKER_DLQ_RETENTION, the script that adds
// a dead letter drops those older than the retention (by their IDs' times
// on Redis's clock) and keeps the newer ones; the drops are counted.
func TestDeadLettersRetention(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.DLQRetention = time.Hour
	mux := NewMux()
	mux.HandleFunc("poison", func(context.Context, *Message) error { return Permanent(errors.New("poison")) })
	h := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	ctx := context.Background()
	dlq := wire.DeadLetterKey(h.stream)
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for _, id := range []string{fmt.Sprintf("%d-0", old), fmt.Sprintf("%d-1", old), "*"} {
		if err := h.client.XAdd(ctx, &redis.XAddArgs{Stream: dlq, ID: id, Values: []string{wire.FieldType, "earlier"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	recent := h.client.XRevRangeN(ctx, dlq, "+", "-", 1).Val()[0].ID
	if err := h.client.XAdd(ctx, &redis.XAddArgs{Stream: h.stream, Values: []string{wire.FieldType, "poison"}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poison message dead-lettered", func() bool { return h.outcome("poison", OutcomeDead) == 1 })
	left := h.client.XRange(ctx, dlq, "-", "+").Val()
	if len(left) != 2 || left[0].ID != recent || left[1].Values[wire.FieldType] != "poison" {
		t.Errorf("dead letters left %v, want the recent one (%s) and the new one", left, recent)
	}
	if got := h.metric("streamworker_dead_letters_dropped_total"); got != 2 {
		t.Errorf("streamworker_dead_letters_dropped_total = %v, want 2", got)
	}
}

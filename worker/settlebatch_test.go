package worker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// settleEngine is an engine on srv whose stream holds n entries, all read
// (pending) by its consumer; it returns their IDs.
func settleEngine(t *testing.T, n int) (*engine, *redis.Client, []string) {
	t.Helper()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	c := srv.Client(t)
	ctx := context.Background()
	s := cfg.Streams[0]
	if err := c.XGroupCreateMkStream(ctx, s, cfg.Group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = c.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{wire.FieldType, "t", wire.FieldData, "d"}}).Val()
	}
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{s, ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	return newEngine(cfg, c, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry())), c, ids
}

func retryReq(stream, id string) settleReq {
	return settleReq{stream: stream, id: id, typ: "t", attempt: 1, due: 1, envelope: wire.EncodeEnvelope(id, []string{wire.FieldType, "t"}),
		outcome: OutcomeRetried, cause: errors.New("try later"), logCtx: context.Background()}
}

func deadReq(stream, id string) settleReq {
	return settleReq{stream: stream, id: id, typ: "t", attempt: 1, dead: true, fields: []string{wire.FieldType, "t", wire.FieldError, "refused"},
		outcome: OutcomeDead, cause: errors.New("refused"), logCtx: context.Background()}
}

// A batch acts only on its entries still pending: an entry acknowledged
// meanwhile gets no copy, and the batch repeated (a lost reply) writes
// nothing more.
func TestSettleBatchActsOnlyOnPending(t *testing.T) {
	t.Parallel()
	r, c, ids := settleEngine(t, 4)
	ctx := context.Background()
	s := r.cfg.Streams[0]
	c.XAck(ctx, s, r.cfg.Group, ids[1], ids[3])
	batch := []settleReq{retryReq(s, ids[0]), retryReq(s, ids[1]), deadReq(s, ids[2]), deadReq(s, ids[3])}
	for range 2 {
		if _, err := r.writeSettles(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if z, d := c.ZCard(ctx, wire.DelayedKey(s)).Val(), c.XLen(ctx, wire.DeadLetterKey(s)).Val(); z != 1 || d != 1 {
			t.Fatalf("delayed set holds %d, dead-letter stream %d; want 1 and 1", z, d)
		}
		if p := c.XPending(ctx, s, r.cfg.Group).Val().Count; p != 0 {
			t.Fatalf("pending = %d, want 0", p)
		}
	}
	env, _ := c.ZRange(ctx, wire.DelayedKey(s), 0, -1).Result()
	if token, _, err := wire.DecodeEnvelope(env[0]); err != nil || token != ids[0] {
		t.Errorf("retry copy is of %q (%v), want %s", token, err, ids[0])
	}
	if d := c.XRange(ctx, wire.DeadLetterKey(s), "-", "+").Val(); d[0].Values[wire.FieldError] != "refused" {
		t.Errorf("dead letter = %v", d[0].Values)
	}
}

// A batch that cannot be written leaves every entry pending, with no copy
// written, and counts them unrecorded; they are then no longer waiting, so
// a reclaim pass runs them again.
func TestSettleBatchFailureLeavesPending(t *testing.T) {
	t.Parallel()
	r, c, ids := settleEngine(t, 2)
	ctx := context.Background()
	s := r.cfg.Streams[0]
	c.Set(ctx, wire.DeadLetterKey(s), "not a stream", 0)
	r.settles.add(retryReq(s, ids[0]))
	r.settles.add(deadReq(s, ids[1]))
	if w := r.settles.waiting(s); len(w) != 2 {
		t.Fatalf("waiting = %v, want both entries", w)
	}
	r.settleBatch(r.settles.take(false))
	r.settles.sent()
	if p := c.XPending(ctx, s, r.cfg.Group).Val().Count; p != 2 {
		t.Errorf("pending = %d, want 2", p)
	}
	if z := c.ZCard(ctx, wire.DelayedKey(s)).Val(); z != 0 {
		t.Errorf("delayed set holds %d, want nothing written", z)
	}
	if got := testutil.ToFloat64(r.metrics.Messages.WithLabelValues(s, "t", OutcomeUnrecorded)); got != 2 {
		t.Errorf("unrecorded = %v, want 2", got)
	}
	if w := r.settles.waiting(s); len(w) != 0 {
		t.Errorf("waiting = %v after the failed batch, want none", w)
	}
}

// Shutdown writes what is queued: the settle loop flushes before it stops.
func TestSettleLoopFlushesAtStop(t *testing.T) {
	t.Parallel()
	r, c, ids := settleEngine(t, 3)
	ctx := context.Background()
	s := r.cfg.Streams[0]
	for _, id := range ids {
		r.settles.add(deadReq(s, id))
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	if err := r.settleLoop(stopped); err != nil {
		t.Fatal(err)
	}
	if d := c.XLen(ctx, wire.DeadLetterKey(s)).Val(); d != 3 {
		t.Errorf("dead-letter stream holds %d, want 3", d)
	}
	if p := c.XPending(ctx, s, r.cfg.Group).Val().Count; p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
	if r.settles.add(deadReq(s, "9-0")) {
		t.Error("a failure was queued after the loop stopped")
	}
}

// Entries whose retry or dead letter waits to be written are not run again
// by the reclaimer.
func TestReclaimSkipsEntriesWaitingForTheirSettle(t *testing.T) {
	r := newEngine(testConfig(t, testredis.Shared(t)), nil, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry()))
	r.settles.add(deadReq("s", "1-0"))
	r.settles.take(false) // 1-0 is being written
	r.settles.add(retryReq("s", "2-0"))
	r.settles.add(retryReq("other", "3-0"))
	var entries []reclaim.Entry
	for _, id := range []string{"1-0", "2-0", "3-0", "4-0"} {
		e := reclaim.Entry{}
		e.ID = id
		entries = append(entries, e)
	}
	var got []string
	for _, e := range r.notSettleWaiting("s", entries) {
		got = append(got, e.ID)
	}
	if len(got) != 2 || got[0] != "3-0" || got[1] != "4-0" {
		t.Errorf("entries left to run: %v, want [3-0 4-0]", got)
	}
}

// One entry given twice in a batch, with two different copies (two
// consumers' failures of it, say), gets one copy; a retry whose delayed set
// cannot take it is not acknowledged; and a stream key of another type
// stops the batch before its copies are written.
func TestSettleBatchOneCopyPerEntry(t *testing.T) {
	t.Parallel()
	r, c, ids := settleEngine(t, 2)
	ctx := context.Background()
	s := r.cfg.Streams[0]
	again := retryReq(s, ids[0])
	again.envelope = wire.EncodeEnvelope(ids[0], []string{wire.FieldType, "t", wire.FieldAttempt, "3"})
	if _, err := r.writeSettles(ctx, []settleReq{retryReq(s, ids[0]), again}); err != nil {
		t.Fatal(err)
	}
	if z := c.ZCard(ctx, wire.DelayedKey(s)).Val(); z != 1 {
		t.Errorf("delayed set holds %d copies of one entry, want 1", z)
	}
	c.Del(ctx, wire.DelayedKey(s))
	c.Set(ctx, wire.DelayedKey(s), "not a sorted set", 0)
	if _, err := r.writeSettles(ctx, []settleReq{retryReq(s, ids[1])}); err == nil {
		t.Fatal("a retry was written into a delayed set that is not a sorted set")
	}
	if p := c.XPending(ctx, s, r.cfg.Group).Val().Count; p != 1 {
		t.Errorf("pending = %d, want the entry whose retry could not be written", p)
	}
	c.Del(ctx, wire.DelayedKey(s))
	other := s + ":not-a-stream"
	c.Set(ctx, other, "x", 0)
	chunk := []settleReq{retryReq(other, ids[1])}
	if _, err := r.writeSettles(ctx, chunk); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("a retry of a stream key that is not a stream: %v, want WRONGTYPE", err)
	}
	if z := c.Exists(ctx, wire.DelayedKey(other)).Val(); z != 0 {
		t.Errorf("a copy was written for a stream key that is not a stream")
	}
}

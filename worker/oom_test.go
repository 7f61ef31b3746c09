package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// A Redis out of memory refuses XGROUP CREATE even for a group that exists;
// ensureGroup looks first and so does not fail on it. A missing group is
// still refused (nothing can be created).
func TestEnsureGroupUnderOOM(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t, "--maxmemory-policy", "noeviction")
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "events"
	if err := ensureGroup(ctx, c, stream, "g", "0"); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreate(ctx, stream, "g", "0").Err(); !isOOM(err) {
		t.Fatalf("XGROUP CREATE under OOM: %v, want an OOM refusal (the case ensureGroup avoids)", err)
	}
	if err := ensureGroup(ctx, c, stream, "g", "0"); err != nil {
		t.Errorf("ensureGroup of an existing group under OOM: %v, want nil", err)
	}
	if err := ensureGroup(ctx, c, stream, "other", "0"); !isOOM(err) {
		t.Errorf("ensureGroup of a missing group under OOM: %v, want the OOM refusal", err)
	}
}

// oomServer starts a Redis of the test's own that refuses writes for want
// of memory once its maxmemory is set low (noeviction), with the group of
// cfg's stream created.
func oomServer(t *testing.T) (*redis.Client, config.Config) {
	t.Helper()
	srv := testredis.Start(t, "--maxmemory-policy", "noeviction")
	c := srv.Client(t)
	cfg := testConfig(t, srv)
	if err := ensureGroup(context.Background(), c, cfg.Streams[0], cfg.Group, "0"); err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

// Under OOM a dedupe mark is refused but XACK is taken: the batch counts as
// acknowledged, and the refusal starts the hold on retry copies.
func TestAcksUnderOOMLeaveDedupeMarksOut(t *testing.T) {
	t.Parallel()
	c, cfg := oomServer(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "c1", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := newEngine(cfg, c, NewMux(), testLogger(t), NewMetrics(reg))
	batch := []ackReq{{stream: stream, id: id, typ: "t", dedupe: wire.DedupeKey(stream, "k"), outcome: OutcomeAcked}}
	if err := r.flushAcks(ctx, batch, nil); err != nil {
		t.Fatalf("flushAcks under OOM: %v, want nil (the XACK was taken)", err)
	}
	if n := c.XPending(ctx, stream, cfg.Group).Val().Count; n != 0 {
		t.Errorf("%d entries pending after the acknowledgement", n)
	}
	if !r.health.outOfMemory() || !r.health.refusesWrites() {
		t.Error("the refused dedupe mark did not start the hold on writes")
	}
	if v := testutil.ToFloat64(r.metrics.OutOfMemory); v != 1 {
		t.Errorf("streamworker_redis_out_of_memory = %v, want 1", v)
	}
	r.health.wrote()
	if r.health.outOfMemory() {
		t.Error("a write that worked did not end the hold")
	}
}

func TestRedisHealthHold(t *testing.T) {
	h := newRedisHealth(testLogger(t))
	if h.noted(replyErr("ERR something else")) || h.noted(errors.New("OOM but not a reply")) || h.outOfMemory() {
		t.Fatal("an error other than OOM started the hold")
	}
	if !h.noted(replyErr("OOM command not allowed when used memory > 'maxmemory'.")) || !h.outOfMemory() {
		t.Fatal("an OOM refusal did not start the hold")
	}
	h.wrote()
	if h.outOfMemory() || h.oomStreak.Load() != 0 {
		t.Fatal("a write that worked did not end the hold")
	}
}

// Entries whose handler succeeded and whose acknowledgement waits (queued,
// or on a lane) are not delivered again by the reclaimer.
func TestReclaimSkipsEntriesWaitingForTheirAck(t *testing.T) {
	r := newEngine(testConfig(t, testredis.Shared(t)), nil, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry()))
	r.acks.add(ackReq{stream: "s", id: "1-0"})
	lane := &ackLane{sending: []ackReq{{stream: "s", id: "2-0"}}, queue: []ackReq{{stream: "other", id: "3-0"}}}
	r.acks.lanes["n"] = lane
	entries := []reclaim.Entry{}
	for _, id := range []string{"1-0", "2-0", "3-0", "4-0"} {
		e := reclaim.Entry{}
		e.ID = id
		entries = append(entries, e)
	}
	var got []string
	for _, e := range r.notAckWaiting("s", entries) {
		got = append(got, e.ID)
	}
	if len(got) != 2 || got[0] != "3-0" || got[1] != "4-0" {
		t.Errorf("entries left to run: %v, want [3-0 4-0] (1-0 queued and 2-0 on a lane are done)", got)
	}
}

// replyErr is an error reply from Redis, as go-redis returns it.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// Under OOM a batch of retries is refused whole while an entry of it is
// pending (nothing written, every entry still pending), and succeeds with
// nothing to write when none is: a batch repeated after a lost reply is
// not reported as failed.
func TestSettleBatchUnderOOM(t *testing.T) {
	t.Parallel()
	c, cfg := oomServer(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	var ids []string
	for range 2 {
		ids = append(ids, c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t"}}).Val())
	}
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	r := newEngine(cfg, c, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry()))
	first := []settleReq{retryReq(stream, ids[0])}
	if _, err := r.writeSettles(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.writeSettles(ctx, first); err != nil {
		t.Errorf("the settled batch again under OOM: %v, want nothing to write", err)
	}
	if _, err := r.writeSettles(ctx, []settleReq{retryReq(stream, ids[0]), retryReq(stream, ids[1])}); !isOOM(err) {
		t.Errorf("a batch with a pending entry under OOM: %v, want the OOM refusal", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if p := c.XPending(ctx, stream, cfg.Group).Val().Count; p != 1 {
		t.Errorf("pending = %d, want the entry whose retry was refused", p)
	}
	if z := c.ZCard(ctx, wire.DelayedKey(stream)).Val(); z != 1 {
		t.Errorf("delayed set holds %d, want the first batch's copy only", z)
	}
}

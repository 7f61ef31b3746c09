package retention_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/retention"
	"github.com/streamworker/streamworker/wire"
)

// fill adds n entries to stream and returns their IDs.
func fill(t *testing.T, c *redis.Client, stream string, n int) []string {
	t.Helper()
	ctx := context.Background()
	pipe := c.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for i := range cmds {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t", wire.FieldData, fmt.Sprint(i)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids
}

// read delivers n entries to consumer of group and acknowledges the first
// acked of them.
func read(t *testing.T, c *redis.Client, stream, group, consumer string, n, acked int) {
	t.Helper()
	ctx := context.Background()
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: int64(n), Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	es := res[0].Messages
	if len(es) != n {
		t.Fatalf("read %d entries, want %d", len(es), n)
	}
	for _, e := range es[:acked] {
		if err := c.XAck(ctx, stream, group, e.ID).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func first(t *testing.T, c *redis.Client, stream string) string {
	t.Helper()
	es, err := c.XRangeN(context.Background(), stream, "-", "+", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) == 0 {
		return ""
	}
	return es[0].ID
}

// TestTrimKeepsWhatGroupsNeed: three groups at different places — a fast
// one, a slow one and one whose consumers stopped with entries pending —
// and the stream is trimmed exactly up to the oldest entry the slowest
// still needs, whichever of its pending list or its undelivered entries
// that is; nothing any group needs goes.
func TestTrimKeepsWhatGroupsNeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testredis.Shared(t).Client(t)
	s := testredis.Prefix(t) + "s"
	ids := fill(t, c, s, 1000)
	for _, g := range []string{"fast", "slow", "stopped"} {
		if err := c.XGroupCreate(ctx, s, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	read(t, c, s, "fast", "f", 1000, 900)
	read(t, c, s, "slow", "s", 300, 200)    // needs ids[200], pending
	read(t, c, s, "stopped", "x", 400, 350) // needs ids[350], pending; nobody reads it any more

	dry, err := retention.Trim(ctx, c, s, retention.Options{Exact: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := retention.Plan{Stream: s, MinID: ids[200], Reason: retention.ReasonPending, Group: "slow"}
	if dry != want {
		t.Fatalf("dry run = %+v, want %+v", dry, want)
	}
	if l := c.XLen(ctx, s).Val(); l != 1000 {
		t.Fatalf("a dry run trimmed: length %d", l)
	}

	// check trims, and wants the stream to begin with firstLeft. The bound
	// is firstLeft itself when an entry pending bounds the trim, or the
	// successor of the last delivered, which may be below firstLeft.
	check := func(firstLeft, reason, group string, trimmed int64) {
		t.Helper()
		p, err := retention.Trim(ctx, c, s, retention.Options{Exact: true})
		if err != nil {
			t.Fatal(err)
		}
		minID := p.MinID
		if reason == retention.ReasonPending {
			minID = firstLeft
		}
		want := retention.Plan{Stream: s, MinID: minID, Reason: reason, Group: group, Trimmed: trimmed}
		if p != want {
			t.Fatalf("Trim = %+v, want %+v", p, want)
		}
		if got := first(t, c, s); got != firstLeft {
			t.Fatalf("first entry after the trim is %s, want %s", got, firstLeft)
		}
	}
	check(ids[200], retention.ReasonPending, "slow", 200)
	// The slow group reads on and acknowledges everything: it needs
	// ids[400], not yet delivered, and the stopped group ids[350].
	read(t, c, s, "slow", "s", 100, 0)
	c.XAck(ctx, s, "slow", ids[200:400]...)
	check(ids[350], retention.ReasonPending, "stopped", 150)
	read(t, c, s, "slow", "s", 600, 600)
	check(ids[350], retention.ReasonPending, "stopped", 0)
	// The stopped group's consumer is deleted, its pending entries with it:
	// it needs its undelivered entries still.
	if err := c.XGroupDelConsumer(ctx, s, "stopped", "x").Err(); err != nil {
		t.Fatal(err)
	}
	check(ids[400], retention.ReasonUndelivered, "stopped", 50)
	read(t, c, s, "stopped", "x", 600, 600)
	check(ids[900], retention.ReasonPending, "fast", 500)
	c.XAck(ctx, s, "fast", ids[900:]...)
	p, err := retention.Trim(ctx, c, s, retention.Options{Exact: true})
	if err != nil || p.Trimmed != 100 || c.XLen(ctx, s).Val() != 0 {
		t.Fatalf("every group done: Trim = %+v, %v; length %d, want all 100 left trimmed", p, err, c.XLen(ctx, s).Val())
	}
}

// TestTrimRetention: a retention keeps entries newer than it even when no
// group needs them; a stream without groups is trimmed only by retention.
func TestTrimRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testredis.Shared(t).Client(t)
	s := testredis.Prefix(t) + "s"
	fill(t, c, s, 10)
	p, err := retention.Trim(ctx, c, s, retention.Options{Exact: true})
	if err != nil || p.MinID != "" || p.Reason != retention.ReasonNoGroups || c.XLen(ctx, s).Val() != 10 {
		t.Fatalf("no groups, no retention: %+v, %v; length %d, want nothing trimmed", p, err, c.XLen(ctx, s).Val())
	}
	p, err = retention.Trim(ctx, c, s, retention.Options{Exact: true, Keep: true, Retention: time.Hour})
	if err != nil || p.Reason != retention.ReasonRetention || p.Trimmed != 0 || c.XLen(ctx, s).Val() != 10 {
		t.Fatalf("no groups, an hour's retention: %+v, %v; length %d, want nothing trimmed", p, err, c.XLen(ctx, s).Val())
	}
	// A group done with everything: an hour's retention keeps it all.
	if err := c.XGroupCreate(ctx, s, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	p, err = retention.Trim(ctx, c, s, retention.Options{Exact: true, Keep: true, Retention: time.Hour})
	if err != nil || p.Reason != retention.ReasonRetention || p.Trimmed != 0 {
		t.Fatalf("an hour's retention: %+v, %v; want nothing trimmed", p, err)
	}
	// Entries with IDs of two hours ago go; those of now stay.
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := range 5 {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: s + "2", ID: fmt.Sprintf("%d-%d", old, i), Values: []string{"type", "t"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, c, s+"2", 3)
	c.XGroupCreate(ctx, s+"2", "g", "$")
	p, err = retention.Trim(ctx, c, s+"2", retention.Options{Exact: true, Keep: true, Retention: time.Hour})
	if err != nil || p.Reason != retention.ReasonRetention || p.Trimmed != 5 || c.XLen(ctx, s+"2").Val() != 3 {
		t.Fatalf("an hour's retention over entries of two hours ago: %+v, %v; length %d, want the 5 old ones trimmed", p, err, c.XLen(ctx, s+"2").Val())
	}
	p, err = retention.Trim(ctx, c, s+"2", retention.Options{Exact: true, Keep: true})
	if err != nil || p.Trimmed != 3 || c.XLen(ctx, s+"2").Val() != 0 {
		t.Fatalf("retention 0, every entry delivered and acknowledged: %+v, %v; want all trimmed", p, err)
	}
	p, err = retention.Trim(ctx, c, s+"missing", retention.Options{})
	if err != nil || p.Reason != retention.ReasonNoStream {
		t.Fatalf("no stream: %+v, %v", p, err)
	}
}

// TestTrimLease: only the lease's holder trims; another trims once it is
// released (or it runs out).
func TestTrimLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testredis.Shared(t).Client(t)
	s := testredis.Prefix(t) + "s"
	fill(t, c, s, 10)
	c.XGroupCreate(ctx, s, "g", "$")
	a := retention.Options{Exact: true, Keep: true, Holder: "g/a", LeaseTTL: time.Minute}
	b := a
	b.Holder = "g/b"
	p, err := retention.Trim(ctx, c, s, a)
	if err != nil || p.Trimmed != 10 || p.HeldBy != "" {
		t.Fatalf("a: %+v, %v", p, err)
	}
	fill(t, c, s, 5)
	c.XGroupSetID(ctx, s, "g", "$")
	if p, err = retention.Trim(ctx, c, s, b); err != nil || p.Trimmed != 0 || p.HeldBy != "g/a" {
		t.Fatalf("b while a holds the lease: %+v, %v; want nothing trimmed, held by g/a", p, err)
	}
	if ttl := c.PTTL(ctx, wire.TrimLeaseKey(s)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("lease TTL %s", ttl)
	}
	if err := retention.Release(ctx, c, s, "g/b"); err != nil || c.Get(ctx, wire.TrimLeaseKey(s)).Val() != "g/a" {
		t.Fatalf("b released a's lease: %v", err)
	}
	if err := retention.Release(ctx, c, s, "g/a"); err != nil {
		t.Fatal(err)
	}
	if p, err = retention.Trim(ctx, c, s, b); err != nil || p.Trimmed != 5 {
		t.Fatalf("b after a released: %+v, %v", p, err)
	}
}

// TestTrimForgedIDs: IDs whose parts pass 2^53 are compared exactly, and
// the bound never passes an entry a group needs.
func TestTrimForgedIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testredis.Shared(t).Client(t)
	s := testredis.Prefix(t) + "s"
	ids := []string{"5-1", "5-18446744073709551613", "5-18446744073709551614", "9007199254740993-0", "9007199254740993-1"}
	for _, id := range ids {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: s, ID: id, Values: []string{"type", "t"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.XGroupCreate(ctx, s, "g", "0")
	read(t, c, s, "g", "c", 2, 2)
	p, err := retention.Trim(ctx, c, s, retention.Options{Exact: true})
	if err != nil || first(t, c, s) != ids[1] && first(t, c, s) != ids[2] {
		t.Fatalf("%+v, %v; first left %s, want %s or the one after it", p, err, first(t, c, s), ids[1])
	}
	read(t, c, s, "g", "c", 2, 2)
	p, err = retention.Trim(ctx, c, s, retention.Options{Exact: true})
	if err != nil || first(t, c, s) != ids[4] {
		t.Fatalf("%+v, %v; first left %s, want %s", p, err, first(t, c, s), ids[4])
	}
}

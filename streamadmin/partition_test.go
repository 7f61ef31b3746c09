package streamadmin

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// PartitionStatus shows every partition, those not created yet as empty,
// where Status refuses a missing stream.
func TestPartitionStatus(t *testing.T) {
	f := newFixture(t)
	logical := f.stream
	p1 := wire.PartitionStream(logical, 1)
	for range 3 {
		f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: p1, Values: []string{"type", "t"}})
	}
	f.c.XGroupCreate(f.ctx, p1, "workers", "0")
	f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(wire.PartitionStream(logical, 2)), Values: []string{"type", "t"}})

	st, err := f.admin.PartitionStatus(f.ctx, logical, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 {
		t.Fatalf("%d partitions, want 3", len(st))
	}
	for i, want := range []struct {
		length, dead int64
		groups       int
	}{{0, 0, 0}, {3, 0, 1}, {0, 1, 0}} {
		s := st[i]
		if s.Stream != wire.PartitionStream(logical, i) || s.Length != want.length || s.Dead != want.dead || len(s.Groups) != want.groups {
			t.Errorf("partition %d = %+v, want length %d, dead %d, %d groups", i, s, want.length, want.dead, want.groups)
		}
	}
	if _, err := f.admin.Status(f.ctx, wire.PartitionStreams(logical, 3)); !errors.Is(err, ErrNoStream) {
		t.Errorf("Status of a missing partition = %v, want ErrNoStream", err)
	}
}

// On a Redis Cluster, Streams lists the streams of every primary.
func TestStreamsOnCluster(t *testing.T) {
	t.Parallel()
	_, cc := testredis.OneNodeCluster(t)
	ctx := context.Background()
	for _, s := range []string{"{b}", "{a}", "{a}:dlq"} {
		cc.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"type", "t"}})
	}
	got, err := New(cc).Streams(ctx)
	if err != nil || len(got) != 2 || got[0] != "{a}" || got[1] != "{b}" {
		t.Errorf("Streams() = %q, %v; want [{a} {b}]", got, err)
	}
}

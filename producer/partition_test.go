package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

func TestRoute(t *testing.T) {
	p4 := New(nil, Options{Partitions: 4})
	part := func(key string) string { return wire.PartitionStream("orders", wire.PartitionFor(key, 4)) }
	for _, tc := range []struct {
		name   string
		p      *Producer
		stream string
		e      Event
		want   string
	}{
		{"NotPartitioned", New(nil, Options{}), "orders", Event{Key: "k"}, "orders"},
		{"OnePartitionIsNotPartitioned", New(nil, Options{Partitions: 1}), "{orders}", Event{Key: "k"}, "{orders}"},
		{"ByKey", p4, "orders", Event{Key: "customer-7", ID: "x"}, part("customer-7")},
		{"ByMetadataKey", p4, "orders", Event{Metadata: map[string]string{"key": "customer-7"}}, part("customer-7")},
		{"KeyWinsOverMetadata", p4, "orders", Event{Key: "customer-7", Metadata: map[string]string{"key": "other"}}, part("customer-7")},
		{"ByID", p4, "orders", Event{ID: "order-9"}, part("order-9")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Route(tc.stream, tc.e)
			if err != nil || got != tc.want {
				t.Errorf("Route(%q, %+v) = %q, %v; want %q", tc.stream, tc.e, got, err, tc.want)
			}
		})
	}
	t.Run("RoundRobin", func(t *testing.T) {
		p := New(nil, Options{Partitions: 3})
		var got []string
		for range 7 {
			s, err := p.Route("orders", Event{Type: "t"})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		want := []string{"{orders:0}", "{orders:1}", "{orders:2}", "{orders:0}", "{orders:1}", "{orders:2}", "{orders:0}"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("round-robin (-want +got):\n%s", diff)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name, stream string
			partitions   int
			want         string
		}{
			{"BracesInPartitionedName", "{orders}", 4, `stream "{orders}": a partitioned stream is named without braces; its 4 partitions are {{orders}:0} … {{orders}:3}`},
			{"ClosingBrace", "ord}ers", 2, "named without braces"},
			{"NegativePartitions", "orders", -1, "Options.Partitions is -1: want 0 or 1 (one stream) or more partitions"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := New(nil, Options{Partitions: tc.partitions}).Route(tc.stream, Event{Key: "k"})
				if !errors.Is(err, ErrPartitioning) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Route = %v, want ErrPartitioning saying %q", err, tc.want)
				}
			})
		}
	})
}

// Events with one key land in one partition in the order sent; every
// publish path routes the same way, and refuses before sending anything.
func TestPublishPartitioned(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := strings.TrimSuffix(testredis.Prefix(t), ":") + "-orders"
	const n = 4
	p := New(c, Options{Partitions: n})
	keys := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace"}

	// 5 batches of 70 events over 7 keys, and single publishes between.
	seq := 0
	for range 5 {
		var events []Event
		for range 70 {
			seq++
			k := keys[seq%len(keys)]
			events = append(events, Event{Type: "t", Key: k, Data: []byte(strconv.Itoa(seq))})
		}
		if _, err := p.PublishBatch(ctx, stream, events); err != nil {
			t.Fatal(err)
		}
		seq++
		if _, err := p.Publish(ctx, stream, Event{Type: "t", Key: keys[seq%len(keys)], Data: []byte(strconv.Itoa(seq))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{} // key -> last seq
	perPartition := map[string]int{}
	total := 0
	for i := range n {
		part := wire.PartitionStream(stream, i)
		msgs, err := c.XRange(ctx, part, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			k, _ := m.Values[wire.FieldKey].(string)
			if want := wire.PartitionStream(stream, wire.PartitionFor(k, n)); want != part {
				t.Fatalf("event of key %q in %s, want %s", k, part, want)
			}
			s, _ := strconv.Atoi(m.Values[wire.FieldData].(string))
			if s <= seen[k] {
				t.Fatalf("key %q: seq %d after %d in %s: order lost", k, s, seen[k], part)
			}
			seen[k] = s
			perPartition[part]++
			total++
		}
	}
	if total != seq || len(seen) != len(keys) {
		t.Errorf("%d events over %d keys in the partitions, want %d over %d", total, len(seen), seq, len(keys))
	}
	t.Logf("events per partition: %v", perPartition)
	if c.Exists(ctx, stream).Val() != 0 {
		t.Error("an event went to the logical stream's own key")
	}

	// Without a key or ID: round-robin, an even spread.
	rr := stream + "-rr"
	events := make([]Event, 4*n)
	for i := range events {
		events[i] = Event{Type: "t"}
	}
	if _, err := p.PublishBatch(ctx, rr, events); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got := c.XLen(ctx, wire.PartitionStream(rr, i)).Val(); got != 4 {
			t.Errorf("round-robin partition %d has %d events, want 4", i, got)
		}
		if got := c.XRange(ctx, wire.PartitionStream(rr, i), "-", "+").Val(); len(got) > 0 && got[0].Values[wire.FieldKey] != nil {
			t.Errorf("a key field without a key: %v", got[0].Values)
		}
	}

	// Delayed events and mixed items go to the partition's delayed set.
	due := time.Now().Add(time.Hour)
	if err := p.PublishDelayed(ctx, stream, Event{Type: "t", ID: "order-1"}, due); err != nil {
		t.Fatal(err)
	}
	byID := wire.PartitionStream(stream, wire.PartitionFor("order-1", n))
	if got := c.ZCard(ctx, wire.DelayedKey(byID)).Val(); got != 1 {
		t.Errorf("%s holds %d, want the delayed event routed by its ID", wire.DelayedKey(byID), got)
	}
	res, err := p.PublishItems(ctx, stream, []Item{{Event: Event{Type: "t", Key: "alice"}}, {Event: Event{Type: "t", Key: "bob"}, Due: due}})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"alice", "bob"} {
		if want := wire.PartitionStream(stream, wire.PartitionFor(k, n)); res[i].Stream != want {
			t.Errorf("item %d went to %q, want %q", i, res[i].Stream, want)
		}
	}

	// A braced name is refused before anything is sent.
	bad := "{" + stream + "-braced}"
	for name, err := range map[string]error{
		"Publish":        func() error { _, err := p.Publish(ctx, bad, Event{Type: "t"}); return err }(),
		"PublishBatch":   func() error { _, err := p.PublishBatch(ctx, bad, []Event{{Type: "t"}}); return err }(),
		"PublishItems":   func() error { _, err := p.PublishItems(ctx, bad, []Item{{Event: Event{Type: "t"}}}); return err }(),
		"PublishDelayed": p.PublishDelayed(ctx, bad, Event{Type: "t"}, due),
	} {
		if !errors.Is(err, ErrPartitioning) {
			t.Errorf("%s to %q = %v, want ErrPartitioning", name, bad, err)
		}
	}
	if ks := c.Keys(ctx, "*"+stream+"-braced*").Val(); len(ks) != 0 {
		t.Errorf("refused publishes wrote %v", ks)
	}
}

// The key field is sent without partitioning too, and Key wins over a key
// in the metadata.
func TestKeyFieldWithoutPartitions(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{})
	id, err := p.Publish(ctx, stream, Event{Type: "t", Key: "k1", Metadata: map[string]string{"key": "k2", "x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	got := c.XRange(ctx, stream, id, id).Val()
	want := map[string]any{"type": "t", "data": "", "key": "k1", "x": "y"}
	if len(got) != 1 {
		t.Fatalf("entry %s not found", id)
	}
	if diff := cmp.Diff(want, got[0].Values); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
}

// On a Redis Cluster the partitions of one batch sit in different slots;
// the producer's client (no retries, no redirections) sends them all.
func TestPublishPartitionedOnCluster(t *testing.T) {
	t.Parallel()
	srv, cc := testredis.OneNodeCluster(t)
	client, err := config.Redis{RedisURL: "redis:///0", RedisClusterAddrs: []string{srv.Addr}}.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	p := New(client, Options{Partitions: 8})
	events := make([]Event, 80)
	for i := range events {
		events[i] = Event{Type: "t", Key: fmt.Sprintf("k%d", i%16)}
	}
	if _, err := p.PublishBatch(ctx, "orders", events); err != nil {
		t.Fatal(err)
	}
	slots := map[int64]bool{}
	var total int64
	for _, s := range wire.PartitionStreams("orders", 8) {
		total += cc.XLen(ctx, s).Val()
		slots[cc.ClusterKeySlot(ctx, s).Val()] = true
	}
	if total != 80 || len(slots) != 8 {
		t.Errorf("%d events in %d slots, want 80 in 8", total, len(slots))
	}
}

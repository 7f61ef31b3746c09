package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// partitionEntries reads every partition of stream: partition index ->
// entries, oldest first.
func partitionEntries(t *testing.T, c redis.Cmdable, stream string, n int) [][]redis.XMessage {
	t.Helper()
	out := make([][]redis.XMessage, n)
	for i := range n {
		msgs, err := c.XRange(context.Background(), wire.PartitionStream(stream, i), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = msgs
	}
	return out
}

func testSendPartitioned(t *testing.T, c *binary) {
	rc := c.client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "orders"
	part := func(key string) string { return wire.PartitionStream(stream, wire.PartitionFor(key, 4)) }

	t.Run("OneEvent", func(t *testing.T) {
		r := c.run(t, "", []string{"send", "--stream", stream, "--partitions", "4", "--type", "order.paid", "--data", `{"n":1}`, "--key", "customer-3"})
		r.Want(t, 0)
		got, id, _ := strings.Cut(strings.TrimSpace(r.Stdout), " ")
		if got != part("customer-3") {
			t.Fatalf("stdout %q: want the partition %s, then the entry ID", r.Stdout, part("customer-3"))
		}
		e := rc.XRange(ctx, got, id, id).Val()
		if len(e) != 1 || e[0].Values[wire.FieldKey] != "customer-3" {
			t.Errorf("entry %s in %s = %v, want one with the key field", id, got, e)
		}
	})
	t.Run("Delayed", func(t *testing.T) {
		r := c.run(t, "", []string{"send", "--stream", stream, "--partitions", "4", "--type", "t", "--id", "order-9", "--delay", "1h"})
		r.Want(t, 0)
		if got, _, _ := strings.Cut(r.Stdout, " "); got != part("order-9") {
			t.Errorf("stdout %q: want the partition of the id, %s, then the due time", r.Stdout, part("order-9"))
		}
		if n := rc.ZCard(ctx, wire.DelayedKey(part("order-9"))).Val(); n != 1 {
			t.Errorf("%s holds %d, want the delayed event", wire.DelayedKey(part("order-9")), n)
		}
	})
	t.Run("KeyWithoutPartitions", func(t *testing.T) {
		plain := stream + "-plain"
		r := c.run(t, "", []string{"send", "--stream", plain, "--type", "t", "--key", "k"})
		r.Want(t, 0)
		if strings.Contains(r.Stdout, " ") {
			t.Errorf("stdout %q: want the entry ID alone", r.Stdout)
		}
		want := []map[string]any{{"type": "t", "data": "", "key": "k"}}
		if got := entries(t, rc, plain); len(got) != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("stream = %v, want %v", got, want)
		}
	})
	t.Run("File", func(t *testing.T) {
		fs := stream + "-file"
		var in strings.Builder
		for i := range 200 { // keyed, by ID, and neither, interleaved
			switch i % 5 {
			case 0:
				fmt.Fprintf(&in, `{"type":"t","data":%d,"id":"id-%d"}`+"\n", i, i)
			case 1:
				fmt.Fprintf(&in, `{"type":"t","data":%d}`+"\n", i)
			default:
				fmt.Fprintf(&in, `{"type":"t","data":%d,"key":"k%d"}`+"\n", i, i%7)
			}
		}
		r := c.run(t, in.String(), []string{"send", "--stream", fs, "--partitions", "4", "--file", "-", "--batch", "7"})
		r.Want(t, 0)
		if !strings.HasPrefix(r.Stdout, fmt.Sprintf("sent 200, rejected 0 (200 lines, 0 delayed) to stream %q (4 partitions) in ", fs)) {
			t.Errorf("stdout = %q", r.Stdout)
		}
		last := map[string]int{}
		var total, roundRobin int
		for i, msgs := range partitionEntries(t, rc, fs, 4) {
			p := wire.PartitionStream(fs, i)
			unkeyed := 0
			for _, m := range msgs {
				total++
				seq, _ := strconv.Atoi(m.Values["data"].(string))
				k, keyed := m.Values[wire.FieldKey].(string)
				id, byID := m.Values[wire.FieldID].(string)
				switch {
				case keyed:
					if want := wire.PartitionStream(fs, wire.PartitionFor(k, 4)); want != p {
						t.Errorf("key %q in %s, want %s", k, p, want)
					}
					if s, ok := last[k]; ok && seq <= s {
						t.Errorf("key %q: %d after %d: order lost", k, seq, s)
					}
					last[k] = seq
				case byID:
					if want := wire.PartitionStream(fs, wire.PartitionFor(id, 4)); want != p {
						t.Errorf("id %q in %s, want %s", id, p, want)
					}
				default:
					unkeyed++
				}
			}
			if unkeyed != 10 {
				t.Errorf("%s has %d events without key or id, want 10 (40 round-robin over 4)", p, unkeyed)
			}
			roundRobin += unkeyed
		}
		if total != 200 || roundRobin != 40 || len(last) != 7 {
			t.Errorf("%d events (%d round-robin, %d keys), want 200 (40, 7)", total, roundRobin, len(last))
		}
	})
	t.Run("Load", func(t *testing.T) {
		ls := stream + "-load"
		r := c.run(t, "", []string{"load", "--stream", ls, "--type", "t", "--count", "300", "--partitions", "3", "--batch", "7"})
		r.Want(t, 0)
		if !strings.HasPrefix(r.Stdout, fmt.Sprintf("sent 300 events to stream %q (3 partitions) in ", ls)) {
			t.Errorf("stdout = %q", r.Stdout)
		}
		for i := range 3 {
			if n := rc.XLen(ctx, wire.PartitionStream(ls, i)).Val(); n != 100 {
				t.Errorf("partition %d has %d events, want 100", i, n)
			}
		}
	})
}

// The producer connects to a Redis Cluster with REDIS_CLUSTER_ADDRS, and
// the partitions of a stream spread over its primaries.
func testCluster(t *testing.T, c *binary) {
	cl := testredis.StartCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	// REDIS_URL still names the shared server: in cluster mode its host is
	// not used, and nothing may land there.
	env := "REDIS_CLUSTER_ADDRS=" + strings.Join(cl.Addrs(), ",")

	r := c.run(t, "", []string{"send", "--stream", "{orders}", "--type", "order.created", "--data", `{"n":1}`}, env)
	r.Want(t, 0)
	id := strings.TrimSpace(r.Stdout)
	if got := cc.XRange(ctx, "{orders}", id, id).Val(); len(got) != 1 {
		t.Fatalf("entry %s not in the cluster's {orders}", id)
	}

	var in strings.Builder
	for i := range 120 {
		fmt.Fprintf(&in, `{"type":"t","data":%d,"key":"customer-%d"}`+"\n", i, i%12)
	}
	r = c.run(t, in.String(), []string{"send", "--stream", "orders", "--partitions", "6", "--file", "-", "--batch", "25"}, env)
	r.Want(t, 0)
	primaries := map[string]bool{}
	total := 0
	for i, msgs := range partitionEntries(t, cc, "orders", 6) {
		total += len(msgs)
		primaries[cl.PrimaryFor(t, wire.PartitionStream("orders", i)).Addr] = true
	}
	if total != 120 || len(primaries) < 2 {
		t.Errorf("%d events over %d primaries, want 120 over more than one", total, len(primaries))
	}

	r = c.run(t, "", []string{"load", "--stream", "bench", "--type", "t", "--count", "90", "--partitions", "3"}, env)
	r.Want(t, 0)
	for i := range 3 {
		if n := cc.XLen(ctx, wire.PartitionStream("bench", i)).Val(); n != 30 {
			t.Errorf("load: partition %d has %d events, want 30", i, n)
		}
	}
	if n := c.client(t).Exists(ctx, "{orders}", wire.PartitionStream("orders", 0), wire.PartitionStream("bench", 0)).Val(); n != 0 {
		t.Errorf("%d keys landed on REDIS_URL's server in cluster mode", n)
	}

	// A seed list of one live node is enough; a dead one is reported.
	r = c.run(t, "", []string{"send", "--stream", "{orders}", "--type", "t"}, "REDIS_CLUSTER_ADDRS="+cl.Addrs()[1])
	r.Want(t, 0)
	r = c.run(t, "", []string{"send", "--stream", "{orders}", "--type", "t"}, "REDIS_CLUSTER_ADDRS=127.0.0.1:1")
	r.Want(t, 1, `producer: sending to stream "{orders}"`, "connection refused")
}

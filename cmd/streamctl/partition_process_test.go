package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// statusStreams runs status --json and returns stream -> length, dead.
func statusStreams(t *testing.T, r result) map[string][2]int64 {
	t.Helper()
	r.Want(t, 0)
	var doc statusDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.Stdout)
	}
	out := map[string][2]int64{}
	for _, s := range doc.Streams {
		out[s.Stream] = [2]int64{s.Length, s.Dead}
	}
	return out
}

func testPartitions(t *testing.T, c *binary) {
	f := c.fixture(t)
	logical := f.stream
	p0, p1, p2 := wire.PartitionStream(logical, 0), wire.PartitionStream(logical, 1), wire.PartitionStream(logical, 2)
	for range 3 {
		f.add(p0, "type", "order.created", "key", "customer-1")
	}
	f.c.XGroupCreate(f.ctx, p0, "workers", "0")
	f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w1", Streams: []string{p0, ">"}, Count: 1, Block: -1})
	f.add(wire.DeadLetterKey(p2), "type", "email.send", "error", "permanent: no")

	// status --partitions shows every partition, the one not created yet
	// as empty.
	got := statusStreams(t, c.run(t, []string{"status", "--stream", logical, "--partitions", "3", "--json"}))
	want := map[string][2]int64{p0: {3, 0}, p1: {0, 0}, p2: {0, 1}}
	if len(got) != 3 || got[p0] != want[p0] || got[p1] != want[p1] || got[p2] != want[p2] {
		t.Errorf("status --partitions 3 = %v, want %v", got, want)
	}
	r := c.run(t, []string{"status", "--stream", logical, "--partitions", "3"})
	r.Want(t, 0)
	for _, p := range []string{p0, p1, p2} {
		if !strings.Contains(r.Stdout, p+"  ") {
			t.Errorf("status table has no row for %s:\n%s", p, r.Stdout)
		}
	}

	// The logical name alone is not a stream: the error says how to name
	// a partition.
	hint := `"` + logical + `" looks partitioned (` + p0 + ` exists): name a partition, e.g. --stream '` + p0 + `'`
	c.run(t, []string{"status", "--stream", logical}).Want(t, 1, `streamctl: no such stream: "`+logical+`"; `+hint)
	c.run(t, []string{"pending", "--stream", logical}).Want(t, 1, hint)
	r = c.run(t, []string{"dlq", "ls", "--stream", logical})
	r.Want(t, 0, "streamctl: "+hint)

	// Partition names work as stream names.
	r = c.run(t, []string{"pending", "--stream", p0})
	r.Want(t, 0)
	if !strings.Contains(r.Stdout, "w1") {
		t.Errorf("pending of %s:\n%s", p0, r.Stdout)
	}
	r = c.run(t, []string{"dlq", "ls", "--stream", p2})
	r.Want(t, 0)
	if !strings.Contains(r.Stdout, "permanent: no") {
		t.Errorf("dlq ls of %s:\n%s", p2, r.Stdout)
	}
}

// streamctl connects to a Redis Cluster with REDIS_CLUSTER_ADDRS: status
// without --stream lists the streams of every primary, and the DLQ replay
// script runs in the stream's slot.
func testCluster(t *testing.T, c *binary) {
	cl := testredis.StartCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	env := "REDIS_CLUSTER_ADDRS=" + strings.Join(cl.Addrs(), ",")
	add := func(stream string, fields ...string) {
		t.Helper()
		if err := cc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	add("{orders}", "type", "order.created")
	add(wire.DeadLetterKey("{orders}"), "type", "order.created", "error", "permanent: no", "attempts", "1")
	parts := wire.PartitionStreams("pay", 6)
	for _, p := range parts {
		add(p, "type", "payment.charge")
	}
	primaries := map[string]bool{}
	for _, p := range parts {
		primaries[cl.PrimaryFor(t, p).Addr] = true
	}
	if len(primaries) < 2 {
		t.Fatalf("the partitions of pay are all on one primary; the test needs them spread")
	}

	got := statusStreams(t, c.run(t, []string{"status", "--json"}, env))
	if len(got) != 7 {
		t.Errorf("status of every stream on a cluster = %v, want {orders} and the 6 partitions of pay from %d primaries", got, len(primaries))
	}
	got = statusStreams(t, c.run(t, []string{"status", "--stream", "pay", "--partitions", "6", "--json"}, env))
	if len(got) != 6 || got[parts[5]] != [2]int64{1, 0} {
		t.Errorf("status --partitions 6 = %v", got)
	}
	r := c.run(t, []string{"dlq", "replay", "--stream", "{orders}", "--all"}, env)
	r.Want(t, 0)
	if n := cc.XLen(ctx, "{orders}").Val(); n != 2 || cc.XLen(ctx, wire.DeadLetterKey("{orders}")).Val() != 0 {
		t.Errorf("after replay: {orders} has %d entries, want 2 and an empty DLQ (%s)", n, r.Stdout)
	}

	// The script libraries go on every primary (replicas follow theirs),
	// and REDIS_SCRIPTS=functions then replays with them.
	libs := scriptfn.Libraries()
	r = c.run(t, []string{"scripts", "load"}, env)
	r.Want(t, 0)
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) != 3 || !strings.HasSuffix(lines[0], fmt.Sprintf(": %d script libraries: %d loaded, 0 already there, 0 replaced", len(libs), len(libs))) {
		t.Errorf("scripts load on a 3-primary cluster printed:\n%s", r.Stdout)
	}
	var first *redis.Client
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		have, err := n.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: scriptfn.Prefix + "*"}).Result()
		if err == nil && len(have) != len(libs) {
			err = fmt.Errorf("%d libraries, want %d", len(have), len(libs))
		}
		if n.Options().Addr == cl.PrimaryFor(t, "{orders}").Addr {
			first = n
		}
		return err
	})
	if err != nil {
		t.Fatalf("after scripts load: %v", err)
	}
	// A primary that lacks them (one added after the load) is named.
	if err := first.FunctionDelete(ctx, libs[0].Name).Err(); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, []string{"scripts", "status"}, env)
	r.Want(t, 1, "streamctl scripts load")
	if !strings.Contains(r.Stdout, first.Options().Addr+": "+strconv.Itoa(len(libs)-1)+" of "+strconv.Itoa(len(libs))+" script libraries loaded; missing: "+libs[0].Name) {
		t.Errorf("scripts status with one library deleted on %s:\n%s", first.Options().Addr, r.Stdout)
	}
	c.run(t, []string{"scripts", "load"}, env).Want(t, 0)
	add(wire.DeadLetterKey("{orders}"), "type", "order.created", "error", "permanent: no", "attempts", "1")
	c.run(t, []string{"dlq", "replay", "--stream", "{orders}", "--all"}, env, "REDIS_SCRIPTS=functions").Want(t, 0)
	if n := cc.XLen(ctx, "{orders}").Val(); n != 3 {
		t.Errorf("after replay with functions: {orders} has %d entries, want 3", n)
	}
}

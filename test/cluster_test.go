package test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// clusterPartitions is how many partitions the cluster tests split their
// stream into.
const clusterPartitions = 16

// TestPartitionedCluster runs a stream split into 16 partitions on a real
// Redis Cluster (three primaries, each with a replica) through three worker
// processes: 50,000 events over 1,000 keys (-short: 6,000 over 200), each
// carrying its key and its sequence number within the key. Every event is
// processed and each key's sequence numbers reach its handler strictly
// increasing (first deliveries; a redelivery after a failure is a duplicate,
// counted and reported). The second run kills the primary that serves
// partition 0 mid-run: its replica is promoted, and the same three workers
// go on by themselves. The third moves partition 1's slot to another primary
// mid-run (ASK redirects while it moves, MOVED after). The binary is built
// once; the runs share the cluster, one after the other.
func TestPartitionedCluster(t *testing.T) {
	total, keys := 50000, 1000
	if testing.Short() {
		total, keys = 6000, 200
	}
	bin := testbin.Build(t, t.TempDir(), "./testdata/partitionworker", "partitionworker", raceEnabled)
	began := time.Now()
	cl := testredis.StartCluster(t)
	report := testredis.Start(t)
	t.Logf("cluster of 6 nodes up in %s", time.Since(began).Round(time.Millisecond))
	t.Run("ThreeWorkers", func(t *testing.T) { testPartitionedRun(t, bin, cl, report, total, keys, noDisruption) })
	t.Run("PrimaryKilledMidRun", func(t *testing.T) { testPartitionedRun(t, bin, cl, report, total, keys, killPrimary) })
	t.Run("SlotMovedMidRun", func(t *testing.T) { testPartitionedRun(t, bin, cl, report, total, keys, moveSlot) })
}

// What happens to the cluster mid-run.
type disruption int

const (
	noDisruption disruption = iota
	killPrimary             // the primary serving partition 0 is killed; its replica takes over
	moveSlot                // partition 1's slot is resharded to another primary
)

func testPartitionedRun(t *testing.T, bin string, cl *testredis.Cluster, report *testredis.Server, total, keys int, mid disruption) {
	ctx := context.Background()
	cc := cl.Client(t)
	rep := report.Client(t)
	stream := "orders" + testredis.RandomID()
	perKey := total / keys
	env := func(consumer string) map[string]string {
		return workerEnv("redis:///0", stream, consumer, map[string]string{
			"REDIS_CLUSTER_ADDRS":     strings.Join(cl.Addrs(), ","),
			"TEST_REPORT_URL":         report.URL(),
			"WORKER_PARTITIONS":       strconv.Itoa(clusterPartitions),
			"WORKER_CONCURRENCY":      "24",
			"WORKER_MAX_ATTEMPTS":     "5",
			"WORKER_BLOCK":            "500ms",
			"WORKER_RECLAIM_MIN_IDLE": "5s",
			"WORKER_RECLAIM_INTERVAL": "1s",
		})
	}
	var workers []*workerProc
	startAll := func() {
		for i := range 3 {
			name := "w" + strconv.Itoa(i)
			workers = append(workers, startWorker(t, bin, "worker "+name, env(name)))
		}
	}

	began := time.Now()
	if mid == killPrimary {
		// Every event is in the stream, and on the replicas, before the
		// kill: asynchronous replication may lose the last writes of a
		// killed primary, and a lost event is not what this run is about.
		produceKeyed(t, cc, stream, total, keys)
		waitReplicated(t, cl)
		began = time.Now()
		startAll()
	} else {
		// Workers join while the events arrive: the partitions change hands
		// as the second and third worker join.
		startAll()
		produceKeyed(t, cc, stream, total, keys)
	}

	handled := func() int64 {
		n, _ := rep.Get(ctx, "handled:"+stream).Int64()
		return n
	}
	var failoverTook time.Duration
	if mid != noDisruption {
		waitFor(t, 120*time.Second, nil, "a third of the events handled", func() (bool, string) {
			n := handled()
			return n >= int64(total/3), fmt.Sprintf("handled=%d", n)
		})
	}
	if mid == moveSlot {
		moving := time.Now()
		from, to := cl.MoveSlot(t, wire.PartitionStream(stream, 1))
		t.Logf("moved partition 1's slot from %s to %s in %s, after %d of %d events", from.Addr, to.Addr, time.Since(moving).Round(time.Millisecond), handled(), total)
		cc.ReloadState(ctx)
		if np := cl.PrimaryFor(t, wire.PartitionStream(stream, 1)); np != to {
			t.Fatalf("partition 1 is served by %s, want %s after the move", np.Addr, to.Addr)
		}
	}
	if mid == killPrimary {
		victim := cl.PrimaryFor(t, wire.PartitionStream(stream, 0))
		t.Logf("killing the primary %s (serves partition 0) after %d of %d events", victim.Addr, handled(), total)
		killed := time.Now()
		victim.Kill(t)
		cl.WaitHealthy(t)
		failoverTook = time.Since(killed)
		cc.ReloadState(ctx) // the test's own client, as the workers' do by themselves
		if np := cl.PrimaryFor(t, wire.PartitionStream(stream, 0)); np == victim {
			t.Fatal("the killed primary still serves partition 0")
		}
	}

	var seen map[string][]int
	waitFor(t, 180*time.Second, nil, "every event processed", func() (bool, string) {
		n := handled()
		if n < int64(total) {
			return false, fmt.Sprintf("handled=%d of %d", n, total)
		}
		seen = seenByKey(t, rep, stream, keys)
		unique := 0
		for _, s := range seen {
			unique += len(firstDeliveries(s))
		}
		return unique == total, fmt.Sprintf("handled=%d unique=%d of %d", n, unique, total)
	})
	took := time.Since(began)
	waitFor(t, 60*time.Second, nil, "nothing pending in any partition", func() (bool, string) {
		p := pendingPartitions(t, cc, stream)
		return p == 0, fmt.Sprintf("pending=%d", p)
	})
	for _, w := range workers {
		if w.exited() {
			t.Fatalf("%s exited (code %d): the workers must go on by themselves", w.name, w.cmd.ProcessState.ExitCode())
		}
	}
	owned := map[string]int{}
	for i := range clusterPartitions {
		v, _ := cc.Get(ctx, wire.PartitionStream(stream, i)+":owner:"+group).Result()
		owned[v]++
	}
	for _, w := range workers {
		w.stop(30 * time.Second)
	}
	// How the partitions moved, shutdown included: the last to stop take
	// over those the first give up.
	moves := map[string]int{}
	for _, w := range workers {
		for _, rec := range w.logLines() {
			msg, _ := rec["msg"].(string)
			switch {
			case msg == "partition taken":
				moves["taken"]++
			case msg == "giving a partition up to balance the group":
				moves["given up to balance"]++
			case strings.HasPrefix(msg, "partition lost"), strings.HasPrefix(msg, "partition lease"):
				moves["lost or lapsed"]++
			}
		}
	}
	t.Logf("partition moves: %v", moves)

	seen = seenByKey(t, rep, stream, keys)
	var runs, dups, disorder int
	for i := range keys {
		key := "k" + strconv.Itoa(i)
		s := seen[key]
		runs += len(s)
		first := firstDeliveries(s)
		dups += len(s) - len(first)
		if len(first) != perKey {
			t.Errorf("key %s: %d of %d events processed", key, len(first), perKey)
			continue
		}
		for j, seq := range first {
			if seq != j+1 {
				disorder++
				if disorder <= 5 {
					t.Errorf("key %s: sequence numbers reached the handler as %v, want 1..%d strictly increasing", key, firstN(s, 60), perKey)
				}
				break
			}
		}
	}
	if disorder > 0 {
		t.Errorf("%d of %d keys out of order", disorder, keys)
	}
	t.Logf("%d events over %d keys and %d partitions, 3 workers (partitions owned at the end: %v): all processed in %s; %d handler runs, %d duplicates (%.3f%%)",
		total, keys, clusterPartitions, owned, took.Round(time.Millisecond), runs, dups, 100*float64(dups)/float64(total))
	switch mid {
	case killPrimary:
		t.Logf("primary killed mid-run: cluster healthy again %s after the kill; no worker restarted", failoverTook.Round(time.Millisecond))
		return
	case moveSlot:
		errs := 0
		for _, w := range workers {
			for _, rec := range w.logLines() {
				if rec["level"] == "ERROR" {
					errs++
					t.Logf("%s: %v", w.name, rec)
				}
			}
		}
		t.Logf("slot moved mid-run: no worker restarted; %d error lines logged while it moved", errs)
		return
	}
	if dups != 0 {
		t.Errorf("%d duplicates without any failure: partitions changing hands must not run a message twice", dups)
	}
	for _, w := range workers {
		w.requireNoErrorLog()
	}
}

// produceKeyed adds total events over keys keys to stream's partitions, as
// a producer routing by key does: event i has key k<i mod keys> and is the
// (i div keys)+1-th of its key.
func produceKeyed(t *testing.T, cc *redis.ClusterClient, stream string, total, keys int) {
	t.Helper()
	ctx := context.Background()
	pipe := cc.Pipeline()
	for i := range total {
		key := "k" + strconv.Itoa(i%keys)
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: wire.PartitionStream(stream, wire.PartitionFor(key, clusterPartitions)),
			Values: []string{wire.FieldType, "ordered", wire.FieldKey, key, wire.FieldData, strconv.Itoa(i/keys + 1)},
		})
		if pipe.Len() == 2000 || i == total-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("producing: %v", err)
			}
		}
	}
}

// seenByKey reads what the handlers recorded: per key, its seqs in the
// order they ran.
func seenByKey(t *testing.T, rep *redis.Client, stream string, keys int) map[string][]int {
	t.Helper()
	ctx := context.Background()
	pipe := rep.Pipeline()
	cmds := make([]*redis.StringSliceCmd, keys)
	for i := range keys {
		cmds[i] = pipe.LRange(ctx, "seen:"+stream+":k"+strconv.Itoa(i), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("reading the handlers' records: %v", err)
	}
	out := make(map[string][]int, keys)
	for i, c := range cmds {
		s := make([]int, 0, len(c.Val()))
		for _, v := range c.Val() {
			n, _ := strconv.Atoi(v)
			s = append(s, n)
		}
		out["k"+strconv.Itoa(i)] = s
	}
	return out
}

// firstDeliveries keeps the first run of each seq, in run order.
func firstDeliveries(s []int) []int {
	seen := make(map[int]bool, len(s))
	out := make([]int, 0, len(s))
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// pendingPartitions sums the group's pending entries over the partitions.
func pendingPartitions(t *testing.T, cc *redis.ClusterClient, stream string) int64 {
	t.Helper()
	var sum int64
	for i := range clusterPartitions {
		p, err := cc.XPending(context.Background(), wire.PartitionStream(stream, i), group).Result()
		if err != nil {
			cc.ReloadState(context.Background())
			return -1
		}
		sum += p.Count
	}
	return sum
}

// waitReplicated waits until every replica has every write its primary
// took.
func waitReplicated(t *testing.T, cl *testredis.Cluster) {
	t.Helper()
	waitFor(t, 30*time.Second, nil, "replicas caught up", func() (bool, string) {
		for _, n := range cl.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, err := c.Info(context.Background(), "replication").Result()
			_ = c.Close()
			if err != nil {
				return false, n.Addr + ": " + err.Error()
			}
			if !strings.Contains(info, "role:master") {
				continue
			}
			var primary int64
			var replicas []int64
			for line := range strings.SplitSeq(info, "\n") {
				line = strings.TrimSpace(line)
				if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
					primary, _ = strconv.ParseInt(v, 10, 64)
				}
				if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
					_, v, _ := strings.Cut(line, "offset=")
					v, _, _ = strings.Cut(v, ",")
					o, _ := strconv.ParseInt(v, 10, 64)
					replicas = append(replicas, o)
				}
			}
			if len(replicas) == 0 {
				return false, n.Addr + " has no replica online"
			}
			for _, o := range replicas {
				if o < primary {
					return false, fmt.Sprintf("%s: replica at %d of %d", n.Addr, o, primary)
				}
			}
		}
		return true, ""
	})
}

package test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// failoverGapBound is the longest a partition served by a surviving primary
// may go without a message run while another primary fails over and it
// still has messages to run. Its owner renews it and acknowledges on it
// primary by primary, so the failed one holds up none of it; the bound is
// well under a partition lease (10s), and under the 3.3–3.7s stalls a
// cluster-wide renewal pipeline caused. (It holds with
// cluster-require-full-coverage no; with the default, Redis itself refuses
// every command on every node while the failed primary's slots are
// uncovered.)
const failoverGapBound = 2 * time.Second

// TestClusterFailoverSparesHealthyPrimaries runs a stream of 16 partitions
// on a real 3-primary, 3-replica Redis Cluster through three worker
// processes, and SIGKILLs the primary that serves partition 0 a fifth of
// the way through the run (every event is in before the run starts, the
// stream paused meanwhile). The partitions on the two surviving primaries
// keep their owners (none is given up, lost or taken after the kill) and
// keep being consumed, with no gap longer than failoverGapBound; the dead
// primary's partitions resume once its replica is promoted; every event is
// processed, each key in order; and no event of a surviving primary's
// partition runs twice — the only duplicates are on the failed primary's
// side, whose acknowledgements its death may have lost.
func TestClusterFailoverSparesHealthyPrimaries(t *testing.T) {
	const total, keys = 24000, 480
	bin := testbin.Build(t, t.TempDir(), "./testdata/partitionworker", "partitionworker", raceEnabled)
	// Each primary serves its slots while another is down: with the
	// default (yes), every node answers CLUSTERDOWN from the moment the
	// cluster marks the primary failed until its replica is promoted, and
	// no client can work on any node meanwhile (docs/cluster.md).
	cl := testredis.StartClusterWith(t, "--cluster-require-full-coverage", "no")
	report := testredis.Start(t)
	ctx := context.Background()
	cc := cl.Client(t)
	rep := report.Client(t)
	stream := "orders" + testredis.RandomID()
	perKey := total / keys
	part := func(i int) string { return wire.PartitionStream(stream, i) }

	var workers []*workerProc
	var paused []pauseWorker
	for i := range 3 {
		name := "w" + strconv.Itoa(i)
		addr := freeAddr(t)
		w := startWorker(t, bin, "worker "+name, workerEnv("redis:///0", stream, name, map[string]string{
			"REDIS_CLUSTER_ADDRS":     strings.Join(cl.Addrs(), ","),
			"TEST_REPORT_URL":         report.URL(),
			"WORKER_PARTITIONS":       strconv.Itoa(clusterPartitions),
			"WORKER_PARTITION_LEASE":  "10s",
			"WORKER_CONCURRENCY":      "24",
			"WORKER_MAX_ATTEMPTS":     "5",
			"WORKER_BLOCK":            "500ms",
			"WORKER_RECLAIM_MIN_IDLE": "2s",
			"WORKER_RECLAIM_INTERVAL": "500ms",
			"WORKER_HTTP_ADDR":        addr,
		}))
		workers = append(workers, w)
		paused = append(paused, pauseWorker{w, addr})
	}
	owners := func() (map[int]string, map[string]int) {
		byPart, count := map[int]string{}, map[string]int{}
		for i := range clusterPartitions {
			v, _ := cc.Get(ctx, part(i)+":owner:"+group).Result()
			byPart[i] = v
			count[v]++
		}
		return byPart, count
	}
	handled := func() int64 {
		n, _ := rep.Get(ctx, "handled:"+stream).Int64()
		return n
	}
	// The shares settle (6, 5, 5) before the kill, so that what moves
	// after it moves because of it.
	waitFor(t, 60*time.Second, nil, "the partitions shared out", func() (bool, string) {
		_, count := owners()
		got := []int{count["w0"], count["w1"], count["w2"]}
		slices.Sort(got)
		return slices.Equal(got, []int{5, 5, 6}), fmt.Sprintf("owned: %v", count)
	})
	before, _ := owners()
	// Every event is in the stream, and on the replicas, before the kill:
	// asynchronous replication may lose a killed primary's last writes,
	// and a lost event is not what this test is about. The stream is
	// paused meanwhile, so that the workers start on it together once it
	// is all there, and the kill comes a fifth of the way through, however
	// long producing and replicating took next to handling: with the
	// workers reading as it was produced, a slow machine once had them 86%
	// through, three partitions drained, by the time the replicas caught
	// up. Which primary dies, and whose partitions go with it, is looked up
	// before, so that nothing but the kill follows reaching a fifth.
	victim := cl.PrimaryFor(t, part(0))
	dead := map[int]bool{}
	for i := range clusterPartitions {
		dead[i] = cl.PrimaryFor(t, part(i)) == victim
	}
	admin := streamadmin.New(cc)
	if _, err := admin.Pause(ctx, stream, ""); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, paused, stream, "1")
	produceKeyed(t, cc, stream, total, keys)
	waitReplicatedUpTo(t, cl, replOffsets(t, cl, "master_repl_offset:"))
	// A read of a drained partition already waiting in Redis at the pause
	// asks for one entry, and takes it once the events come (worker/pause.go).
	if n := handled(); n > clusterPartitions {
		t.Fatalf("%d events handled while the stream was paused, want at most one per partition (%d)", n, clusterPartitions)
	}
	if _, _, err := admin.Resume(ctx, stream, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, nil, "a fifth of the events handled", func() (bool, string) {
		n := handled()
		return n >= total/5, fmt.Sprintf("handled=%d", n)
	})

	snapshot, done := time.Now(), handled()
	victim.Kill(t)
	killed := time.Now()
	t.Logf("killed the primary %s (partitions %v) after %d of %d events", victim.Addr, keysOf(dead), done, total)
	cl.WaitHealthy(t)
	failoverTook := time.Since(killed)
	cc.ReloadState(ctx)

	waitFor(t, 180*time.Second, nil, "every event processed", func() (bool, string) {
		n := handled()
		if n < int64(total) {
			return false, fmt.Sprintf("handled=%d of %d", n, total)
		}
		unique := 0
		for _, s := range seenByKey(t, rep, stream, keys) {
			unique += len(firstDeliveries(s))
		}
		return unique == total, fmt.Sprintf("handled=%d unique=%d of %d", n, unique, total)
	})
	waitFor(t, 60*time.Second, nil, "nothing pending in any partition", func() (bool, string) {
		p := pendingPartitions(t, cc, stream)
		return p == 0, fmt.Sprintf("pending=%d", p)
	})
	after, _ := owners()
	for _, w := range workers {
		if w.exited() {
			t.Fatalf("%s exited (code %d): the workers must go on by themselves", w.name, w.cmd.ProcessState.ExitCode())
		}
	}

	// Owners: no surviving primary's partition changed hands.
	for i := range clusterPartitions {
		if !dead[i] && after[i] != before[i] {
			t.Errorf("partition %d (on a surviving primary) was owned by %q before the kill and by %q after", i, before[i], after[i])
		}
	}
	for _, w := range workers {
		for _, rec := range w.logLines() {
			msg, _ := rec["msg"].(string)
			name, _ := rec["partition"].(string)
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			if name == "" || at.Before(snapshot) {
				continue
			}
			i := -1
			for j := range clusterPartitions {
				if part(j) == name {
					i = j
				}
			}
			if i >= 0 && !dead[i] && (msg == "partition taken" || strings.HasPrefix(msg, "partition lost") ||
				strings.HasPrefix(msg, "partition lease") || strings.HasPrefix(msg, "giving a partition up")) {
				t.Errorf("%s, after the kill, on partition %d of a surviving primary: %s", w.name, i, msg)
			}
		}
	}

	// Progress: the longest gap in each partition's runs from the kill on,
	// while it had messages left.
	var worst time.Duration
	for i := range clusterPartitions {
		runs := runTimes(t, rep, part(i))
		gap, resumed := longestGap(runs, killed)
		if dead[i] {
			if !resumed {
				t.Errorf("partition %d (on the killed primary) ran nothing after the kill", i)
			}
			t.Logf("partition %d (killed primary): longest gap %s", i, gap.Round(time.Millisecond))
			continue
		}
		if !resumed {
			t.Errorf("partition %d had no messages left at the kill: too few events to see the failover", i)
			continue
		}
		worst = max(worst, gap)
		t.Logf("partition %d (surviving primary): longest gap %s", i, gap.Round(time.Millisecond))
		if gap > failoverGapBound {
			t.Errorf("partition %d (on a surviving primary) ran nothing for %s during the failover, more than %s", i, gap.Round(time.Millisecond), failoverGapBound)
		}
	}

	// Nothing lost, each key in order; duplicates only on the killed
	// primary's side.
	seen := seenByKey(t, rep, stream, keys)
	var dupsDead, dupsAlive int
	for k := range keys {
		key := "k" + strconv.Itoa(k)
		s := seen[key]
		first := firstDeliveries(s)
		if dead[wire.PartitionFor(key, clusterPartitions)] {
			dupsDead += len(s) - len(first)
		} else {
			dupsAlive += len(s) - len(first)
		}
		if len(first) != perKey {
			t.Errorf("key %s: %d of %d events processed", key, len(first), perKey)
			continue
		}
		for j, seq := range first {
			if seq != j+1 {
				t.Errorf("key %s: sequence numbers reached the handler as %v, want 1..%d strictly increasing", key, firstN(s, 60), perKey)
				break
			}
		}
	}
	if dupsAlive != 0 {
		t.Errorf("%d events of partitions on surviving primaries ran twice", dupsAlive)
	}
	for _, w := range workers {
		w.stop(30 * time.Second)
	}
	if t.Failed() {
		t.Logf("owners before the kill: %v; killed at %s", before, killed.Format(time.RFC3339Nano))
	}
	t.Logf("failover: cluster healthy %s after the kill; longest gap on a surviving primary's partition %s (bound %s); duplicates: %d on the killed primary's side, %d elsewhere",
		failoverTook.Round(time.Millisecond), worst.Round(time.Millisecond), failoverGapBound, dupsDead, dupsAlive)
}

// runTimes reads when the handlers ran partition's messages, sorted.
func runTimes(t *testing.T, rep *redis.Client, partition string) []time.Time {
	t.Helper()
	list, err := rep.LRange(context.Background(), "at:"+partition, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]time.Time, 0, len(list))
	for _, v := range list {
		ms, _, _ := strings.Cut(v, " ")
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			t.Fatalf("bad run record %q", v)
		}
		out = append(out, time.UnixMilli(n))
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// longestGap is the longest time without a run from since to the last run,
// and whether there was a run after since at all.
func longestGap(runs []time.Time, since time.Time) (time.Duration, bool) {
	var gap time.Duration
	prev, resumed := since, false
	for _, r := range runs {
		if r.Before(since) {
			continue
		}
		gap, prev, resumed = max(gap, r.Sub(prev)), r, true
	}
	return gap, resumed
}

// keysOf lists the true keys of m, sorted.
func keysOf(m map[int]bool) []int {
	var out []int
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// replOffsets reads, per node that is a primary, the INFO replication
// field given (its own offset), or for a replica its primary's address and
// its slave_repl_offset.
func replOffsets(t *testing.T, cl *testredis.Cluster, field string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, n := range cl.Nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		info, err := c.Info(context.Background(), "replication").Result()
		_ = c.Close()
		if err != nil {
			t.Fatalf("%s: %v", n.Addr, err)
		}
		if !strings.Contains(info, "role:master") {
			continue
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field); ok {
				out[n.Addr], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

// waitReplicatedUpTo waits until every primary's replicas have taken its
// writes up to the offset in want: the writes made before want was read,
// whatever the workers write after.
func waitReplicatedUpTo(t *testing.T, cl *testredis.Cluster, want map[string]int64) {
	t.Helper()
	waitFor(t, 30*time.Second, nil, "replicas caught up with the events", func() (bool, string) {
		for _, n := range cl.Nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, err := c.Info(context.Background(), "replication").Result()
			_ = c.Close()
			if err != nil {
				return false, n.Addr + ": " + err.Error()
			}
			if strings.Contains(info, "role:master") {
				continue
			}
			var host, port string
			var offset int64
			for line := range strings.SplitSeq(info, "\n") {
				line = strings.TrimSpace(line)
				if v, ok := strings.CutPrefix(line, "master_host:"); ok {
					host = v
				}
				if v, ok := strings.CutPrefix(line, "master_port:"); ok {
					port = v
				}
				if v, ok := strings.CutPrefix(line, "slave_repl_offset:"); ok {
					offset, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			if w, ok := want[host+":"+port]; ok && offset < w {
				return false, fmt.Sprintf("%s: at %d of %d", n.Addr, offset, w)
			}
		}
		return true, ""
	})
}

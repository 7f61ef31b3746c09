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
	"github.com/streamworker/streamworker/streamadmin"
)

// TestPauseAndPriorities pauses streams under real worker processes: three
// workers on one server, through a restart and a new replica; and three
// workers on a Redis Cluster reading two partitioned streams with weights.
// The binary is built once.
func TestPauseAndPriorities(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/partitionworker", "partitionworker", raceEnabled)
	t.Run("ThreeWorkersAndRestart", func(t *testing.T) { t.Parallel(); testPauseThreeWorkers(t, bin) })
	t.Run("PartitionedOnCluster", func(t *testing.T) { t.Parallel(); testPausePartitionedCluster(t, bin) })
}

// pauseWorker is a worker process and its HTTP address.
type pauseWorker struct {
	*workerProc
	addr string
}

// pausedGauge reads streamworker_stream_paused of stream from the worker's
// /metrics: "1", "0", or "" when absent or unreachable.
func (w pauseWorker) pausedGauge(stream string) string {
	code, body, err := httpGet("http://" + w.addr + "/metrics")
	if err != nil || code != 200 {
		return ""
	}
	prefix := `streamworker_stream_paused{group="` + group + `",stream="` + stream + `"} `
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return ""
}

func (w pauseWorker) ready() bool {
	code, _, err := httpGet("http://" + w.addr + "/readyz")
	return err == nil && code == 200
}

// waitPaused waits until every worker reports stream paused (want "1") or
// not ("0"), and is ready.
func waitPaused(t *testing.T, ws []pauseWorker, stream, want string) {
	t.Helper()
	waitFor(t, 60*time.Second, nil, "every worker to report "+stream+" paused="+want, func() (bool, string) {
		var seen []string
		ok := true
		for _, w := range ws {
			v, r := w.pausedGauge(stream), w.ready()
			seen = append(seen, fmt.Sprintf("%s: paused=%q ready=%t", w.name, v, r))
			ok = ok && v == want && r
		}
		return ok, strings.Join(seen, "; ")
	})
}

// holds fails the test if handled() exceeds most at any time during d: how
// the test shows that a paused stream is not read.
func holds(t *testing.T, d time.Duration, what string, most int64, handled func() int64) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) { // watching for a violation
		if n := handled(); n > most {
			t.Fatalf("%s: %d handled, want at most %d", what, n, most)
		}
	}
}

func testPauseThreeWorkers(t *testing.T, bin string) {
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := "pause" + testredis.RandomID()
	block := 200 * time.Millisecond
	start := func(name string) pauseWorker {
		addr := freeAddr(t)
		env := workerEnv(srv.URL(), stream, name, map[string]string{
			"TEST_REPORT_URL":  srv.URL(),
			"WORKER_BLOCK":     block.String(),
			"WORKER_HTTP_ADDR": addr,
		})
		return pauseWorker{startWorker(t, bin, "worker "+name, env), addr}
	}
	produce := func(from, n int) {
		pipe := c.Pipeline()
		for i := from; i < from+n; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "ordered", "data", strconv.Itoa(i)}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	handled := func() int64 { n, _ := c.Get(ctx, "handled:"+stream).Int64(); return n }
	ws := []pauseWorker{start("w0"), start("w1"), start("w2")}
	produce(0, 30)
	waitFor(t, 60*time.Second, nil, "the first events handled", func() (bool, string) { return handled() == 30, fmt.Sprint(handled()) })

	admin := streamadmin.New(c)
	paused := time.Now()
	if _, err := admin.Pause(ctx, stream, group); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, ws, stream, "1")
	t.Logf("three workers reported the pause %s after it was written (WORKER_BLOCK %s)", time.Since(paused).Round(time.Millisecond), block)
	// A read waiting in Redis when the pause came may still bring one
	// entry per worker; nothing more is read.
	produce(30, 30)
	holds(t, 5*block, "paused stream read by three workers", 30+3, handled)
	afterPause := handled()

	// A restarted worker and a new replica honour the pause from their
	// first read: now not even one entry is taken.
	ws[0].stop(30 * time.Second)
	ws[0] = start("w0")
	ws = append(ws, start("w3"))
	waitPaused(t, ws, stream, "1")
	produce(60, 30)
	holds(t, 5*block, "paused stream read after a restart", afterPause, handled)
	if g := readGroup(t, c, stream); g.lag < 60-(afterPause-30) || g.pending != 0 {
		t.Errorf("group while paused: %s; want the new entries undelivered and nothing pending", g)
	}

	if _, _, err := admin.Resume(ctx, stream, ""); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, ws, stream, "0")
	waitFor(t, 60*time.Second, nil, "every event handled after resume", func() (bool, string) { return handled() == 90, fmt.Sprint(handled()) })
	for _, w := range ws {
		w.stop(30 * time.Second)
		w.requireCleanLog()
	}
}

// Two partitioned streams with weights (3 and 1) on a cluster of three
// primaries: pausing one, by its logical name, stops it on every partition
// and every worker while the other is read to the end; resumed, it is read
// to the end too.
func testPausePartitionedCluster(t *testing.T, bin string) {
	cl := testredis.StartCluster(t)
	report := testredis.Start(t)
	cc := cl.Client(t)
	rep := report.Client(t)
	ctx := context.Background()
	id := testredis.RandomID()
	a, b := "pa"+id, "pb"+id
	block := 200 * time.Millisecond
	var ws []pauseWorker
	for i := range 3 {
		name := "w" + strconv.Itoa(i)
		addr := freeAddr(t)
		env := workerEnv("redis:///0", a+"=3,"+b, name, map[string]string{
			"REDIS_CLUSTER_ADDRS":    strings.Join(cl.Addrs(), ","),
			"TEST_REPORT_URL":        report.URL(),
			"WORKER_PARTITIONS":      strconv.Itoa(clusterPartitions),
			"WORKER_PARTITION_LEASE": "2s",
			"WORKER_BLOCK":           block.String(),
			"WORKER_HTTP_ADDR":       addr,
		})
		ws = append(ws, pauseWorker{startWorker(t, bin, "worker "+name, env), addr})
	}
	admin := streamadmin.New(cc)
	if _, err := admin.Pause(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, ws, a, "1")
	waitPaused(t, ws, b, "0")
	const total, keys = 2000, 50
	produceKeyed(t, cc, a, total, keys)
	produceKeyed(t, cc, b, total, keys)
	handled := func(s string) int64 { n, _ := rep.Get(ctx, "handled:"+s).Int64(); return n }
	waitFor(t, 120*time.Second, nil, "the unpaused stream read to the end", func() (bool, string) {
		return handled(b) >= total, fmt.Sprintf("%s=%d %s=%d", a, handled(a), b, handled(b))
	})
	// Paused before the workers started: none of them ever read a
	// partition of it, though partitions changed hands as they joined.
	holds(t, 5*block, "paused partitioned stream read", 0, func() int64 { return handled(a) })
	if _, _, err := admin.Resume(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, nil, "the resumed stream read to the end", func() (bool, string) {
		return handled(a) >= total, fmt.Sprintf("%s=%d", a, handled(a))
	})
	for _, s := range []string{a, b} {
		seen := seenByKey(t, rep, s, keys)
		for k, runs := range seen {
			first := firstDeliveries(runs)
			for i, v := range first {
				if v != i+1 {
					t.Fatalf("%s key %s ran in the order %v, want 1…%d", s, k, first, total/keys)
				}
			}
		}
	}
	for _, w := range ws {
		w.stop(30 * time.Second)
		w.requireCleanLog()
	}
}

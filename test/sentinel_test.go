package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
)

// TestSentinelFailover runs the worker daemon against a primary with one
// replica watched by three Sentinels (REDIS_SENTINEL_ADDRS and
// REDIS_SENTINEL_MASTER; REDIS_URL gives no host). It processes a first
// batch, runs slow handlers while the primary is SIGKILLed, and once the
// Sentinels have promoted the replica it processes a second batch: every
// event is handled at least once by the one worker process, which never
// restarted, and nothing stays pending. Handlings of one event beyond the
// first (deliveries whose acknowledgement died with the primary) are
// counted and logged, not failed: delivery is at-least-once.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, t.TempDir(), "./testdata/customworker", "customworker", raceEnabled)
	st := testredis.StartSentinel(t)
	ctx := context.Background()
	const stream = "orders"
	const fast1, slow, fast2 = 300, 8, 300 // seqs 1-300, 301-308, 309-608
	total := fast1 + slow + fast2

	conn := config.Redis{RedisURL: "redis:///0", RedisSentinelAddrs: st.SentinelAddrs(), RedisSentinelMaster: st.Master}
	pc, err := conn.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	prod := producer.New(pc, producer.Options{})
	// The test reads through a failover client too, so it follows the
	// promotion as the worker must.
	rc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: st.Master, SentinelAddrs: st.SentinelAddrs()})
	t.Cleanup(func() { _ = rc.Close() })

	w := startWorker(t, bin, "worker", workerEnv("redis:///0", stream, "w1", map[string]string{
		"REDIS_SENTINEL_ADDRS":    strings.Join(st.SentinelAddrs(), ","),
		"REDIS_SENTINEL_MASTER":   st.Master,
		"WORKER_RECLAIM_MIN_IDLE": "2s", // what the dead primary's acks left pending is claimed again soon
		"WORKER_RECLAIM_INTERVAL": "500ms",
	}))

	// progress reads what the worker did, without failing on a Redis error
	// (the primary may be gone).
	progress := func() (processed map[int]int, g groupState, state string) {
		h, err := rc.HGetAll(ctx, stream+":processed").Result()
		if err != nil {
			return nil, g, "reading processed: " + err.Error()
		}
		processed = map[int]int{}
		for k, v := range h {
			var seq, n int
			_, _ = fmt.Sscan(k, &seq)
			_, _ = fmt.Sscan(v, &n)
			processed[seq] = n
		}
		groups, err := rc.XInfoGroups(ctx, stream).Result()
		if err != nil {
			return processed, g, "reading groups: " + err.Error()
		}
		g.lag = -2
		for _, x := range groups {
			if x.Name == group {
				g.pending, g.lag = x.Pending, x.Lag
			}
		}
		return processed, g, fmt.Sprintf("processed %d distinct, %s", len(processed), g)
	}

	publishRange(t, prod, stream, 1, fast1, always("ok"), always(0))
	waitFor(t, 60*time.Second, w, "the first batch processed", func() (bool, string) {
		p, g, state := progress()
		return len(p) == fast1 && g.pending == 0 && g.lag == 0, state
	})

	// Slow handlers in flight when the primary dies: their completions hit
	// a dead server or the new primary.
	publishRange(t, prod, stream, fast1+1, fast1+slow, always("slow"), always(3000))
	waitFor(t, 30*time.Second, w, "the slow handlers running", func() (bool, string) {
		n, err := rc.SCard(ctx, stream+":started").Result()
		return err == nil && n == slow, fmt.Sprintf("started=%d err=%v", n, err)
	})
	// WAIT counts the writes of its own connection: a write on that
	// connection first makes it cover every write before it.
	primary := st.Primary.Client(t)
	if err := primary.Set(ctx, "sync", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := primary.Do(ctx, "WAIT", 1, 10000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	st.Primary.Kill(t)
	killed := time.Now()

	sc := redis.NewSentinelClient(&redis.Options{Addr: st.Sentinels[0].Addr})
	t.Cleanup(func() { _ = sc.Close() })
	waitFor(t, 60*time.Second, w, "the Sentinels to promote the replica", func() (bool, string) {
		addr, err := sc.GetMasterAddrByName(ctx, st.Master).Result()
		if err != nil || len(addr) != 2 {
			return false, fmt.Sprintf("master %v, %v", addr, err)
		}
		now := addr[0] + ":" + addr[1]
		return now == st.Replica.Addr, "master at " + now
	})
	waitFor(t, 30*time.Second, w, "writes to the new primary", func() (bool, string) {
		err := rc.Set(ctx, "probe", "1", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("replica promoted %s after the kill", time.Since(killed).Round(time.Millisecond))

	publishRange(t, prod, stream, fast1+slow+1, total, always("ok"), always(0))
	waitFor(t, 90*time.Second, w, "every event processed after the failover, nothing pending", func() (bool, string) {
		p, g, state := progress()
		return len(missing(p, total)) == 0 && g.pending == 0 && g.lag == 0, state
	})
	t.Logf("all %d events processed %s after the kill", total, time.Since(killed).Round(time.Millisecond))

	processed, _, _ := progress()
	if extra, seqs := duplicates(processed); extra > 0 {
		var dup []int
		for seq, n := range processed {
			if n > 1 {
				dup = append(dup, seq)
			}
		}
		slices.Sort(dup)
		t.Logf("%d events handled more than once (%d extra handlings), seqs %v: at-least-once across the failover", seqs, extra, dup)
	} else {
		t.Log("no event handled more than once")
	}

	// One process did it all: it never exited, and it started once, in
	// Sentinel mode.
	var starts, errorsLogged int
	var errorMsgs []string
	for _, rec := range w.logLines() {
		switch {
		case rec["msg"] == "starting":
			starts++
			if rec["redis_mode"] != config.ModeSentinel || rec["redis"] != st.Master+" via "+strings.Join(st.SentinelAddrs(), ",") {
				t.Errorf("start record %v: want redis_mode sentinel and the master via the Sentinels", rec)
			}
		case rec["level"] == "ERROR":
			errorsLogged++
			if m := fmt.Sprint(rec["msg"]); !slices.Contains(errorMsgs, m) {
				errorMsgs = append(errorMsgs, m)
			}
		}
	}
	if starts != 1 {
		t.Errorf("the worker logged %d starts, want 1", starts)
	}
	t.Logf("the worker logged %d errors while the primary was gone: %q", errorsLogged, errorMsgs)
	consumers, err := rc.XInfoConsumers(ctx, stream, group).Result()
	if err != nil || len(consumers) != 1 || consumers[0].Name != "w1" {
		t.Errorf("consumers on the new primary: %v, %v; want w1 alone", consumers, err)
	}

	w.stop(30 * time.Second)
	if !slices.ContainsFunc(w.logLines(), func(rec map[string]any) bool { return rec["msg"] == "shutdown complete" }) {
		t.Error("the worker never logged \"shutdown complete\"")
	}
}

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

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// testSIGKILLMidBatch SIGKILLs one of three workers while it runs a full
// batch. The two others claim what it left once it has been idle for the
// min-idle and run it: every message is processed at least once, each
// message the dead worker held within min-idle + interval + handler time of
// the kill, and nothing stays pending.
func testSIGKILLMidBatch(t *testing.T, bin string) {
	t.Parallel()
	const total, concurrency, handlerMS = 400, 8, 200
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishRange(t, newProducer(t, srv), stream, 1, total, always("ok"), always(handlerMS))

	workers := map[string]*workerProc{}
	for _, name := range []string{"a", "b", "c"} {
		workers[name] = startWorker(t, bin, "worker "+name, faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY": strconv.Itoa(concurrency),
		}))
	}
	processedKey := stream + ":processed"
	waitFor(t, 30*time.Second, workers["a"], "worker a to hold a full batch mid-run", func() (bool, string) {
		done := c.HLen(ctx, processedKey).Val()
		held := len(pendingOf(t, c, stream, "a"))
		return done >= 50 && held >= concurrency, fmt.Sprintf("processed=%d a holds %d", done, held)
	})
	workers["a"].kill()
	killed := time.Now()
	held := pendingOf(t, c, stream, "a")
	t.Logf("killed worker a holding %d entries", len(held))

	waitFor(t, 60*time.Second, nil, "every message processed and nothing pending", func() (bool, string) {
		done := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return done == total && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d/%d %s", done, total, g)
	})
	for _, name := range []string{"b", "c"} {
		workers[name].stop(30 * time.Second)
		workers[name].requireCleanLog()
	}

	processed := counts(t, c, processedKey)
	if m := missing(processed, total); len(m) > 0 {
		t.Fatalf("%d messages never processed, e.g. %v", len(m), firstN(m, 10))
	}
	// The entries worker a held: each handled again by b or c, within the
	// bound of the kill.
	idToSeq := seqsByID(t, c, stream)
	bound := faultMinIdle + faultInterval + handlerMS*time.Millisecond
	var worst time.Duration
	after := map[int]time.Time{} // seq -> first handling after the kill
	for _, r := range runs(t, c, stream) {
		if r.consumer != "a" && r.at.After(killed) {
			if at, ok := after[r.seq]; !ok || r.at.Before(at) {
				after[r.seq] = r.at
			}
		}
	}
	for _, p := range held {
		seq := idToSeq[p.ID]
		at, ok := after[seq]
		if !ok {
			t.Errorf("seq %d (%s), held by the killed worker, was never handled by another", seq, p.ID)
			continue
		}
		worst = max(worst, at.Sub(killed))
	}
	t.Logf("the %d entries worker a held were all handled again %s after the kill (bound: min-idle %s + interval %s + handler %dms = %s)",
		len(held), worst.Round(time.Millisecond), faultMinIdle, faultInterval, handlerMS, bound)
	// The bound plus room for a loaded machine under -race: what this
	// checks is that recovery is bounded by the reclaim settings, not by
	// anything like a consumer timeout or a restart.
	if limit := bound + 3*time.Second; worst > limit {
		t.Errorf("recovery took %s after the kill, want about %s (at most %s)", worst, bound, limit)
	}
	extra, dupSeqs := duplicates(processed)
	t.Logf("duplicates: %d extra handlings over %d messages (handled by a, acknowledgement lost with it)", extra, dupSeqs)
	if extra > len(held) {
		t.Errorf("%d duplicate handlings, more than the %d entries the killed worker held", extra, len(held))
	}
	if p := pendingOf(t, c, stream, "a"); len(p) != 0 {
		t.Errorf("the killed consumer still owns %d entries", len(p))
	}
}

// seqsByID maps every entry ID of stream to its seq.
func seqsByID(t *testing.T, c *redis.Client, stream string) map[string]int {
	t.Helper()
	entries, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int, len(entries))
	for _, e := range entries {
		data, _ := e.Values[wire.FieldData].(string)
		out[e.ID] = seqOf(t, data)
	}
	return out
}

// testPoisonMessage publishes one message whose handler kills the process
// (os.Exit) among hundreds of ordinary ones, to three workers that the test
// restarts under the same name whenever they die, as a supervisor would.
// After WORKER_MAX_ATTEMPTS deliveries the poison message is in the
// dead-letter stream, marked abandoned, and the workers have processed
// every other message; none of those is dead-lettered.
func testPoisonMessage(t *testing.T, bin string) {
	t.Parallel()
	const total, poison, maxAttempts, concurrency = 300, 120, 3, 8
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	typ := func(seq int) string {
		if seq == poison {
			return "crash"
		}
		return "ok"
	}
	publishRange(t, newProducer(t, srv), stream, 1, total, typ, always(20))

	env := func(name string) map[string]string {
		return faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY":  strconv.Itoa(concurrency),
			"WORKER_MAX_ATTEMPTS": strconv.Itoa(maxAttempts),
		})
	}
	names := []string{"a", "b", "c"}
	workers := map[string]*workerProc{}
	for _, name := range names {
		workers[name] = startWorker(t, bin, "worker "+name, env(name))
	}
	crashes := 0
	processedKey := stream + ":processed"
	waitFor(t, 90*time.Second, nil, "the poison message dead-lettered and everything else processed", func() (bool, string) {
		for _, name := range names { // the supervisor
			w := workers[name]
			if !w.exited() {
				continue
			}
			if code := w.cmd.ProcessState.ExitCode(); code != 3 {
				t.Fatalf("%s exited with code %d, want 3 (the crash handler) or nothing", w.name, code)
			}
			crashes++
			workers[name] = startWorker(t, bin, fmt.Sprintf("worker %s (restart %d)", name, crashes), env(name))
		}
		done := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return done == total-1 && g.dead >= 1 && g.pending == 0 && g.lag == 0,
			fmt.Sprintf("processed=%d/%d crashes=%d %s", done, total-1, crashes, g)
	})
	for _, name := range names {
		workers[name].stop(30 * time.Second)
	}
	t.Logf("%d crashes, every worker restarted after each", crashes)

	ran, _ := c.HGet(ctx, stream+":crashes", strconv.Itoa(poison)).Int()
	if ran != maxAttempts || crashes != maxAttempts {
		t.Errorf("the poison message ran %d times and crashed %d workers, want %d (WORKER_MAX_ATTEMPTS)", ran, crashes, maxAttempts)
	}
	dlq, err := c.XRange(ctx, wire.DeadLetterKey(stream), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var dead []int
	for _, e := range dlq {
		data, _ := e.Values[wire.FieldData].(string)
		seq := seqOf(t, data)
		dead = append(dead, seq)
		if seq != poison {
			t.Errorf("seq %d was dead-lettered: %v", seq, e.Values)
			continue
		}
		if msg, _ := e.Values[wire.FieldError].(string); !strings.Contains(msg, "abandoned") || !strings.Contains(msg, "crashed") {
			t.Errorf("dead letter error %q, want it to say the message was abandoned by crashed consumers", msg)
		}
		if n, _ := e.Values[wire.FieldAttempts].(string); n != strconv.Itoa(maxAttempts) {
			t.Errorf("dead letter attempts %q, want %d", n, maxAttempts)
		}
	}
	if !slices.Contains(dead, poison) {
		t.Errorf("dead letters %v, want the poison seq %d", dead, poison)
	}
	processed := counts(t, c, processedKey)
	for seq := 1; seq <= total; seq++ {
		if seq != poison && processed[seq] == 0 {
			t.Errorf("seq %d never processed", seq)
		}
	}
	if processed[poison] != 0 {
		t.Errorf("the poison message was recorded as processed")
	}
	extra, dupSeqs := duplicates(processed)
	t.Logf("duplicates: %d extra handlings over %d messages", extra, dupSeqs)
}

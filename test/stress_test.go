package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

// testStressRandomKills runs 20,000 messages through three worker processes
// while the test SIGKILLs one at random at eight random points of the run and
// starts a replacement, as a supervisor would: under the same consumer name
// (a restarted pod of a StatefulSet) or a new one (a Deployment's new pod).
// Every message produced is processed; the duplicates (handled, then killed
// before the acknowledgement was written) are counted and reported.
func testStressRandomKills(t *testing.T, bin string) {
	t.Parallel()
	const total, slots = 20000, 3
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishRange(t, newProducer(t, srv), stream, 1, total, always("ok"), always(1))

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	t.Logf("random seed %d", seed)
	start := func(slot, run int, name string) *workerProc {
		return startWorker(t, bin, fmt.Sprintf("worker %s (slot %d, run %d)", name, slot, run),
			faultEnv(srv.URL(), stream, name, map[string]string{
				"WORKER_CONCURRENCY":  "16",
				"WORKER_MAX_ATTEMPTS": "5",
			}))
	}
	workers := make([]*workerProc, slots)
	names := make([]string, slots)
	for i := range workers {
		names[i] = "w" + strconv.Itoa(i)
		workers[i] = start(i, 0, names[i])
	}

	processedKey := stream + ":processed"
	// The chaos schedule follows progress, not the clock, so a fast
	// machine cannot finish before the kills: each kill comes when the
	// processed count passes the next of plannedKills random points.
	const plannedKills = 8
	points := make([]int64, plannedKills)
	for i := range points {
		points[i] = int64(total/20 + rng.IntN(total*17/20))
	}
	slices.Sort(points)
	began := time.Now()
	kills, renamed := 0, 0
	for kills < plannedKills {
		done := c.HLen(ctx, processedKey).Val()
		if time.Since(began) > 3*time.Minute {
			t.Fatalf("only %d of %d processed after %s and %d kills", done, total, time.Since(began).Round(time.Second), kills)
		}
		if done < points[kills] {
			time.Sleep(2 * time.Millisecond) // polling progress, with the deadline above
			continue
		}
		i := rng.IntN(slots)
		if w := workers[i]; w.exited() {
			t.Fatalf("%s exited by itself (code %d)", w.name, w.cmd.ProcessState.ExitCode())
		}
		workers[i].kill()
		kills++
		if rng.IntN(2) == 0 {
			names[i] = fmt.Sprintf("w%d-%d", i, kills)
			renamed++
		}
		workers[i] = start(i, kills, names[i])
	}
	waitFor(t, 60*time.Second, nil, "nothing pending after the last kill", func() (bool, string) {
		g := readGroup(t, c, stream)
		n := c.HLen(ctx, processedKey).Val()
		return n == total && g.pending == 0 && g.lag == 0 && g.delayed == 0, fmt.Sprintf("processed=%d/%d %s", n, total, g)
	})
	took := time.Since(began)
	for _, w := range workers {
		w.stop(30 * time.Second)
	}
	t.Logf("%d messages, 3 workers, %d SIGKILLs (%d replacements under a new name) in %s", total, kills, renamed, took.Round(time.Millisecond))
	if g := readGroup(t, c, stream); g.dead != 0 {
		dlq := c.XRange(ctx, stream+":dlq", "-", "+").Val()
		t.Errorf("%d messages dead-lettered, e.g. %v", g.dead, firstN(dlq, 3))
	}
	processed := counts(t, c, processedKey)
	if m := missing(processed, total); len(m) > 0 {
		t.Errorf("%d messages never processed, e.g. %v", len(m), firstN(m, 10))
	}
	extra, dupSeqs := duplicates(processed)
	t.Logf("processed unique IDs == produced IDs: %v (%d of %d); duplicates: %d extra handlings over %d messages (%.2f%%)",
		len(processed) == total, len(processed), total, extra, dupSeqs, 100*float64(extra)/float64(total))
}

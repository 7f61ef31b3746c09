package test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

// testTrimWhilePending runs XTRIM … MAXLEN 0 while entries are pending, in
// the three places a pending entry can be: left by a killed worker (found
// by another's reclaim pass), left by a killed worker restarted under the
// same name (found when it resumes its own pending entries, or by its own
// reclaimer), and running in a live worker's handlers (found by its lease
// renewal). Each trimmed entry
// leaves the pending list and is counted in
// streamworker_deleted_while_pending_total and a log line; the handlers that
// were running finish; the workers take new work afterwards and exit
// cleanly.
func testTrimWhilePending(t *testing.T, bin string) {
	t.Parallel()
	const concurrency = 4
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	prod := newProducer(t, srv)
	stream := testredis.Prefix(t) + "events"
	seq := 0
	publish := func(n int, typ string, sleep time.Duration) {
		publishRange(t, prod, stream, seq+1, seq+n, always(typ), always(int(sleep.Milliseconds())))
		seq += n
	}
	start := func(name, consumer string) (*workerProc, string) {
		addr := freeAddr(t)
		return startWorker(t, bin, name, faultEnv(srv.URL(), stream, consumer, map[string]string{
			"WORKER_CONCURRENCY": strconv.Itoa(concurrency),
			"WORKER_HTTP_ADDR":   addr,
		})), addr
	}
	// holdFull waits until consumer runs a full set of hold handlers.
	holdFull := func(w *workerProc, consumer string) {
		t.Helper()
		waitFor(t, 30*time.Second, w, consumer+" to hold "+strconv.Itoa(concurrency)+" entries", func() (bool, string) {
			n := len(pendingOf(t, c, stream, consumer))
			return n == concurrency, fmt.Sprintf("%d pending", n)
		})
	}
	trim := func() {
		t.Helper()
		if err := c.XTrimMaxLen(ctx, stream, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deletedMetric := func(w *workerProc, addr string, want float64) {
		t.Helper()
		waitFor(t, 30*time.Second, w, "the trimmed entries counted", func() (bool, string) {
			got := metricSum(t, addr, "streamworker_deleted_while_pending_total")
			p := readGroup(t, c, stream).pending
			return got == want && p == 0, fmt.Sprintf("deleted_while_pending=%v (want %v), pending=%d", got, want, p)
		})
	}

	// 1. A killed worker's entries, trimmed, found by another's reclaimer.
	publish(concurrency, "hold", 0)
	a, _ := start("worker a", "a")
	holdFull(a, "a")
	a.kill()
	trim()
	b, bAddr := start("worker b", "b")
	deletedMetric(b, bAddr, concurrency)
	if !b.logged("WARN", "trimmed from the stream before they were processed") {
		t.Error("worker b did not log the entries trimmed while pending")
	}

	b.stop(30 * time.Second)
	b.requireCleanLog()

	// 2. A killed worker's entries, trimmed, found by the same consumer
	// when it restarts.
	publish(concurrency, "hold", 0)
	a, _ = start("worker a (second run)", "a")
	holdFull(a, "a")
	a.kill()
	trim()
	a, aAddr := start("worker a (restarted)", "a")
	deletedMetric(a, aAddr, concurrency)

	// 3. Entries trimmed while their handlers run, for longer than the
	// min-idle: a reclaim pass (XAUTOCLAIM drops trimmed entries whatever
	// their idle time) or the lease renewal finds them gone; the handlers
	// are not cancelled, and finish.
	publish(concurrency, "slow", 3*faultMinIdle)
	from := seq - concurrency + 1
	holdFull(a, "a")
	trim()
	deletedMetric(a, aAddr, 2*concurrency)
	waitFor(t, 30*time.Second, a, "the trimmed messages' handlers to finish", func() (bool, string) {
		processed := counts(t, c, stream+":processed")
		n := 0
		for s := from; s <= seq; s++ {
			n += processed[s]
		}
		return n == concurrency, fmt.Sprintf("%d of %d finished", n, concurrency)
	})
	if a.logged("WARN", "lease lost") {
		t.Error("worker a cancelled a handler whose entry was trimmed")
	}

	// Nothing hangs: new work runs, and the worker stops cleanly.
	publish(50, "ok", 0)
	waitFor(t, 30*time.Second, a, "new messages processed", func() (bool, string) {
		g := readGroup(t, c, stream)
		n := c.HLen(ctx, stream+":processed").Val()
		return n == int64(concurrency+50) && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d %s", n, g)
	})
	a.stop(30 * time.Second)
	a.requireCleanLog()
}

package test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// testSlowHandlerLease runs handlers three times longer than the min-idle
// on three workers whose reclaimers, with free handler slots, look for idle
// entries every interval. The runtime keeps each running entry's lease, so
// no entry is ever idle past the min-idle, none is claimed, and no message
// is handled by two consumers at once: every one runs once, on its first
// attempt.
func testSlowHandlerLease(t *testing.T, bin string) {
	t.Parallel()
	const total, concurrency = 9, 6
	// A min-idle of 2s, not 1s: renewals get half a second to answer,
	// which a loaded machine running the race detector needs.
	const minIdle = 2 * time.Second
	const handlerTime = 3 * minIdle
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	workers := make([]*workerProc, 3)
	addrs := make([]string, len(workers))
	for i := range workers {
		name := string(rune('a' + i))
		addrs[i] = freeAddr(t)
		workers[i] = startWorker(t, bin, "worker "+name, faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY":      strconv.Itoa(concurrency),
			"WORKER_HANDLER_TIMEOUT":  "1m",
			"WORKER_HTTP_ADDR":        addrs[i],
			"WORKER_RECLAIM_MIN_IDLE": minIdle.String(),
		}))
	}
	// Published once every worker runs, so that they share the messages:
	// each keeps free slots, and its reclaimer looks for idle entries every
	// interval, all along.
	for i, w := range workers {
		waitReady(t, w, addrs[i])
	}
	publishRange(t, newProducer(t, srv), stream, 1, total, always("slow"), always(int(handlerTime.Milliseconds())))

	var maxIdle time.Duration
	owners := map[string]string{} // entry ID -> first consumer seen owning it
	moved := map[string]bool{}
	processedKey := stream + ":processed"
	waitFor(t, 60*time.Second, nil, "every slow message processed", func() (bool, string) {
		p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p {
			maxIdle = max(maxIdle, e.Idle)
			if o, ok := owners[e.ID]; !ok {
				owners[e.ID] = e.Consumer
			} else if o != e.Consumer {
				moved[e.ID] = true
			}
		}
		done := c.HLen(ctx, processedKey).Val()
		return done == total && len(p) == 0, fmt.Sprintf("processed=%d/%d pending=%d max idle seen %s", done, total, len(p), maxIdle)
	})
	for _, w := range workers {
		w.stop(30 * time.Second)
		w.requireCleanLog()
		if w.logged("WARN", "lease lost") {
			t.Errorf("%s lost a lease", w.name)
		}
	}
	t.Logf("handlers ran %s each, min-idle %s; the most idle a pending entry was seen: %s", handlerTime, minIdle, maxIdle.Round(time.Millisecond))

	if overlaps := c.LRange(ctx, stream+":overlaps", 0, -1).Val(); len(overlaps) > 0 {
		t.Errorf("messages handled by two consumers at the same time: %v", overlaps)
	}
	if len(moved) > 0 {
		t.Errorf("entries changed owner while their handler ran: %v", moved)
	}
	if maxIdle >= minIdle {
		t.Errorf("a running entry was seen idle %s, at or past the min-idle %s: claimable", maxIdle, minIdle)
	}
	for seq, n := range counts(t, c, processedKey) {
		if n != 1 {
			t.Errorf("seq %d processed %d times, want once", seq, n)
		}
	}
	for _, r := range runs(t, c, stream) {
		if r.attempt != 1 {
			t.Errorf("seq %d ran at attempt %d on %s, want 1 (never reclaimed)", r.seq, r.attempt, r.consumer)
		}
	}
}

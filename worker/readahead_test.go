package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// The read-ahead follows the handlers' pace: what they finish in about
// readAheadWork, within WORKER_READ_AHEAD and readAheadBytes, and shrinks
// when they slow.
func TestReadAheadFollowsTheHandlersPace(t *testing.T) {
	t.Parallel()
	sem := newSemaphore(8)
	a := &readAhead{most: 256, sem: sem}
	step := func(handled int64, entry int64) int {
		a.handled.Add(handled)
		a.entry.Store(entry)
		return a.runOnce(100 * time.Millisecond)
	}
	free := func() int { sem.mu.Lock(); defer sem.mu.Unlock(); return sem.free }
	if got := step(0, 100); got != 0 || free() != 8 {
		t.Fatalf("no handler ran: read-ahead %d, free %d; want 0, 8", got, free())
	}
	// 100,000 a second, smoothed with the 0 before: 50,000/s × 20 ms = 1,000, capped at 256.
	if got := step(10_000, 100); got != 256 || free() != 8+256 {
		t.Fatalf("fast handlers: read-ahead %d, free %d; want 256, 264", got, free())
	}
	// Entries of 64 KiB: 1 MiB holds 16.
	if got := step(10_000, 64<<10); got != 16 || free() != 8+16 {
		t.Fatalf("large entries: read-ahead %d, free %d; want 16, 24", got, free())
	}
	// Handlers of about a second: 8 a second is none in 20 ms, once the
	// smoothing has let go of the fast ones.
	for range 20 {
		step(1, 100)
	}
	if got := step(1, 100); got != 0 || free() != 8 {
		t.Fatalf("slow handlers: read-ahead %d, free %d; want 0, 8", got, free())
	}
}

// A message that waited a lease period for a handler is confirmed as this
// consumer's before it runs: run when it still is (its idle time reset),
// skipped when another consumer has taken it over meanwhile.
func TestWaitedMessagesConfirmedBeforeTheyRun(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	if err := c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	var ran atomic.Int32
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error { ran.Add(1); return nil })
	r := newEngine(cfg, c, mux, testLogger(t), NewMetrics(prometheus.NewRegistry()))
	w := &workerState{ctx: newMsgContext(context.Background())}
	t.Cleanup(func() { w.ctx.release() })

	read := func() *Message {
		t.Helper()
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{wire.FieldType, "t"}}).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Read a lease period ago, and waiting since.
		return newMessages(stream, res[0].Messages, time.Now().Add(-2*r.leaseEvery()))[0]
	}
	idle := func(id string) time.Duration {
		p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: cfg.Group, Start: id, End: id, Count: 1}).Result()
		if err != nil || len(p) != 1 {
			t.Fatalf("pending %s: %v %v", id, p, err)
		}
		return p[0].Idle
	}

	t.Run("StillOurs", func(t *testing.T) {
		m := read()
		if err := c.Do(ctx, "XCLAIM", stream, cfg.Group, cfg.Consumer, 0, m.ID, "IDLE", 5000, "JUSTID").Err(); err != nil {
			t.Fatal(err)
		}
		r.process(w, m)
		if ran.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", ran.Load())
		}
		if d := idle(m.ID); d >= 5*time.Second {
			t.Fatalf("idle %v: the lease was not renewed before it ran", d)
		}
	})
	t.Run("TakenOver", func(t *testing.T) {
		m := read()
		if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: cfg.Group, Consumer: "other", Messages: []string{m.ID}}).Err(); err != nil {
			t.Fatal(err)
		}
		before := ran.Load()
		r.process(w, m)
		if ran.Load() != before {
			t.Fatal("ran a message another consumer had taken over while it waited")
		}
	})
}

// The look at the pace rests once nothing is finished and nothing granted,
// a finished message wakes it, and it rests again once that is over; ctx
// ends it at rest too.
func TestReadAheadRestsWhileIdle(t *testing.T) {
	t.Parallel()
	a := newReadAhead(256, newSemaphore(8))
	rested := make(chan struct{}, 1)
	a.rested = func() { rested <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- a.Run(ctx) }()

	waitRest := func(what string) {
		t.Helper()
		select {
		case <-rested:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the read-ahead's look did not rest within 10s", what)
		}
		if !a.resting.Load() {
			t.Fatalf("%s: rested, but resting is not set", what)
		}
	}
	waitRest("nothing finished")
	a.done()
	if a.resting.Load() {
		t.Fatal("a finished message left the look resting")
	}
	waitRest("after the message") // it looked again (and saw the message) before resting
	if got := a.last; got != 1 {
		t.Errorf("the look after waking saw %d messages finished, want 1", got)
	}
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end within 10s of its context, at rest")
	}
}

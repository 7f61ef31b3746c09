package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestReclaimsWhatADeadConsumerLeft(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0")
	for range 20 {
		c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}})
	}
	// A consumer read them all and died.
	c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 20})
	var seen counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		if m.Attempt != 2 {
			t.Errorf("reclaimed %s at attempt %d, want 2 (the dead consumer's try counts)", m.ID, m.Attempt)
		}
		seen.inc(m.ID)
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "all 20 reclaimed and acked", func() bool { return h.outcome("t", OutcomeAcked) == 20 })
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d", p)
	}
	for id, n := range seen.n {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
}

func TestSlowHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	cfg.Concurrency = 4
	var mu sync.Mutex
	running := map[string]string{} // entry ID -> consumer running it
	var overlaps []string
	var handled counter
	handler := func(consumer string) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			mu.Lock()
			if other, ok := running[m.OriginID]; ok {
				overlaps = append(overlaps, m.OriginID+" on "+other+" and "+consumer)
			}
			running[m.OriginID] = consumer
			mu.Unlock()
			select { // the work: much longer than the min-idle
			case <-time.After(2500 * time.Millisecond):
			case <-ctx.Done():
			}
			mu.Lock()
			delete(running, m.OriginID)
			mu.Unlock()
			handled.inc(m.OriginID)
			return ctx.Err()
		})
	}
	muxA, muxB := NewMux(), NewMux()
	muxA.Handle("slow", handler("a"))
	muxB.Handle("slow", handler("b"))
	cfgB := cfg
	cfgB.Consumer = "c2"
	h := startWorker(t, srv, cfg, muxA)
	startWorker(t, srv, cfgB, muxB)
	for range 6 {
		h.publish("type", "slow")
	}
	eventually(t, "six handled", func() bool { return handled.total() >= 6 })
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("entries ran on two consumers at once: %v", overlaps)
	}
	for id, n := range handled.n {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
	}
}

func TestHandedOverWorkIsReclaimedAtOnce(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Hour // only a hand-over can make these claimable within the test
	cfg.ReclaimInterval = 50 * time.Millisecond
	cfg.ShutdownTimeout = 100 * time.Millisecond
	started := make(chan struct{}, 3)
	muxA := NewMux()
	muxA.HandleFunc("job", func(ctx context.Context, m *Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	a := startWorker(t, srv, cfg, muxA)
	for range 3 {
		a.publish("type", "job")
	}
	for range 3 {
		<-started
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	var done counter
	muxB := NewMux()
	muxB.HandleFunc("job", func(ctx context.Context, m *Message) error { done.inc(m.ID); return nil })
	cfgB := cfg
	cfgB.Consumer = "c2"
	b := startWorker(t, srv, cfgB, muxB)
	eventually(t, "the other consumer finished the handed-over work", func() bool { return b.outcome("job", OutcomeAcked) == 3 })
	if p := b.pending(); p != 0 {
		t.Errorf("pending = %d", p)
	}
}

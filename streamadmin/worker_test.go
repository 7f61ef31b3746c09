package streamadmin

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// The dead-letter format is the runtime's: a message the real runtime
// dead-lettered, once replayed, runs again at attempt 1 with its origin ID.
func TestReplayedDeadLetterRunsAgainInTheRuntime(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "jobs"

	var fixed atomic.Bool
	type run struct {
		attempt  int
		originID string
		key      string
	}
	ran := make(chan run, 10)
	mux := worker.NewMux()
	mux.HandleFunc("job", func(_ context.Context, m *worker.Message) error {
		if !fixed.Load() {
			return worker.Permanent(errors.New("not yet"))
		}
		ran <- run{m.Attempt, m.OriginID, m.IdempotencyKey}
		return nil
	})
	cfg := config.Default()
	cfg.RedisURL, cfg.Streams, cfg.Group, cfg.Consumer = srv.URL(), []string{stream}, "g", "c1"
	cfg.Block, cfg.PromoteInterval, cfg.HTTPAddr = 50*time.Millisecond, 10*time.Millisecond, "off"
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(rctx, cfg, mux, worker.WithRedis(c),
			worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run = %v", err)
		}
	})

	origin, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "job", "data", "{}", "id", "k1"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	dlq := wire.DeadLetterKey(stream)
	deadline := time.Now().Add(10 * time.Second)
	for c.XLen(ctx, dlq).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the runtime did not dead-letter the message within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling Redis with a deadline
	}
	fixed.Store(true)
	n, skipped, err := New(c).ReplayAll(ctx, stream)
	if err != nil || n != 1 || len(skipped) != 0 {
		t.Fatalf("ReplayAll = %d, %v, %v", n, skipped, err)
	}
	select {
	case r := <-ran:
		if r != (run{1, origin, "k1"}) {
			t.Errorf("replayed message ran as %+v, want attempt 1, origin %s, key k1", r, origin)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replayed message did not run within 10s")
	}
}

// An entry too wide for a script to copy survives the whole round: the
// runtime dead-letters it whole at its first failure, and, replayed, it runs
// again at attempt 1 with every field.
func TestWideDeadLetterRunsAgainInTheRuntime(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, n := range []int{5000, 20000} {
		t.Run("Fields"+strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			c := srv.Client(t)
			ctx := context.Background()
			stream := testredis.Prefix(t) + "jobs"
			var fixed atomic.Bool
			ran := make(chan *worker.Message, 10)
			mux := worker.NewMux()
			mux.HandleFunc("wide", func(_ context.Context, m *worker.Message) error {
				if !fixed.Load() {
					return errors.New("not yet") // retryable: too wide to retry, so dead-lettered
				}
				ran <- m
				return nil
			})
			cfg := config.Default()
			cfg.RedisURL, cfg.Streams, cfg.Group, cfg.Consumer = srv.URL(), []string{stream}, "g", "c1"
			cfg.Block, cfg.PromoteInterval, cfg.HTTPAddr = 50*time.Millisecond, 10*time.Millisecond, "off"
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- worker.Run(rctx, cfg, mux, worker.WithRedis(c),
					worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
			}()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("worker.Run = %v", err)
				}
			})
			fields := wideFields(n)
			origin, err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Result()
			if err != nil {
				t.Fatal(err)
			}
			dlq := wire.DeadLetterKey(stream)
			deadline := time.Now().Add(10 * time.Second)
			for c.XLen(ctx, dlq).Val() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the runtime did not dead-letter the message within 10s")
				}
				time.Sleep(10 * time.Millisecond) // polling Redis with a deadline
			}
			fixed.Store(true)
			if replayed, skipped, err := New(c).ReplayAll(ctx, stream); err != nil || replayed != 1 || len(skipped) != 0 {
				t.Fatalf("ReplayAll = %d, %v, %v", replayed, skipped, err)
			}
			select {
			case m := <-ran:
				if m.Attempt != 1 || m.OriginID != origin || len(m.Metadata) != n || m.Metadata["m"+strconv.Itoa(n-1)] != "v"+strconv.Itoa(n-1) {
					t.Errorf("replayed message ran at attempt %d, origin %s, with %d metadata fields; want 1, %s, %d", m.Attempt, m.OriginID, len(m.Metadata), origin, n)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the replayed message did not run within 10s")
			}
		})
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/bench/internal/redisserver"
	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/bench/internal/usage"
)

// consumer is one system under test in the consume benchmarks: each keeps
// its queue in its own shape, so each loads its own messages.
type consumer interface {
	// Load makes n messages carrying payload ready to consume. Not timed.
	Load(ctx context.Context, n int) error
	// Consume runs every loaded message through a no-op handler and returns
	// once all of them are acknowledged in Redis. Timed.
	Consume(ctx context.Context, n int) error
	// Close stops what Consume started and deletes the keys. Not timed.
	Close() error
}

// systemConsumer is a consumer over one of the harness's systems: Load is
// the system's own producer, Consume starts its consumer and waits until
// the system shows every message acknowledged.
type systemConsumer struct {
	sys systems.System
}

func newSystemConsumer(tb testing.TB, s *redisserver.Server, name string, cfg systems.Config) *systemConsumer {
	tb.Helper()
	cfg.Addr, cfg.Protocol, cfg.Queue = s.Addr, *protocolFlag, streamName()
	if cfg.Partitions > 1 { // each partition {S:i} is a hash tag of its own
		cfg.Queue = strings.NewReplacer("{", "", "}", "").Replace(cfg.Queue)
	}
	sys, err := systems.New(name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &systemConsumer{sys: sys}
}

func (c *systemConsumer) Load(ctx context.Context, n int) error {
	if err := c.sys.Produce(ctx, n, payload); err != nil {
		return err
	}
	got, err := c.sys.Stored(ctx)
	if err != nil {
		return err
	}
	if got != int64(n) {
		return fmt.Errorf("%d messages stored, want %d", got, n)
	}
	return nil
}

func (c *systemConsumer) Consume(ctx context.Context, n int) error {
	if err := c.sys.Start(ctx, n, func([]byte) {}); err != nil {
		return err
	}
	if err := c.sys.Wait(ctx); err != nil {
		return err
	}
	if got := c.sys.Handled(); got != int64(n) {
		return fmt.Errorf("handled %d messages, want %d", got, n)
	}
	return nil
}

func (c *systemConsumer) Close() error {
	err := c.sys.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return errors.Join(err, c.sys.Delete(ctx))
}

// benchConsume times newConsumer's Consume of -msgs preloaded messages per
// operation. Phases carry pprof labels, so `go tool pprof -tagfocus
// phase=consume` shows the consume phase alone.
func benchConsume(b *testing.B, newConsumer func(tb testing.TB, s *redisserver.Server) consumer) {
	b.Helper()
	s := sharedServer(b)
	n := *msgsFlag
	admin := newClient(b, s)
	var total usage.Cost
	before, after := map[string]int64{}, map[string]int64{}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
		c := newConsumer(b, s)
		var err error
		pprof.Do(ctx, pprof.Labels("phase", "load"), func(ctx context.Context) { err = c.Load(ctx, n) })
		if err != nil {
			b.Fatalf("load: %v", err)
		}
		calls0, cerr := commandCalls(ctx, admin)
		if cerr != nil {
			b.Fatal(cerr)
		}
		start := usage.Measure(s.Pid())
		b.StartTimer()
		pprof.Do(ctx, pprof.Labels("phase", "consume"), func(ctx context.Context) { err = c.Consume(ctx, n) })
		b.StopTimer()
		total = total.Add(usage.Measure(s.Pid()).Sub(start))
		if err != nil {
			b.Fatalf("consume: %v", err)
		}
		calls1, cerr := commandCalls(ctx, admin)
		if cerr != nil {
			b.Fatal(cerr)
		}
		for k, v := range calls0 {
			before[k] += v
		}
		for k, v := range calls1 {
			after[k] += v
		}
		pprof.Do(ctx, pprof.Labels("phase", "close"), func(context.Context) { err = c.Close() })
		if err != nil {
			b.Fatalf("close: %v", err)
		}
		cancel()
	}
	report(b, n*b.N, total)
	reportCalls(b, n*b.N, before, after)
}

// consumers are the systems of the consume benchmarks and of
// TestConsumers, with the settings the flags give.
func consumers() map[string]func(testing.TB, *redisserver.Server) consumer {
	system := func(name string, cfg systems.Config) func(testing.TB, *redisserver.Server) consumer {
		return func(tb testing.TB, s *redisserver.Server) consumer {
			tb.Helper()
			return newSystemConsumer(tb, s, name, cfg)
		}
	}
	return map[string]func(testing.TB, *redisserver.Server) consumer{
		"Runtime":           system(systems.Ours, runtimeConfig()),
		"BareLoop":          system(systems.Bare, systems.Config{FetchCount: *readCountFlag}),
		"BareLoopPipelined": system(systems.BarePipelined, systems.Config{FetchCount: *readCountFlag}),
		"Asynq":             system(systems.Asynq, systems.Config{}),
		"Watermill":         system(systems.Watermill, systems.Config{}),
	}
}

// runtimeConfig is BenchmarkConsumeRuntime's configuration, from the flags.
func runtimeConfig() systems.Config {
	cfg := systems.Config{Concurrency: *concurrencyFlag, FetchCount: *fetchFlag, Partitions: *partitionsFlag, Keys: *keysFlag}
	if *failEveryFlag > 0 {
		cfg.FailEvery, cfg.RetryBase, cfg.PromoteInterval, cfg.DelayedRetries = *failEveryFlag, *retryBaseFlag, *promoteFlag, *delayedRetriesFlag
	}
	return cfg
}

// BenchmarkConsumeRuntime is the whole streamworker runtime as the daemon
// runs it (fetch loop, handler pool, middleware, metrics, batched acks)
// with a no-op handler.
func BenchmarkConsumeRuntime(b *testing.B) { benchConsume(b, consumers()["Runtime"]) }

// BenchmarkConsumeBareLoop is the practical protocol limit: one goroutine,
// XREADGROUP COUNT 100, a no-op call per entry, one XACK of the batch.
func BenchmarkConsumeBareLoop(b *testing.B) { benchConsume(b, consumers()["BareLoop"]) }

// BenchmarkConsumeBareLoopPipelined is the bare loop with the XACK of a
// batch and the next XREADGROUP in one pipeline: one round trip per batch.
func BenchmarkConsumeBareLoopPipelined(b *testing.B) {
	benchConsume(b, consumers()["BareLoopPipelined"])
}

// BenchmarkConsumeAsynq is asynq's Server, concurrency 50.
func BenchmarkConsumeAsynq(b *testing.B) { benchConsume(b, consumers()["Asynq"]) }

// BenchmarkConsumeWatermill is Watermill's Router on a redisstream
// Subscriber, 16 handlers.
func BenchmarkConsumeWatermill(b *testing.B) { benchConsume(b, consumers()["Watermill"]) }

// TestConsumers checks that every consumer really consumes and acknowledges
// everything, so that a benchmark cannot be fast by being wrong.
func TestConsumers(t *testing.T) {
	s := sharedServer(t)
	for name, newC := range consumers() {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			c := newC(t, s)
			const n = 5000
			if err := c.Load(ctx, n); err != nil {
				t.Fatal(err)
			}
			if err := c.Consume(ctx, n); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

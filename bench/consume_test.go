package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/worker"
)

// consumer is one system under test in the consume benchmarks. A peer
// (asynq, Watermill, ...) is added as one more implementation with its own
// load, since each keeps its queue in its own shape.
type consumer interface {
	// Load makes n messages carrying payload ready to consume. Not timed.
	Load(ctx context.Context, n int) error
	// Consume runs every loaded message through a no-op handler and returns
	// once all of them are acknowledged in Redis. Timed.
	Consume(ctx context.Context, n int) error
	// Close stops what Consume started and deletes the keys. Not timed.
	Close() error
}

// benchConsume times newConsumer's Consume of -msgs preloaded messages per
// operation. Phases carry pprof labels, so `go tool pprof -tagfocus
// phase=consume` shows the consume phase alone.
func benchConsume(b *testing.B, newConsumer func(tb testing.TB, s *Server) consumer) {
	b.Helper()
	s := sharedServer(b)
	n := *msgsFlag
	admin := newClient(b, s)
	var total Cost
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
		start := Measure(s.Pid())
		b.StartTimer()
		pprof.Do(ctx, pprof.Labels("phase", "consume"), func(ctx context.Context) { err = c.Consume(ctx, n) })
		b.StopTimer()
		total = total.Add(Measure(s.Pid()).Sub(start))
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

// BenchmarkConsumeRuntime is the whole streamworker runtime (fetch loop,
// handler pool, middleware, batched acks) with a no-op handler.
func BenchmarkConsumeRuntime(b *testing.B) {
	benchConsume(b, func(tb testing.TB, s *Server) consumer {
		tb.Helper()
		return newRuntimeConsumer(tb, s, *concurrencyFlag, *fetchFlag)
	})
}

// BenchmarkConsumeBareLoop is the practical protocol limit: one goroutine,
// XREADGROUP COUNT 100, a no-op call per entry, one XACK of the batch.
func BenchmarkConsumeBareLoop(b *testing.B) {
	benchConsume(b, func(tb testing.TB, s *Server) consumer {
		tb.Helper()
		return newBareConsumer(tb, s, *readCountFlag)
	})
}

// TestConsumers checks that every consumer really consumes and acknowledges
// everything, so that a benchmark cannot be fast by being wrong.
func TestConsumers(t *testing.T) {
	s := sharedServer(t)
	for name, newC := range map[string]func(testing.TB, *Server) consumer{
		"Runtime": func(tb testing.TB, s *Server) consumer {
			tb.Helper()
			return newRuntimeConsumer(tb, s, 64, 256)
		},
		"BareLoop": func(tb testing.TB, s *Server) consumer {
			tb.Helper()
			return newBareConsumer(tb, s, 100)
		},
	} {
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

// streamSetup is what the stream-based consumers share: a fresh stream whose
// group exists before the clock starts, filled with pipelined XADDs.
type streamSetup struct {
	admin  *redis.Client
	stream string
	group  string
}

func newStreamSetup(tb testing.TB, s *Server) streamSetup {
	tb.Helper()
	return streamSetup{admin: newClient(tb, s), stream: streamName(), group: "bench"}
}

func (st streamSetup) Load(ctx context.Context, n int) error {
	if err := st.admin.XGroupCreateMkStream(ctx, st.stream, st.group, "0").Err(); err != nil {
		return err
	}
	const chunk = 1000
	data := string(payload)
	for sent := 0; sent < n; {
		pipe := st.admin.Pipeline()
		for i := 0; i < chunk && sent < n; i, sent = i+1, sent+1 {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: st.stream, Values: []string{worker.FieldType, msgType, worker.FieldData, data}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("preloading: %w", err)
		}
	}
	return nil
}

// waitAcked polls until the group has nothing pending and nothing
// undelivered.
func (st streamSetup) waitAcked(ctx context.Context) error {
	for {
		gs, err := st.admin.XInfoGroups(ctx, st.stream).Result()
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.Name == st.group && g.Pending == 0 && g.Lag == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for acknowledgements: %w", ctx.Err())
		case <-time.After(200 * time.Microsecond): // polling with the context's deadline
		}
	}
}

func (st streamSetup) Close() error {
	cleanupKeys(context.Background(), st.admin, st.stream)
	return nil
}

// runtimeConsumer runs worker.NewRuntime as the daemon would, with the
// metrics, middleware and logger it always has; HTTP and promote are not
// part of the hot path and are left out.
type runtimeConsumer struct {
	streamSetup
	cfg     config.Config
	client  redis.UniversalClient
	handled atomic.Int64
	stop    context.CancelFunc
	runErr  chan error
}

func newRuntimeConsumer(tb testing.TB, s *Server, concurrency, fetchCount int) *runtimeConsumer {
	tb.Helper()
	st := newStreamSetup(tb, s)
	cfg := config.Default()
	cfg.RedisURL = clientURL(s)
	cfg.Streams = []string{st.stream}
	cfg.Group = st.group
	cfg.Consumer = "bench-runtime"
	cfg.HTTPAddr = "off"
	cfg.Concurrency = concurrency
	cfg.FetchCount = fetchCount
	// Only shutdown waits on BLOCK (a read in flight is not cancelled); with
	// a backlog no read blocks, so this changes no number.
	cfg.Block = 100 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	client, err := worker.NewRedisClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Close() })
	return &runtimeConsumer{streamSetup: st, cfg: cfg, client: client}
}

func (c *runtimeConsumer) Consume(ctx context.Context, n int) error {
	all := make(chan struct{})
	mux := worker.NewMux()
	mux.HandleFunc(msgType, func(context.Context, *worker.Message) error {
		if c.handled.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	logger := slog.New(slog.DiscardHandler)
	rt := worker.NewRuntime(c.cfg, c.client, mux, logger, nil)
	rctx, stop := context.WithCancel(ctx)
	c.stop, c.runErr = stop, make(chan error, 1)
	go func() { c.runErr <- rt.Run(rctx) }()
	select {
	case <-all:
	case err := <-c.runErr:
		c.runErr <- err
		return fmt.Errorf("runtime stopped early: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("handled %d of %d: %w", c.handled.Load(), n, ctx.Err())
	}
	return c.waitAcked(ctx)
}

func (c *runtimeConsumer) Close() error {
	var err error
	if c.stop != nil {
		c.stop()
		err = <-c.runErr
	}
	return errors.Join(err, c.streamSetup.Close())
}

// bareConsumer is the least a Go client can do per message: read a batch,
// call a function per entry, acknowledge the batch, in one goroutine.
type bareConsumer struct {
	streamSetup
	client *redis.Client
	count  int64
}

func newBareConsumer(tb testing.TB, s *Server, count int64) *bareConsumer {
	tb.Helper()
	return &bareConsumer{streamSetup: newStreamSetup(tb, s), client: newClient(tb, s), count: count}
}

var noop = func(redis.XMessage) {}

func (c *bareConsumer) Consume(ctx context.Context, n int) error {
	ids := make([]string, 0, c.count)
	for got := 0; got < n; {
		res, err := c.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: c.group, Consumer: "bench-bare", Streams: []string{c.stream, ">"},
			Count: c.count, Block: time.Second,
		}).Result()
		if err != nil {
			return fmt.Errorf("reading after %d of %d: %w", got, n, err)
		}
		ids = ids[:0]
		for _, e := range res[0].Messages {
			noop(e)
			ids = append(ids, e.ID)
		}
		if err := c.client.XAck(ctx, c.stream, c.group, ids...).Err(); err != nil {
			return err
		}
		got += len(ids)
	}
	return c.waitAcked(ctx)
}

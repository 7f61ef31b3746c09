package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// testConfig is a fast configuration on srv with a stream of the test's own.
func testConfig(t *testing.T, srv *testredis.Server) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.RedisURL = srv.URL()
	cfg.Streams = []string{testredis.Prefix(t) + "events"}
	cfg.Group = "g"
	cfg.Consumer = "c1"
	cfg.Concurrency = 8
	cfg.Block = 100 * time.Millisecond
	cfg.RetryBase = 10 * time.Millisecond
	cfg.RetryMax = 40 * time.Millisecond
	cfg.PromoteInterval = 10 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.HTTPAddr = "off"
	cfg.LogLevel = "debug"
	return cfg
}

// harness runs worker.Run in the background for one test.
type harness struct {
	t      *testing.T
	cfg    config.Config
	stream string
	client *redis.Client
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startWorker(t *testing.T, srv *testredis.Server, cfg config.Config, mux *Mux, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, cfg: cfg, stream: cfg.Streams[0], client: srv.Client(t), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	opts = append([]Option{WithRedis(h.client), WithLogger(testLogger(t)), WithRegistry(h.reg)}, opts...)
	go func() { h.done <- Run(ctx, cfg, mux, opts...) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run = %v, want nil after a clean shutdown", err)
		}
	})
	return h
}

// stop shuts the worker down and returns Run's error; it is safe twice.
func (h *harness) stop() error {
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatalf("worker did not stop within 30s")
		return nil
	}
}

func (h *harness) publish(fields ...string) string {
	h.t.Helper()
	id, err := h.client.XAdd(context.Background(), &redis.XAddArgs{Stream: h.stream, Values: fields}).Result()
	if err != nil {
		h.t.Fatalf("XADD: %v", err)
	}
	return id
}

func (h *harness) pending() int64 {
	h.t.Helper()
	p, err := h.client.XPending(context.Background(), h.stream, h.cfg.Group).Result()
	if err != nil {
		h.t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

func (h *harness) dlq() []redis.XMessage {
	h.t.Helper()
	msgs, err := h.client.XRange(context.Background(), wire.DeadLetterKey(h.stream), "-", "+").Result()
	if err != nil {
		h.t.Fatalf("XRANGE dlq: %v", err)
	}
	return msgs
}

// outcome reads streamworker_messages_total for one type and outcome.
func (h *harness) outcome(typ, outcome string) int {
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "streamworker_messages_total" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "type" && l.GetValue() != typ) || (l.GetName() == "outcome" && l.GetValue() != outcome) {
					continue next
				}
			}
			return int(m.GetCounter().GetValue())
		}
	}
	return 0
}

// metric sums every series of a counter or gauge.
func (h *harness) metric(name string) float64 {
	mfs, _ := h.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// testLogger logs to the test, and drops lines after the test has ended.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// counter counts calls per key, safe for handlers running at once.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	return c.n[k]
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := 0
	for _, v := range c.n {
		s += v
	}
	return s
}

var _ = fmt.Sprint

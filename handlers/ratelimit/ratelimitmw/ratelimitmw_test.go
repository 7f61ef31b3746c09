package ratelimitmw_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/handlers/ratelimit"
	"github.com/streamworker/streamworker/handlers/ratelimit/ratelimitmw"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/worker"
)

// Messages over the limit go through the real runtime: each is delayed (not
// retried, not dead-lettered, its attempt unchanged) and every one is
// processed in the end, no faster than the limit allows.
func TestOverTheLimitIsDelayedNotFailed(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	rdb := srv.Client(t)
	prefix := testredis.Prefix(t)

	cfg := config.Default()
	cfg.RedisURL = srv.URL()
	cfg.Streams = []string{prefix + "events"}
	cfg.Group, cfg.Consumer = "g", "c1"
	cfg.Concurrency = 8
	cfg.Block = 100 * time.Millisecond
	cfg.RetryBase, cfg.RetryMax = 10*time.Millisecond, 40*time.Millisecond
	cfg.PromoteInterval = 10 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.MaxAttempts = 1 // any failure would dead-letter at once
	cfg.HTTPAddr = "off"
	cfg.LogLevel = "debug"

	const (
		messages = 12
		window   = 200 * time.Millisecond
		perWin   = 3
	)
	limiter := ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: prefix})
	var (
		mu       sync.Mutex
		attempts = map[string]int{} // payload -> attempt it ran at
		delays   int
	)
	observe := func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
			err := next.HandleMessage(ctx, m)
			var limited *ratelimitmw.LimitedError
			if errors.As(err, &limited) {
				mu.Lock()
				delays++
				mu.Unlock()
			}
			return err
		})
	}
	mux := worker.NewMux()
	mux.Use(observe, ratelimitmw.New(limiter, ratelimit.Limit{Rate: perWin, Period: window}, nil))
	mux.HandleFunc("email.send", func(ctx context.Context, m *worker.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[string(m.Data)] = m.Attempt
		return nil
	})

	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, cfg, mux, worker.WithRedis(rdb), worker.WithLogger(testLogger(t)), worker.WithRegistry(reg))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after a clean shutdown", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker did not stop within 30s")
		}
	})

	start := time.Now()
	for i := range messages {
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{
			Stream: cfg.Streams[0], Values: []string{"type", "email.send", "data", strconv.Itoa(i)},
		}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every message processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) == messages
	})
	elapsed := time.Since(start)
	eventually(t, "every message acknowledged", func() bool { return outcomes(t, reg)[worker.OutcomeAcked] == messages })

	mu.Lock()
	defer mu.Unlock()
	for payload, a := range attempts {
		if a != 1 {
			t.Errorf("message %s ran at attempt %d, want 1: a delay must not count as an attempt", payload, a)
		}
	}
	if delays == 0 {
		t.Error("no message was delayed; the limit was never reached")
	}
	// 12 messages at 3 per window need the first and last admissions at
	// least 3 windows apart.
	if least := (messages/perWin - 1) * window; elapsed < least {
		t.Errorf("all %d processed in %v, faster than %d per %v allows (%v)", messages, elapsed, perWin, window, least)
	}
	got := outcomes(t, reg)
	if got[worker.OutcomeAcked] != messages || got[worker.OutcomeDelayed] != delays || got[worker.OutcomeDead] != 0 || got[worker.OutcomeRetried] != 0 {
		t.Errorf("outcomes = %v, want %d acked, %d delayed, none dead or retried", got, messages, delays)
	}
	if n := rdb.XLen(context.Background(), worker.DeadLetterKey(cfg.Streams[0])).Val(); n != 0 {
		t.Errorf("dead-letter stream has %d entries, want 0", n)
	}
	t.Logf("%d messages, %d delays, %v", messages, delays, elapsed.Round(time.Millisecond))
}

// The middleware alone, without the runtime: the Delay carries the
// limiter's retry-after, a limiter error is returned or, with FailOpen,
// ignored.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	limiter := ratelimit.NewGCRA(rdb, &ratelimit.Options{Prefix: testredis.Prefix(t)})
	var ran int
	h := worker.HandlerFunc(func(context.Context, *worker.Message) error { ran++; return nil })
	byTenant := &ratelimitmw.Options{Key: func(m *worker.Message) string { return m.Metadata["tenant"] }}
	mw := ratelimitmw.New(limiter, ratelimit.PerMinute(1), byTenant)(h)
	ctx := context.Background()
	msg := func(tenant string) *worker.Message {
		return &worker.Message{Type: "t", Attempt: 1, Metadata: map[string]string{"tenant": tenant}}
	}

	if err := mw.HandleMessage(ctx, msg("a")); err != nil {
		t.Fatalf("first message: %v", err)
	}
	err := mw.HandleMessage(ctx, msg("a"))
	var de *worker.DelayError
	var le *ratelimitmw.LimitedError
	if !errors.As(err, &de) || !errors.As(err, &le) {
		t.Fatalf("second message of tenant a = %v, want a DelayError with a LimitedError", err)
	}
	if le.Key != "a" || de.After < le.RetryAfter || de.After > le.RetryAfter+le.RetryAfter/10+time.Millisecond || le.RetryAfter > time.Minute {
		t.Errorf("delay %v for RetryAfter %v on key %q; want RetryAfter plus at most a tenth, on key a", de.After, le.RetryAfter, le.Key)
	}
	if worker.IsPermanent(err) {
		t.Error("a delay must not be permanent")
	}
	if err := mw.HandleMessage(ctx, msg("b")); err != nil {
		t.Fatalf("tenant b has its own limit: %v", err)
	}
	if ran != 2 {
		t.Errorf("handler ran %d times, want 2", ran)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	broken := ratelimit.NewGCRA(down, nil)
	if err := ratelimitmw.New(broken, ratelimit.PerMinute(1), nil)(h).HandleMessage(ctx, msg("a")); err == nil || errors.As(err, &de) {
		t.Errorf("with Redis down = %v, want the limiter's error", err)
	}
	if err := ratelimitmw.New(broken, ratelimit.PerMinute(1), &ratelimitmw.Options{FailOpen: true})(h).HandleMessage(ctx, msg("a")); err != nil {
		t.Errorf("FailOpen with Redis down = %v, want the handler to run", err)
	}
	if ran != 3 {
		t.Errorf("handler ran %d times, want 3", ran)
	}
}

// outcomes reads streamworker_messages_total by outcome.
func outcomes(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "streamworker_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
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

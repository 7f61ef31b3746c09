package ratelimitmw_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/ratelimitmw"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/worker"
)

// Messages over the limit go through the real runtime: each is delayed (not
// retried, not dead-lettered, its attempt unchanged) and every one is
// processed in the end, no faster than the limit allows.
func TestOverTheLimitIsDelayedNotFailed(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	h.Config.MaxAttempts = 1 // any failure would dead-letter at once

	const (
		messages = 12
		window   = 200 * time.Millisecond
		perWin   = 3
	)
	limiter := ratelimit.NewSlidingWindow(h.Redis, &ratelimit.Options{Prefix: h.Prefix})
	var (
		mu       sync.Mutex
		attempts = map[string]int{} // payload -> attempt it ran at
	)
	mux := worker.NewMux()
	mux.Use(ratelimitmw.New(limiter, ratelimit.Limit{Rate: perWin, Period: window}, nil))
	mux.HandleFunc("email.send", func(ctx context.Context, m *worker.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[string(m.Data)] = m.Attempt
		return nil
	})
	h.Start(mux)

	start := time.Now()
	ids := make([]string, messages)
	for i := range ids {
		ids[i] = h.Send("email.send", strconv.Itoa(i))
	}
	var last time.Duration // from the first send to the last message's success
	for _, id := range ids {
		if r := h.Acked(id); len(r.Errors) > 0 {
			t.Errorf("message %s: handler errors %v, want none (the limiter runs before the handler)", id, r.Errors)
		}
		last = max(last, time.Since(start))
	}

	mu.Lock()
	defer mu.Unlock()
	for payload, a := range attempts {
		if a != 1 {
			t.Errorf("message %s ran at attempt %d, want 1: a delay must not count as an attempt", payload, a)
		}
	}
	got := h.Counts("email.send")
	if got.Delayed == 0 {
		t.Error("no message was delayed; the limit was never reached")
	}
	// 12 messages at 3 per window need the first and last admissions at
	// least 3 windows apart.
	if least := (messages/perWin - 1) * window; last < least {
		t.Errorf("all %d processed in %v, faster than %d per %v allows (%v)", messages, last, perWin, window, least)
	}
	if got.Acked != messages || got.Dead != 0 || got.Retried != 0 {
		t.Errorf("outcomes = %+v, want %d acked, none dead or retried", got, messages)
	}
	t.Logf("%d messages, %d delays, %v", messages, got.Delayed, last.Round(time.Millisecond))
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

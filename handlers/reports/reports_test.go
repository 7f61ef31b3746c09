package reports_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamworker/streamworker/blocks/lock"
	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/reports"
	"github.com/streamworker/streamworker/worker"
)

func TestReportIsExclusiveAndStaleWritesAreRefused(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	paused, release := make(chan struct{}), make(chan struct{})
	r := reports.New(h.Redis, &reports.Options{
		Prefix: h.Prefix,
		Busy:   20 * time.Millisecond,
		Logger: h.Logger,
		Build: func(ctx context.Context, req reports.Request) ([]byte, error) {
			if req.Params["pause"] == "yes" {
				close(paused)
				<-release // a GC pause: it ignores everything, its lock included
			}
			return []byte(req.Params["who"]), nil
		},
	})
	mux := worker.NewMux()
	r.Register(mux)
	h.Start(mux)
	ctx := context.Background()

	h.Acked(h.Send(reports.Type, reports.Request{Report: "monthly", Params: map[string]string{"who": "first"}}))
	if b, _ := r.Store().Get(ctx, "monthly"); string(b) != "first" {
		t.Fatalf("report = %q, want first", b)
	}

	slow := h.Send(reports.Type, reports.Request{Report: "monthly", Params: map[string]string{"who": "slow", "pause": "yes"}})
	<-paused
	// While the slow one holds the lock, another request waits its turn.
	fast := h.Send(reports.Type, reports.Request{Report: "monthly", Params: map[string]string{"who": "fast"}})
	h.Eventually("the second request to be delayed by the lock", func() bool { return h.Counts(reports.Type).Delayed > 0 })
	// The slow holder's lock expires while it is paused; the other takes it.
	h.Redis.Del(ctx, r.LockKey("monthly"))
	h.Acked(fast)
	if b, _ := r.Store().Get(ctx, "monthly"); string(b) != "fast" {
		t.Fatalf("report = %q, want fast", b)
	}
	close(release) // the slow holder wakes up and writes with its old token
	res := h.Acked(slow)
	if b, _ := r.Store().Get(ctx, "monthly"); string(b) != "fast" {
		t.Errorf("report = %q after the stale write, want fast kept", b)
	}
	if r.StaleWrites() != 1 || len(res.Errors) != 0 {
		t.Errorf("stale writes = %d, errors %v; want one refused write, acknowledged", r.StaleWrites(), res.Errors)
	}

	// Failure path: a request without a report is dead-lettered.
	h.DeadLettered(h.Send(reports.Type, `{"params":{}}`))
}

func TestRedisStoreRefusesALowerFence(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	s := reports.NewRedisStore(h.Redis, h.Prefix)
	ctx := context.Background()
	if err := s.Put(ctx, "r", []byte("v5"), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "r", []byte("v5b"), 5); err != nil {
		t.Errorf("same fence: %v, want accepted", err)
	}
	if err := s.Put(ctx, "r", []byte("v4"), 4); !errors.Is(err, lock.ErrStaleFence) {
		t.Errorf("lower fence: %v, want ErrStaleFence", err)
	}
	if b, _ := s.Get(ctx, "r"); string(b) != "v5b" {
		t.Errorf("body = %q", b)
	}
}

package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// An entry trimmed from the stream while its handler runs leaves the
// pending list when the lease is renewed (XCLAIM drops it): it is counted,
// and the handler, which holds the message, goes on and finishes.
func TestRunningEntryTrimmedFromTheStreamFinishes(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	started := make(chan struct{})
	var cancelled atomic.Bool
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, m *Message) error {
		close(started)
		select { // the work: several lease periods
		case <-time.After(2500 * time.Millisecond):
		case <-ctx.Done():
			cancelled.Store(true)
		}
		return ctx.Err()
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "slow")
	<-started
	if err := h.client.XTrimMaxLen(context.Background(), h.stream, 0).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the handler to finish", func() bool { return h.outcome("slow", OutcomeAcked) == 1 })
	if cancelled.Load() {
		t.Error("the handler of a trimmed entry was cancelled")
	}
	if got := h.metric("streamworker_deleted_while_pending_total"); got != 1 {
		t.Errorf("streamworker_deleted_while_pending_total = %v, want 1", got)
	}
	if n := h.outcome("slow", OutcomeLeaseLost); n != 0 {
		t.Errorf("lease_lost = %d, want 0", n)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
}

// blackhole makes a client's script calls hang, as on a connection whose
// packets vanish, until it is lifted or a read timeout passes: go-redis
// waits for a reply until its read timeout, whatever the context says.
type blackhole struct {
	on     atomic.Bool
	lifted chan struct{}
}

func (b *blackhole) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *blackhole) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if b.on.Load() && (cmd.Name() == "evalsha" || cmd.Name() == "eval") {
			select {
			case <-b.lifted:
			case <-time.After(5 * time.Second):
			}
			err := errors.New("i/o timeout (blackholed)")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (b *blackhole) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// When the lease cannot be renewed, the handler is cancelled before its
// entry becomes claimable by other consumers (the min-idle after the last
// renewal), even when the renewal call hangs for longer; the entry is
// claimed again afterwards and runs to the end.
func TestLeaseThatCannotBeRenewedCancelsTheHandlerInTime(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = 3 * time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	bh := &blackhole{lifted: make(chan struct{})}
	client := srv.Client(t)
	client.AddHook(bh)
	var lifted atomic.Bool
	t.Cleanup(func() {
		if lifted.CompareAndSwap(false, true) {
			close(bh.lifted)
		}
	})
	startedAt := make(chan time.Time, 1)
	cancelledAt := make(chan time.Time, 1)
	var (
		mu       sync.Mutex
		attempts []int
	)
	done := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, m *Message) error {
		mu.Lock()
		attempts = append(attempts, m.Attempt)
		mu.Unlock()
		if m.Attempt > 1 {
			close(done)
			return nil
		}
		startedAt <- time.Now()
		<-ctx.Done()
		cancelledAt <- time.Now()
		return ctx.Err()
	})
	h := startWorker(t, srv, cfg, mux, WithRedis(client))
	h.publish("type", "slow")
	start := <-startedAt
	bh.on.Store(true) // from now on no renewal gets through
	var cancelled time.Time
	select {
	case cancelled = <-cancelledAt:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler was never cancelled")
	}
	if took := cancelled.Sub(start); took >= cfg.ReclaimMinIdle {
		t.Errorf("handler cancelled %s after its last lease, want before the min-idle %s, when others may claim its entry", took, cfg.ReclaimMinIdle)
	}
	bh.on.Store(false)
	lifted.Store(true)
	close(bh.lifted)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the entry was never run again")
	}
	eventually(t, "acked", func() bool { return h.outcome("slow", OutcomeAcked) == 1 && h.pending() == 0 })
	if n := h.outcome("slow", OutcomeLeaseLost); n != 1 {
		t.Errorf("lease_lost = %d, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 || attempts[1] != 2 {
		t.Errorf("attempts %v, want [1 2]", attempts)
	}
}

// lateReplies holds back the replies of reads that deliver entries, as a
// slow network would: Redis has delivered them, and their idle time runs,
// before the worker sees them.
type lateReplies struct {
	on    atomic.Bool
	delay time.Duration
}

func (l *lateReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *lateReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if l.on.Load() && readDelivered(cmd) > 0 {
			time.Sleep(l.delay) // the reply in flight on a slow network
		}
		return err
	}
}

func (l *lateReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A read whose reply arrives after its entries became claimable must not run
// them when another consumer has taken them over meanwhile.
func TestLateReadDoesNotRunWhatAnotherConsumerTookOver(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	late := &lateReplies{delay: 2 * time.Second}
	late.on.Store(true)
	client := srv.Client(t)
	client.AddHook(late)
	var ran atomic.Int32
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error { ran.Add(1); return nil })
	logs := &syncBuffer{}
	h := startWorker(t, srv, cfg, mux, WithRedis(client), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	id := h.publish("type", "t")
	ctx := context.Background()
	// Another consumer claims it once it is claimable, while c1's reply is
	// still on its way, and keeps it.
	eventually(t, "another consumer to take the entry over", func() bool {
		got, _ := h.client.XClaimJustID(ctx, &redis.XClaimArgs{Stream: h.stream, Group: cfg.Group, Consumer: "other", MinIdle: cfg.ReclaimMinIdle, Messages: []string{id}}).Result()
		return len(got) == 1
	})
	eventually(t, "c1 to receive the late reply", func() bool {
		h.client.XClaimJustID(ctx, &redis.XClaimArgs{Stream: h.stream, Group: cfg.Group, Consumer: "other", Messages: []string{id}}) // other's lease
		return strings.Contains(logs.String(), "answered late") || ran.Load() > 0
	})
	if n := ran.Load(); n != 0 {
		t.Errorf("c1 ran the entry another consumer owned (%d times)", n)
	}
	late.on.Store(false)
	h.client.XAck(ctx, h.stream, cfg.Group, id)
}

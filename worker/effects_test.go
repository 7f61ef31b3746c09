package worker

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// TestEffectsCommittedWithAck: a handler's effects run with its entry's
// acknowledgement, once; a handler that fails commits none.
func TestEffectsCommittedWithAck(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 2
	mux := NewMux()
	mux.HandleFunc("credit", func(_ context.Context, m *Message) error {
		fx := m.Effects()
		key := fx.Key("balance")
		if err := fx.Do("INCRBY", key, 5); err != nil {
			return err
		}
		return fx.Do("HSET", fx.Key("last"), "id", m.ID)
	})
	mux.HandleFunc("fail", func(_ context.Context, m *Message) error {
		if err := m.Effects().Do("INCRBY", m.Effects().Key("failed"), 1); err != nil {
			return err
		}
		return Permanent(errors.New("no"))
	})
	h := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	ctx := context.Background()
	id := h.publish(wire.FieldType, "credit")
	h.publish(wire.FieldType, "fail")
	eventually(t, "both settled", func() bool {
		return h.outcome("credit", OutcomeAcked) == 1 && h.outcome("fail", OutcomeDead) == 1
	})
	if got := h.client.Get(ctx, (&Effects{stream: h.stream}).Key("balance")).Val(); got != "5" {
		t.Errorf("balance = %q, want 5", got)
	}
	last := h.client.HGet(ctx, (&Effects{stream: h.stream}).Key("last"), "id").Val()
	if last != id {
		t.Errorf("last = %q, want %s", last, id)
	}
	if n := h.client.Exists(ctx, (&Effects{stream: h.stream}).Key("failed")).Val(); n != 0 {
		t.Error("a failed handler's effects were committed")
	}
	if h.pending() != 0 {
		t.Errorf("%d pending", h.pending())
	}
}

// TestEffectsCrossSlotRefused: a key outside the stream's slot is refused
// at the call, and the message is dead-lettered rather than acknowledged
// without its effects, even when the handler ignores the error.
func TestEffectsCrossSlotRefused(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	got := make(chan error, 1)
	mux := NewMux()
	mux.HandleFunc("x", func(_ context.Context, m *Message) error {
		fx := m.Effects()
		got <- fx.Do("INCR", "elsewhere:counter")
		_ = fx.Do("INCR", fx.Key("counter"))
		return nil // ignores the refusal
	})
	h := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	h.publish(wire.FieldType, "x")
	err := <-got
	if !errors.Is(err, ErrCrossSlot) {
		t.Fatalf("Do with a key of another slot = %v, want ErrCrossSlot", err)
	}
	eventually(t, "the message dead-lettered", func() bool { return h.outcome("x", OutcomeDead) == 1 })
	if n := h.client.Exists(context.Background(), (&Effects{stream: h.stream}).Key("counter")).Val(); n != 0 {
		t.Error("effects committed although one was refused")
	}
	e := &Effects{stream: "{orders}"}
	if k := e.Key("b"); wire.Slot(k) != wire.Slot("{orders}") || k != "{orders}:b" {
		t.Errorf("Key = %q", k)
	}
	e = &Effects{stream: "orders"}
	if k := e.Key("b"); wire.Slot(k) != wire.Slot("orders") {
		t.Errorf("Key = %q, not in the slot of orders", k)
	}
}

// TestEffectsNotCommittedAfterTakeover: a handler whose entry another
// consumer claimed while it ran commits nothing: not its effects, not the
// acknowledgement; the entry stays pending for the new owner.
func TestEffectsNotCommittedAfterTakeover(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Hour // the test claims; the runtime's reclaimer does not
	running := make(chan string, 1)
	release := make(chan struct{})
	var key string
	mux := NewMux()
	mux.HandleFunc("slow", func(_ context.Context, m *Message) error {
		key = m.Effects().Key("applied")
		running <- m.ID
		<-release
		return m.Effects().Do("INCR", key)
	})
	h := startWorker(t, srv, cfg, mux, WithLogger(quietLogger()))
	ctx := context.Background()
	h.publish(wire.FieldType, "slow")
	id := <-running
	if err := h.client.XClaim(ctx, &redis.XClaimArgs{Stream: h.stream, Group: cfg.Group, Consumer: "thief", MinIdle: 0, Messages: []string{id}}).Err(); err != nil {
		t.Fatal(err)
	}
	close(release)
	eventually(t, "the outcome recorded", func() bool { return h.outcome("slow", OutcomeLeaseLost) == 1 })
	if n := h.client.Exists(ctx, key).Val(); n != 0 {
		t.Error("a handler whose entry was taken over committed its effects")
	}
	p, err := h.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: h.stream, Group: cfg.Group, Start: id, End: id, Count: 1}).Result()
	if err != nil || len(p) != 1 || p[0].Consumer != "thief" {
		t.Fatalf("pending %v, %v; want %s pending for thief", p, err, id)
	}
}

// A retry runs without what the failed attempt queued to commit with its
// acknowledgement: only the attempt that succeeds commits its effects. On an
// unpartitioned stream and for a keyed message on a partitioned one, whose
// retry runs in place in the order gate.
func TestRetryDropsTheFailedAttemptsEffects(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, partitions := range []int{1, 2} {
		t.Run("Partitions"+strconv.Itoa(partitions), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, srv)
			if partitions > 1 {
				cfg = partitionedConfig(t, srv, partitions, "c1")
			}
			mux := NewMux()
			mux.HandleFunc("x", func(ctx context.Context, m *Message) error {
				fx := m.Effects()
				if m.Attempt == 1 {
					if err := fx.Do("INCRBY", fx.Key("failed"), 1); err != nil {
						return err
					}
					return errors.New("try later")
				}
				return fx.Do("INCRBY", fx.Key("done"), 1)
			})
			h := startWorker(t, srv, cfg, mux)
			stream := h.stream
			if partitions > 1 {
				stream = wire.PartitionStream(h.stream, wire.PartitionFor("k", partitions))
				publishKeyed(t, h.client, h.stream, partitions, "x", "k", 1)
			} else {
				h.publish(wire.FieldType, "x", wire.FieldData, "1")
			}
			eventually(t, "the retry acknowledged", func() bool { return h.outcome("x", OutcomeAcked) == 1 })
			ctx := context.Background()
			fx := &Effects{stream: stream}
			if got := h.client.Get(ctx, fx.Key("done")).Val(); got != "1" {
				t.Errorf("done = %q, want 1", got)
			}
			if n := h.client.Exists(ctx, fx.Key("failed")).Val(); n != 0 {
				t.Error("the failed attempt's effects were committed with the retry's")
			}
		})
	}
}

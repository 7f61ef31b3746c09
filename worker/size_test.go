package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// An entry larger than WORKER_MAX_MESSAGE_BYTES, counting every field, is
// dead-lettered unrun with the reason, whole; the entries beside it run.
func TestOversizedEntryIsDeadLetteredUnrun(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxMessageBytes = 4096
	var ran counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		ran.inc(m.Metadata["n"])
		return nil
	})
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	big := strings.Repeat("x", 4096) // with its field names, over the limit
	var bigIDs []string
	add := func(fields ...string) string {
		return c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Val()
	}
	for i := range 10 {
		n := strconv.Itoa(i)
		switch i {
		case 3: // large data
			bigIDs = append(bigIDs, add("type", "t", "n", n, "data", big))
		case 6: // small data, a large field of another name
			bigIDs = append(bigIDs, add("type", "t", "n", n, "data", "d", "note", big))
		default:
			add("type", "t", "n", n, "data", strings.Repeat("y", 4000)) // just under
		}
	}
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "8 acked and 2 dead-lettered", func() bool {
		return h.outcome("t", OutcomeAcked) == 8 && h.outcome("t", OutcomeDead) == 2
	})
	if ran.get("3") != 0 || ran.get("6") != 0 || ran.total() != 8 {
		t.Errorf("handler runs %v, want the 8 small entries once each", ran.n)
	}
	dlq := h.dlq()
	if len(dlq) != 2 {
		t.Fatalf("dead letters = %d, want 2", len(dlq))
	}
	for i, d := range dlq {
		if got := d.Values[wire.FieldOriginID]; got != bigIDs[i] {
			t.Errorf("dead letter %d origin_id = %v, want %s", i, got, bigIDs[i])
		}
		msg, _ := d.Values[wire.FieldError].(string)
		if !strings.Contains(msg, ErrTooLarge.Error()) || !strings.Contains(msg, "WORKER_MAX_MESSAGE_BYTES") {
			t.Errorf("dead letter error %q, want it to say the entry is too large and what limits it", msg)
		}
	}
	if dlq[0].Values[wire.FieldData] != big || dlq[1].Values["note"] != big {
		t.Errorf("the dead letters lost their fields")
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
	if !IsPermanent(ErrTooLarge) || !errors.Is(Permanent(ErrTooLarge), ErrTooLarge) {
		t.Errorf("ErrTooLarge is not permanent")
	}
}

// A reclaimed entry over the limit is dead-lettered unrun as well.
func TestOversizedReclaimedEntryIsDeadLetteredUnrun(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxMessageBytes = 4096
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 50 * time.Millisecond
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	if err := c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", strings.Repeat("x", 8192)}})
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 1}).Err(); err != nil {
		t.Fatal(err)
	}
	var ran counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error { ran.inc(m.ID); return nil })
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "the reclaimed entry dead-lettered", func() bool { return len(h.dlq()) == 1 })
	if ran.total() != 0 {
		t.Errorf("the handler ran %d times, want 0", ran.total())
	}
}

func TestReadSizerKeepsAReadNearTheBudget(t *testing.T) {
	t.Parallel()
	const budget = 16 << 20
	var z readSizer
	if got := z.count(256, budget); got != firstReadCount {
		t.Errorf("before any read: count = %d, want %d (nothing known yet: a first read of its own size)", got, firstReadCount)
	}
	z.observe(100*64, 64) // small entries
	if got := z.count(256, budget); got != 256 {
		t.Errorf("after 100-byte entries: count = %d, want 256", got)
	}
	z.observe(24*20<<20, 24) // 20 MB entries: at once
	if got := z.count(256, budget); got != 1 {
		t.Errorf("after 20 MB entries: count = %d, want 1", got)
	}
	z.observe(1<<20, 1)
	if got := z.count(256, budget); got < 1 || got > 16 {
		t.Errorf("after a 1 MiB entry: count = %d, want the estimate to come down gradually", got)
	}
	for range 100 {
		z.observe(1<<20, 1)
	}
	if got := z.count(256, budget); got != 16 {
		t.Errorf("after many 1 MiB entries: count = %d, want 16", got)
	}
	z.observe(0, 0) // an empty read says nothing
	if got := z.count(256, budget); got != 16 {
		t.Errorf("after an empty read: count = %d, want 16", got)
	}
	if got := z.count(4, budget); got != 4 {
		t.Errorf("count with 4 slots = %d, want 4", got)
	}
}

// Once reads have brought large entries, a read asks for no more than the
// read budget holds: 1 MiB entries come 16 to a read, not one per free slot.
func TestReadsOfLargeEntriesStayNearTheBudget(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 64
	cfg.FetchCount = 64
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	t.Cleanup(func() { c.Del(context.Background(), stream, wire.DeadLetterKey(stream)) })
	data := strings.Repeat("x", 1<<20)
	var mu sync.Mutex
	reads := map[time.Time]int{} // messages per read, by when the read was sent
	first := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		mu.Lock()
		reads[m.readAt]++
		mu.Unlock()
		if m.Metadata["first"] == "1" {
			close(first)
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "t", "first", "1", "data", data)
	<-first
	const n = 40
	pipe := c.Pipeline()
	for range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", data}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every entry handled", func() bool { return h.outcome("t", OutcomeAcked) == n+1 })
	mu.Lock()
	defer mu.Unlock()
	for at, got := range reads {
		if got > minReadBudget>>20 {
			t.Errorf("the read sent at %s brought %d entries of 1 MiB, want at most %d", at.Format(time.StampMicro), got, minReadBudget>>20)
		}
	}
}

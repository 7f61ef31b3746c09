package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

func TestSuccessIsAckedInBatches(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var seen counter
	mux := NewMux()
	mux.HandleFunc("ok", func(ctx context.Context, m *Message) error {
		seen.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	for i := range 500 {
		h.publish("type", "ok", "data", strconv.Itoa(i))
	}
	eventually(t, "500 acked", func() bool { return h.outcome("ok", OutcomeAcked) == 500 })
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
	for i := range 500 {
		if n := seen.get(strconv.Itoa(i)); n != 1 {
			t.Errorf("message %d handled %d times, want 1", i, n)
		}
	}
}

func TestRetrySucceedsOnThirdAttempt(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var attempts []int
	var calls atomic.Int32
	done := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("flaky", func(ctx context.Context, m *Message) error {
		attempts = append(attempts, m.Attempt) // one message: calls are sequential
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		if m.IdempotencyKey != "k1" || string(m.Data) != "payload" || m.Metadata["tenant"] != "acme" {
			t.Errorf("retried copy lost fields: %+v", m)
		}
		close(done)
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "flaky", "data", "payload", "id", "k1", "tenant", "acme")
	<-done
	eventually(t, "acked", func() bool { return h.outcome("flaky", OutcomeAcked) == 1 })
	if got := fmt.Sprint(attempts); got != "[1 2 3]" {
		t.Errorf("attempts = %s, want [1 2 3]", got)
	}
	// A retry is counted once its script has answered, which may be after
	// the copy it scheduled has run: wait for the count, not only the run.
	eventually(t, "two retries counted", func() bool { return h.outcome("flaky", OutcomeRetried) >= 2 })
	if got := h.outcome("flaky", OutcomeRetried); got != 2 {
		t.Errorf("retried = %d, want 2", got)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
	if n := h.client.ZCard(context.Background(), wire.DelayedKey(h.stream)).Val(); n != 0 {
		t.Errorf("delayed set holds %d, want 0", n)
	}
	if d := h.dlq(); len(d) != 0 {
		t.Errorf("dlq = %v, want empty", d)
	}
}

func TestFailuresEndInDeadLetterStream(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 3
	mux := NewMux()
	mux.HandleFunc("panics", func(ctx context.Context, m *Message) error { panic("boom") })
	mux.HandleFunc("permanent", func(ctx context.Context, m *Message) error {
		return Permanent(errors.New("card declined"))
	})
	mux.HandleFunc("fails", func(ctx context.Context, m *Message) error { return errors.New("always fails") })
	h := startWorker(t, srv, cfg, mux)
	ids := map[string]string{
		"panics":    h.publish("type", "panics", "data", "p"),
		"permanent": h.publish("type", "permanent", "data", "x", "tenant", "acme"),
		"fails":     h.publish("type", "fails", "data", "f"),
		"":          h.publish("data", "no type here"),
		"unknown":   h.publish("type", "nobody.handles", "data", "u"),
	}
	eventually(t, "5 dead letters", func() bool { return len(h.dlq()) == 5 })
	want := map[string]struct {
		attempts string
		errText  string
	}{
		"panics":    {"3", "panic: boom"},
		"permanent": {"1", "permanent: card declined"},
		"fails":     {"3", "always fails"},
		"":          {"1", "message has no type field"},
		"unknown":   {"1", `no handler for message type "nobody.handles"`},
	}
	byOrigin := map[string]redis.XMessage{}
	for _, d := range h.dlq() {
		byOrigin[d.Values[wire.FieldOriginID].(string)] = d
	}
	for name, id := range ids {
		t.Run("Type="+name, func(t *testing.T) {
			d, ok := byOrigin[id]
			if !ok {
				t.Fatalf("no dead letter with origin_id %s (the ID the producer's entry got)", id)
			}
			w := want[name]
			if got := d.Values[wire.FieldAttempts]; got != w.attempts {
				t.Errorf("attempts = %v, want %s", got, w.attempts)
			}
			if got := d.Values[wire.FieldError].(string); !strings.Contains(got, w.errText) {
				t.Errorf("error = %q, want it to contain %q", got, w.errText)
			}
			if name == "panics" && !strings.Contains(d.Values[wire.FieldError].(string), "goroutine") {
				t.Errorf("panic error carries no stack: %q", d.Values[wire.FieldError])
			}
			if _, err := time.Parse(time.RFC3339Nano, d.Values[wire.FieldFailedAt].(string)); err != nil {
				t.Errorf("failed_at: %v", err)
			}
			wantType := name
			if name == "unknown" {
				wantType = "nobody.handles"
			}
			if name != "" && d.Values["type"] != wantType {
				t.Errorf("type = %v, want the original %q", d.Values["type"], wantType)
			}
			if name == "permanent" && (d.Values["tenant"] != "acme" || d.Values["data"] != "x") {
				t.Errorf("original fields lost: %v", d.Values)
			}
		})
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
}

func TestDedupeWindowSkipsProcessedIDs(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.DedupeWindow = time.Minute
	var runs counter
	mux := NewMux()
	mux.HandleFunc("pay", func(ctx context.Context, m *Message) error {
		runs.inc(m.IdempotencyKey)
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "pay", "id", "order-1")
	eventually(t, "first acked", func() bool { return h.outcome("pay", OutcomeAcked) == 1 })
	h.publish("type", "pay", "id", "order-1") // a producer's resend
	h.publish("type", "pay", "id", "order-2")
	h.publish("type", "pay") // no id: never deduplicated
	h.publish("type", "pay")
	eventually(t, "the rest finished", func() bool {
		return h.outcome("pay", OutcomeAcked) == 4 && h.outcome("pay", OutcomeDuplicate) == 1
	})
	if n := runs.get("order-1"); n != 1 {
		t.Errorf("order-1 ran %d times, want 1", n)
	}
	if n := runs.get(""); n != 2 {
		t.Errorf("messages without id ran %d times, want 2", n)
	}
	if ttl := h.client.PTTL(context.Background(), wire.DedupeKey(h.stream, "order-1")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("dedupe mark TTL = %s, want within the 1m window", ttl)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
}

func TestDedupeOffByDefault(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var runs atomic.Int32
	mux := NewMux()
	mux.HandleFunc("pay", func(ctx context.Context, m *Message) error { runs.Add(1); return nil })
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "pay", "id", "same")
	h.publish("type", "pay", "id", "same")
	eventually(t, "both acked", func() bool { return h.outcome("pay", OutcomeAcked) == 2 })
	if n := runs.Load(); n != 2 {
		t.Errorf("ran %d times, want 2", n)
	}
}

func TestOwnPendingEntriesFirstAfterRestart(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	if err := c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	var old []string
	for i := range 3 {
		old = append(old, c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", "old" + strconv.Itoa(i)}}).Val())
	}
	// A previous run of consumer c1 read them and died before acknowledging.
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	// One of them was trimmed away meanwhile.
	c.XDel(ctx, stream, old[2])
	c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", "new"}})
	waitIdle(t, c, stream, cfg.Group)

	var order []string
	done := make(chan struct{})
	cfg.Concurrency = 1 // one at a time, so the order is observable
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		order = append(order, string(m.Data))
		if len(order) == 3 {
			close(done)
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	<-done
	if got := fmt.Sprint(order); got != "[old0 old1 new]" {
		t.Errorf("order = %s, want own pending entries first: [old0 old1 new]", got)
	}
	eventually(t, "all acked", func() bool { return h.pending() == 0 })
	// Our own history read or a reclaim pass finds it, whichever comes first.
	eventually(t, "trimmed entry counted", func() bool { return h.metric("streamworker_deleted_while_pending_total") == 1 })
}

func TestFetchNeverExceedsFreeSlots(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 3
	release := make(chan struct{})
	var running atomic.Int32
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, m *Message) error {
		running.Add(1)
		<-release
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	for range 20 {
		h.publish("type", "slow")
	}
	eventually(t, "3 running", func() bool { return running.Load() == 3 })
	// Give the fetcher a few block periods to (wrongly) read more.
	deadline := time.Now().Add(5 * cfg.Block)
	for time.Now().Before(deadline) {
		if p := h.pending(); p > 3 {
			t.Fatalf("%d entries delivered with 3 handler slots: reads must not exceed free slots", p)
		}
		time.Sleep(10 * time.Millisecond) // sampling the pending count over a window
	}
	close(release)
	eventually(t, "all 20 acked", func() bool { return h.outcome("slow", OutcomeAcked) == 20 })
}

func TestGroupStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		start string
		want  int
	}{{"earliest", 2}, {"latest", 1}} {
		t.Run(tc.start, func(t *testing.T) {
			t.Parallel()
			srv := testredis.Shared(t)
			cfg := testConfig(t, srv)
			cfg.GroupStart = tc.start
			c := srv.Client(t)
			c.XAdd(context.Background(), &redis.XAddArgs{Stream: cfg.Streams[0], Values: []string{"type", "t", "data", "before"}})
			var n atomic.Int32
			mux := NewMux()
			mux.HandleFunc("t", func(ctx context.Context, m *Message) error { n.Add(1); return nil })
			h := startWorker(t, srv, cfg, mux)
			eventually(t, "group created", func() bool {
				g, _ := c.XInfoGroups(context.Background(), h.stream).Result()
				return len(g) == 1
			})
			h.publish("type", "t", "data", "after")
			eventually(t, "after handled", func() bool { return h.outcome("t", OutcomeAcked) == tc.want })
			if got := int(n.Load()); got != tc.want {
				t.Errorf("handled %d, want %d", got, tc.want)
			}
		})
	}
}

// waitIdle waits until every entry pending in group has been idle a few
// milliseconds. A restarted worker resumes only the entries idle since before
// it started, to the millisecond: one started within the test's own read's
// millisecond would leave them to the reclaimer. A real restart is never that
// quick.
func waitIdle(t *testing.T, c *redis.Client, stream, group string) {
	t.Helper()
	eventually(t, "pending entries idle", func() bool {
		p, err := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			return false
		}
		for _, e := range p {
			if e.Idle < 3*time.Millisecond {
				return false
			}
		}
		return true
	})
}

func TestCrashLoopingOwnPendingEntryIsDeadLettered(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 3
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0")
	poison := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", "kills the process"}}).Val()
	fine := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", "fine"}}).Val()
	// Three runs of consumer c1 read the poison message and died each time.
	c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, ">"}, Count: 1})
	for range 2 {
		c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{stream, "0"}, Count: 1})
	}
	waitIdle(t, c, stream, cfg.Group)
	var ran []string
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		ran = append(ran, m.ID) // concurrency 1 below
		return nil
	})
	cfg.Concurrency = 1
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "poison dead-lettered", func() bool { return len(h.dlq()) == 1 })
	eventually(t, "the other acked", func() bool { return h.outcome("t", OutcomeAcked) == 1 })
	if fmt.Sprint(ran) != "["+fine+"]" {
		t.Errorf("ran %v, want only %s: the poison message must not run again", ran, fine)
	}
	d := h.dlq()[0]
	if d.Values[wire.FieldOriginID] != poison || d.Values[wire.FieldAttempts] != "3" || !strings.Contains(d.Values[wire.FieldError].(string), "abandoned: delivered 3 times") {
		t.Errorf("dead letter = %v", d.Values)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
}

func TestDelayReschedulesWithoutCountingAnAttempt(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 1 // a delay must not exhaust attempts
	var calls atomic.Int32
	var attempts []int
	mux := NewMux()
	mux.HandleFunc("limited", func(ctx context.Context, m *Message) error {
		attempts = append(attempts, m.Attempt)
		if calls.Add(1) <= 3 {
			return Delay(5*time.Millisecond, errors.New("over the rate limit"))
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "limited")
	eventually(t, "acked after three delays", func() bool { return h.outcome("limited", OutcomeAcked) == 1 })
	if got := fmt.Sprint(attempts); got != "[1 1 1 1]" {
		t.Errorf("attempts = %s, want [1 1 1 1]", got)
	}
	if got := h.outcome("limited", OutcomeDelayed); got != 3 {
		t.Errorf("delayed = %d, want 3", got)
	}
	if d := h.dlq(); len(d) != 0 {
		t.Errorf("dlq = %v", d)
	}
}

// A key at a message's dedupe mark that the runtime did not write — a
// stream a producer XADDed there, or a string of another value — does not
// make the message a duplicate: only the runtime's own mark counts.
func TestDedupeIgnoresForgedMarks(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.DedupeWindow = time.Minute
	var runs counter
	mux := NewMux()
	mux.HandleFunc("pay", func(ctx context.Context, m *Message) error {
		runs.inc(m.IdempotencyKey)
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	ctx := context.Background()
	if err := h.client.XAdd(ctx, &redis.XAddArgs{Stream: wire.DedupeKey(h.stream, "order-1"), Values: []string{"type", "forged"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Set(ctx, wire.DedupeKey(h.stream, "order-2"), "forged", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	h.publish("type", "pay", "id", "order-1")
	h.publish("type", "pay", "id", "order-2")
	eventually(t, "both acked", func() bool { return h.outcome("pay", OutcomeAcked) == 2 })
	if runs.get("order-1") != 1 || runs.get("order-2") != 1 || h.outcome("pay", OutcomeDuplicate) != 0 {
		t.Errorf("runs %v, duplicates %d: want each real event run once and none skipped", runs.n, h.outcome("pay", OutcomeDuplicate))
	}
	// The runtime's marks replaced the forged keys: a resend is a duplicate.
	h.publish("type", "pay", "id", "order-1")
	eventually(t, "the resend skipped", func() bool { return h.outcome("pay", OutcomeDuplicate) == 1 })
}

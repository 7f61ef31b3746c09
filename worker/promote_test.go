package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/internal/wiretest"
	"github.com/streamworker/streamworker/wire"
)

func TestPromoteMovesOnlyDueEntries(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	now := time.UnixMilli(1_700_000_000_000)
	add := func(token string, due time.Time, fields ...string) {
		c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: float64(due.UnixMilli()), Member: wire.EncodeEnvelope(token, fields)})
	}
	add("a", now.Add(-time.Second), "type", "t", "data", "bin\x00ary:with:colons")
	add("b", now, "type", "t", "data", "")
	add("c", now.Add(time.Second), "type", "t", "data", "later")
	c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: 0, Member: "garbage"})

	p := newPromoter(c, []string{stream}, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	p.batch = 2 // several script calls for one pass
	p.now = func() time.Time { return now }
	moved, failed, left := p.runStreams(ctx, p.streams)
	if failed != nil {
		t.Fatal(failed)
	}
	if moved != 3 {
		t.Errorf("moved %d, want 3 (two due, one malformed)", moved)
	}
	if want := now.Add(time.Second); len(left) != 1 || !left[stream].Equal(want) {
		t.Errorf("left = %v, want %s due at %v (the entry left)", left, stream, want)
	}
	got, _ := c.XRange(ctx, stream, "-", "+").Result()
	if len(got) != 2 || got[0].Values["data"] != "bin\x00ary:with:colons" || got[1].Values["data"] != "" {
		t.Errorf("stream = %v, want the two due entries, bytes intact", got)
	}
	if left := c.ZRange(ctx, wire.DelayedKey(stream), 0, -1).Val(); len(left) != 1 {
		t.Errorf("delayed set = %q, want only the future entry", left)
	}
	dead, _ := c.XRange(ctx, wire.DeadLetterKey(stream), "-", "+").Result()
	if len(dead) != 1 || dead[0].Values["envelope"] != "garbage" {
		t.Errorf("dlq = %v, want the malformed envelope", dead)
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	base, maxD := 100*time.Millisecond, time.Second
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 100 {
			d := backoff(attempt, base, maxD)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

// promoteBounded runs one promotion pass on a server of the test's own that
// answers BUSY after 50 ms of script: a pass that loops forever fails the
// test within the bound instead of hanging it, and Redis must still answer.
func promoteBounded(t testing.TB, c *redis.Client, streams ...string) (int, map[string]error) {
	t.Helper()
	p := newPromoter(c, streams, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	moved, failed, _ := p.runStreams(ctx, p.streams)
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if err := c.Ping(pctx).Err(); err != nil {
		t.Fatalf("PING after a promotion pass = %v (the pass: %v)", err, failed)
	}
	return moved, failed
}

func boundedServer(t testing.TB) *redis.Client {
	t.Helper()
	return testredis.Start(t, "--busy-reply-threshold", "50").Client(t)
}

// rawEntries reads a stream's entries' fields in order, duplicates included.
func rawEntries(t testing.TB, c *redis.Client, key string) [][]string {
	t.Helper()
	reply, err := c.Do(context.Background(), "XRANGE", key, "-", "+").Slice()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", key, err)
	}
	out := make([][]string, len(reply))
	for i, e := range reply {
		raw := e.([]any)[1].([]any)
		out[i] = make([]string, len(raw))
		for j, v := range raw {
			out[i][j] = v.(string)
		}
	}
	return out
}

// Members anyone with ZADD on the delayed set can write: each must go to the
// dead-letter stream as it is, without looping, failing the pass or blocking
// Redis.
func TestPromoteDeadLettersBadMembers(t *testing.T) {
	t.Parallel()
	c := boundedServer(t)
	ctx := context.Background()
	wide := func(pairs int) string {
		f := make([]string, 0, 2*pairs)
		for i := range pairs {
			f = append(f, "f"+itoa(i), "v")
		}
		return wire.EncodeEnvelope("t", f)
	}
	cases := map[string]string{}
	for _, m := range wiretest.EnvelopeSeeds() {
		if _, f, err := wire.DecodeEnvelope(m); err != nil {
			cases[m] = errNotEnvelope
		} else if len(f)/2 > wire.MaxFields {
			cases[m] = errEnvelopeTooLarge
		}
	}
	cases[wide(5000)] = errEnvelopeTooLarge
	cases[wide(20000)] = errEnvelopeTooLarge
	for member, why := range cases {
		stream := testredis.Prefix(t) + "s"
		c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: 0, Member: member})
		moved, failed := promoteBounded(t, c, stream)
		if moved != 1 || failed != nil {
			t.Errorf("member %.40q: moved %d, failed %v; want 1, none", member, moved, failed)
		}
		if n := c.ZCard(ctx, wire.DelayedKey(stream)).Val(); n != 0 {
			t.Errorf("member %.40q: still in the delayed set", member)
		}
		if n := c.XLen(ctx, stream).Val(); n != 0 {
			t.Errorf("member %.40q: %d entries promoted, want none", member, n)
		}
		want := [][]string{{wire.FieldError, why, wire.FieldEnvelope, member}}
		if got := rawEntries(t, c, wire.DeadLetterKey(stream)); !cmp.Equal(want, got) {
			t.Errorf("member %.40q: dlq = %.200q, want %.200q", member, got, want)
		}
	}
}

// One stream's broken delayed key is its own failure: counted and reported
// by stream, while the other streams are promoted.
func TestPromoteFailureStaysWithItsStream(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	pre := testredis.Prefix(t)
	bad1, good, bad2 := pre+"bad1", pre+"good", pre+"bad2"
	c.Set(ctx, wire.DelayedKey(bad1), "not a sorted set", 0)
	c.Set(ctx, bad2, "not a stream", 0)
	for _, s := range []string{good, bad2} {
		c.ZAdd(ctx, wire.DelayedKey(s), redis.Z{Score: 0, Member: wire.EncodeEnvelope("a", []string{"type", "t"})})
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	p := newPromoter(c, []string{bad1, good, bad2}, time.Second, slog.New(slog.DiscardHandler), metrics, nil)
	moved, failed, _ := p.runStreams(ctx, p.streams)
	if moved != 1 || c.XLen(ctx, good).Val() != 1 {
		t.Errorf("moved %d, %s holds %d; want the good stream promoted", moved, good, c.XLen(ctx, good).Val())
	}
	if len(failed) != 2 || !redis.HasErrorPrefix(failed[bad1], "WRONGTYPE") || !redis.HasErrorPrefix(failed[bad2], "WRONGTYPE") {
		t.Errorf("failed = %v, want WRONGTYPE for %s and %s", failed, bad1, bad2)
	}
	if n := c.ZCard(ctx, wire.DelayedKey(bad2)).Val(); n != 1 {
		t.Errorf("%s's delayed entry: %d left, want it kept when its copy fails", bad2, n)
	}
	for s, want := range map[string]float64{bad1: 1, good: 0, bad2: 1} {
		if got := testutil.ToFloat64(metrics.PromoteFailures.WithLabelValues(s)); got != want {
			t.Errorf("promote failures of %s = %v, want %v", s, got, want)
		}
	}
	if got := testutil.ToFloat64(metrics.RedisErrors.WithLabelValues(OpPromote)); got != 2 {
		t.Errorf("redis errors of op promote = %v, want 2", got)
	}
}

// FuzzPromoteEnvelope drives the promote script's decoder through a real
// Redis of its own: whatever the member, the pass returns within its bound,
// Redis answers, and the member leaves the delayed set for the stream, with
// exactly the fields wire.DecodeEnvelope finds, when it accepts it within
// wire.MaxFields, and for the dead-letter stream, as it is, otherwise.
func FuzzPromoteEnvelope(f *testing.F) {
	for _, s := range wiretest.EnvelopeSeeds() {
		f.Add(s)
	}
	c := boundedServer(f)
	f.Fuzz(func(t *testing.T, member string) {
		ctx := context.Background()
		stream := testredis.Prefix(t) + "s"
		defer c.Del(ctx, stream, wire.DelayedKey(stream), wire.DeadLetterKey(stream))
		if err := c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: 0, Member: member}).Err(); err != nil {
			t.Fatal(err)
		}
		if _, failed := promoteBounded(t, c, stream); failed != nil {
			t.Fatalf("promoting %q: %v", member, failed)
		}
		if n := c.ZCard(ctx, wire.DelayedKey(stream)).Val(); n != 0 {
			t.Fatalf("%q is still in the delayed set", member)
		}
		got, dead := rawEntries(t, c, stream), rawEntries(t, c, wire.DeadLetterKey(stream))
		if _, fields, err := wire.DecodeEnvelope(member); err == nil && len(fields)/2 <= wire.MaxFields {
			if len(dead) != 0 || !cmp.Equal([][]string{fields}, got) {
				t.Fatalf("%q: stream %q, dlq %q; want the stream to hold %q", member, got, dead, fields)
			}
			return
		}
		if len(got) != 0 || len(dead) != 1 || len(dead[0]) != 4 || dead[0][2] != wire.FieldEnvelope || dead[0][3] != member {
			t.Fatalf("%q: stream %q, dlq %q; want it dead-lettered as it is", member, got, dead)
		}
	})
}

// Every member of a pass is copied with its own fields only: the decoder
// reuses one table for them all, and a longer member before, or one that
// fails halfway, leaves nothing behind in the next one's copy.
func TestPromoteCopiesEachMemberAlone(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	long := wire.EncodeEnvelope("a", []string{"type", "t", "data", "a", "more", "1", "most", "2"})
	half := "1:b4:type1:t4:data12:cut short" // a length past the end
	short := wire.EncodeEnvelope("c", []string{"type", "u"})
	for i, m := range []string{long, half, short} {
		c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: float64(i + 1), Member: m})
	}
	p := newPromoter(c, []string{stream}, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	if n, dead, _, err := p.promoteBatch(ctx, stream); n != 3 || dead != 1 || err != nil {
		t.Fatalf("promoteBatch = %d, %d, %v; want 3 moved, 1 of them dead-lettered", n, dead, err)
	}
	want := [][]string{{"type", "t", "data", "a", "more", "1", "most", "2"}, {"type", "u"}}
	if got := rawEntries(t, c, stream); !cmp.Equal(want, got) {
		t.Errorf("stream = %q, want %q", got, want)
	}
	if dead := rawEntries(t, c, wire.DeadLetterKey(stream)); len(dead) != 1 || dead[0][3] != half {
		t.Errorf("dead letters = %q, want the cut-short member as it is", dead)
	}
}

// A batch removes exactly the members it copied: with equal scores beyond
// the batch's LIMIT, the members read and no others; when a copy fails
// mid-batch, the members copied before it, with its own and the rest kept.
func TestPromoteRemovesExactlyWhatItCopied(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	env := func(token string) string { return wire.EncodeEnvelope(token, []string{"type", "t", "data", token}) }
	for _, token := range []string{"c", "a", "b"} {
		c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: 1, Member: env(token)})
	}
	p := newPromoter(c, []string{stream}, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	p.batch = 2
	if n, dead, next, err := p.promoteBatch(ctx, stream); n != 2 || dead != 0 || !next.Equal(time.UnixMilli(1)) || err != nil {
		t.Fatalf("promoteBatch = %d, %d, %v, %v; want 2, 0, c's due time (1 ms after the epoch), nil", n, dead, next, err)
	}
	want := [][]string{{"type", "t", "data", "a"}, {"type", "t", "data", "b"}}
	if got := rawEntries(t, c, stream); !cmp.Equal(want, got) {
		t.Errorf("stream = %q, want %q", got, want)
	}
	if left := c.ZRange(ctx, wire.DelayedKey(stream), 0, -1).Val(); !cmp.Equal([]string{env("c")}, left) {
		t.Errorf("delayed set = %q, want only c's envelope", left)
	}

	// "garbage" sorts after c's envelope; its dead letter fails.
	c.ZAdd(ctx, wire.DelayedKey(stream), redis.Z{Score: 1, Member: "garbage"})
	c.Set(ctx, wire.DeadLetterKey(stream), "not a stream", 0)
	if _, _, _, err := p.promoteBatch(ctx, stream); !redis.HasErrorPrefix(err, "WRONGTYPE") {
		t.Fatalf("promoteBatch error = %v, want WRONGTYPE", err)
	}
	if left := c.ZRange(ctx, wire.DelayedKey(stream), 0, -1).Val(); !cmp.Equal([]string{"garbage"}, left) {
		t.Errorf("delayed set = %q, want only the member whose copy failed", left)
	}
	if n := c.XLen(ctx, stream).Val(); n != 3 {
		t.Errorf("stream holds %d entries, want 3", n)
	}
}

// A retry runs when it falls due, not at the promoter's next pass over
// every stream: with WORKER_PROMOTE_INTERVAL at 10 s, a retry due 100 ms
// after its failure runs long before the pass 10 s after the first (at the
// latest a tenth of the interval after the pass before it ended).
func TestRetryRunsWhenDue(t *testing.T) {
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.PromoteInterval = 10 * time.Second
	cfg.RetryBase, cfg.RetryMax = 100*time.Millisecond, 100*time.Millisecond
	failed, retried := newFired(), newFired()
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		if m.Attempt == 1 {
			failed.fire()
			return errors.New("the first attempt fails")
		}
		retried.fire()
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "t")
	firedWithin(t, cfg.PromoteInterval/2, awaited{"the first attempt", failed}, awaited{"the retry", retried})
}

// An entry another process put in the delayed set (a producer's delayed
// event) is moved when it falls due: the pass over every stream at start
// sees it and reports it as the earliest left, and the promoter wakes for
// it, long before its next pass over every stream.
func TestDelayedEntryMovedWhenDue(t *testing.T) {
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.PromoteInterval = 10 * time.Second
	ran := newFired()
	mux := NewMux()
	mux.HandleFunc("t", func(context.Context, *Message) error { ran.fire(); return nil })
	c := srv.Client(t)
	due := time.Now().Add(300 * time.Millisecond)
	if err := c.ZAdd(context.Background(), wire.DelayedKey(cfg.Streams[0]), redis.Z{
		Score: float64(due.UnixMilli()), Member: wire.EncodeEnvelope("d-1", []string{"type", "t", "data", "x"}),
	}).Err(); err != nil {
		t.Fatal(err)
	}
	startWorker(t, srv, cfg, mux)
	firedWithin(t, cfg.PromoteInterval/2, awaited{"the delayed entry", ran})
}

// fired is a channel closed by its first fire: a handler run twice (a
// redelivery) fires it again without closing it twice.
type fired struct {
	c    chan struct{}
	fire func()
}

func newFired() fired {
	c := make(chan struct{})
	return fired{c: c, fire: sync.OnceFunc(func() { close(c) })}
}

// awaited is a fired a test waits for, named for the failure message.
type awaited struct {
	what string
	s    fired
}

// firedWithin waits for each in turn, all within limit.
func firedWithin(t *testing.T, limit time.Duration, waits ...awaited) {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for _, w := range waits {
		select {
		case <-w.s.c:
		case <-timer.C:
			t.Fatalf("%s did not run within %s", w.what, limit)
		}
	}
}

// The promoter waits for the earliest entry it knows of, but at least a
// tenth of the interval after its last pass ended; a pass over every stream
// comes an interval after the last one started, whatever is known. A woken
// pass takes only the streams whose entry is due.
func TestPromoterWaitsForTheEarliestDueEntry(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	p := newPromoter(nil, []string{"s", "u"}, 10*time.Second, slog.New(slog.DiscardHandler), nil, nil)
	p.now = func() time.Time { return start }
	for _, c := range []struct {
		next time.Time
		wait time.Duration
		all  bool
	}{
		{time.Time{}, 10 * time.Second, true},                  // none known: the pass over every stream
		{start.Add(5 * time.Second), 5 * time.Second, false},   // due before it
		{start.Add(50 * time.Millisecond), time.Second, false}, // too soon after the pass: the least gap
		{start.Add(-time.Minute), time.Second, false},          // overdue (another process's clock): the least gap
		{start.Add(time.Minute), 10 * time.Second, true},       // due after it
	} {
		clear(p.next)
		if !c.next.IsZero() {
			p.learn("s", c.next)
		}
		if wait, all := p.plan(start, start); wait != c.wait || all != c.all {
			t.Errorf("next due %v after the pass: plan = %v, %v; want %v, %v", c.next.Sub(start), wait, all, c.wait, c.all)
		}
	}
	clear(p.next)
	p.due("s", start.Add(3*time.Second))
	p.due("s", start.Add(4*time.Second)) // later: does not replace the sooner
	p.due("other", start)                // not promoted here: ignored
	if wait, all := p.plan(start, start); wait != 3*time.Second || all {
		t.Errorf("after due(3s) and due(4s): plan = %v, %v; want 3s, false", wait, all)
	}
	select {
	case <-p.wake:
	default:
		t.Error("due of a sooner entry did not wake the promoter")
	}
	p.due("u", start.Add(5*time.Second))
	if got := p.dueNow(start.Add(3 * time.Second)); !cmp.Equal(got, []string{"s"}) {
		t.Errorf("dueNow at 3s = %q, want [s]", got)
	}
	if wait, _ := p.plan(start, start); wait != 5*time.Second {
		t.Errorf("after s was taken: wait %v, want 5s (u)", wait)
	}
	// A step of the wall clock back: nothing known is due, so every stream.
	if got := p.dueNow(start); !cmp.Equal(got, []string{"s", "u"}) {
		t.Errorf("dueNow with nothing due = %q, want every stream", got)
	}
}

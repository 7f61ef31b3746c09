package worker

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// attempts records, per OriginID, the attempts a handler saw.
type attempts struct {
	mu   sync.Mutex
	byID map[string][]int
}

func (a *attempts) add(m *Message) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = map[string][]int{}
	}
	a.byID[m.OriginID] = append(a.byID[m.OriginID], m.Attempt)
	return len(a.byID[m.OriginID])
}

// failOnce is a handler that fails each message's first attempt, recording
// every attempt in seen.
func failOnce(seen *attempts) func(context.Context, *Message) error {
	return func(ctx context.Context, m *Message) error {
		if seen.add(m) == 1 {
			return errors.New("try later")
		}
		return nil
	}
}

func (a *attempts) of(id string) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.byID[id]...)
}

// A retry due soon runs again in the worker, as the same entry, its next
// attempt (a delay as the same attempt): nothing goes through the delayed
// set, and the entry is acknowledged once the retry succeeds.
func TestRetryInPlace(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var seen attempts
	var copies sync.Map // IDs of the entries run that were not the one published
	mux := NewMux()
	mux.HandleFunc("x", func(ctx context.Context, m *Message) error {
		if m.ID != m.OriginID {
			copies.Store(m.ID, true)
		}
		if seen.add(m) == 1 {
			return errors.New("try later")
		}
		return nil
	})
	mux.HandleFunc("d", func(ctx context.Context, m *Message) error {
		if m.ID != m.OriginID {
			copies.Store(m.ID, true)
		}
		if seen.add(m) == 1 {
			return Delay(20*time.Millisecond, errors.New("not yet"))
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	var ids []string
	for i := range 20 {
		ids = append(ids, h.publish("type", "x", "data", strconv.Itoa(i)))
	}
	delayed := h.publish("type", "d", "data", "d")
	eventually(t, "every message acknowledged", func() bool {
		return h.outcome("x", OutcomeAcked) == 20 && h.outcome("d", OutcomeAcked) == 1
	})
	for _, id := range ids {
		if got := seen.of(id); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Errorf("entry %s ran as attempts %v, want [1 2]", id, got)
		}
	}
	if got := seen.of(delayed); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Errorf("delayed entry ran as attempts %v, want [1 1]", got)
	}
	if n := h.outcome("x", OutcomeRetried); n != 20 {
		t.Errorf("retried = %d, want 20", n)
	}
	if n := h.outcome("d", OutcomeDelayed); n != 1 {
		t.Errorf("delayed = %d, want 1", n)
	}
	ctx := context.Background()
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want 0", p)
	}
	if n := h.metric("streamworker_promoted_total"); n != 0 {
		t.Errorf("promoted = %v, want nothing through the delayed set", n)
	}
	if n := h.client.XLen(ctx, h.stream).Val(); n != 21 {
		t.Errorf("stream holds %d entries, want the 21 published: no copy added", n)
	}
	copies.Range(func(id, _ any) bool { t.Errorf("a copy ran: %v", id); return true })
}

// A retry due later than WORKER_RETRY_IN_PLACE_MAX, or than a lease period
// after its delivery, goes through the delayed set as a copy; so does every
// retry with WORKER_RETRY_IN_PLACE_MAX=0.
func TestRetryBeyondInPlaceGoesThroughDelayedSet(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, tc := range []struct {
		name   string
		adjust func(*config.Config)
	}{
		{"Off", func(c *config.Config) { c.RetryInPlaceMax = 0 }},
		{"LaterThanMax", func(c *config.Config) {
			c.RetryInPlaceMax, c.RetryBase, c.RetryMax = 5*time.Millisecond, 20*time.Millisecond, 20*time.Millisecond
		}},
		{"LaterThanLease", func(c *config.Config) {
			// A lease period of 250ms: a retry 300-600ms later would need its lease renewed.
			c.ReclaimMinIdle, c.RetryBase, c.RetryMax = time.Second, 600*time.Millisecond, 600*time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, srv)
			tc.adjust(&cfg)
			var seen attempts
			mux := NewMux()
			mux.HandleFunc("x", failOnce(&seen))
			h := startWorker(t, srv, cfg, mux)
			h.publish("type", "x", "data", "d")
			eventually(t, "the retried copy acknowledged", func() bool { return h.outcome("x", OutcomeAcked) == 1 })
			if n := h.metric("streamworker_promoted_total"); n != 1 {
				t.Errorf("promoted = %v, want the one copy", n)
			}
			if n := h.client.XLen(context.Background(), h.stream).Val(); n != 2 {
				t.Errorf("stream holds %d entries, want the original and its copy", n)
			}
		})
	}
}

// At shutdown a retry waiting in place is written to the delayed set, due
// when it would have run, and its entry acknowledged; it is counted once.
func TestShutdownMovesRetriesInPlaceToDelayedSet(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.RetryBase, cfg.RetryMax = 8*time.Second, 8*time.Second // due 4-8s later, inside the lease period of 15s
	cfg.RetryInPlaceMax = 10 * time.Second
	mux := NewMux()
	mux.HandleFunc("x", func(ctx context.Context, m *Message) error { return errors.New("try later") })
	h := startWorker(t, srv, cfg, mux)
	before := time.Now()
	id := h.publish("type", "x", "data", "d")
	eventually(t, "the retry waiting in place", func() bool { return h.metric("streamworker_retries_in_place") == 1 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if p := h.pending(); p != 0 {
		t.Errorf("pending = %d, want the entry acknowledged with its copy written", p)
	}
	zs, err := h.client.ZRangeWithScores(ctx, wire.DelayedKey(h.stream), 0, -1).Result()
	if err != nil || len(zs) != 1 {
		t.Fatalf("delayed set = %v (%v), want one copy", zs, err)
	}
	token, fields, err := wire.DecodeEnvelope(zs[0].Member.(string))
	if err != nil || token != id {
		t.Fatalf("copy of %q (%v), want of %s", token, err, id)
	}
	got := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		got[fields[i]] = fields[i+1]
	}
	if got[wire.FieldAttempt] != "2" || got[wire.FieldOriginID] != id || got[wire.FieldData] != "d" {
		t.Errorf("copy's fields = %v, want attempt 2, origin %s, data d", got, id)
	}
	if due := time.UnixMilli(int64(zs[0].Score)); due.Before(before.Add(4*time.Second)) || due.After(time.Now().Add(8*time.Second)) {
		t.Errorf("copy due at %v, want 4-8s after the failure (%v)", due, before)
	}
	if n, u := h.outcome("x", OutcomeRetried), h.outcome("x", OutcomeUnrecorded); n != 1 || u != 0 {
		t.Errorf("retried = %d, unrecorded = %d; want 1 and 0", n, u)
	}
}

// A retry that falls due while its stream is paused goes to the delayed
// set, and from there into the stream, to wait with the rest; resuming runs
// it.
func TestRetryInPlaceDueWhilePausedWaitsInTheStream(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.RetryBase, cfg.RetryMax = 4*time.Second, 4*time.Second // 2-4s: time to see the pause first (polled every 50ms)
	var seen attempts
	mux := NewMux()
	mux.HandleFunc("x", failOnce(&seen))
	h := startWorker(t, srv, cfg, mux)
	id := h.publish("type", "x", "data", "d")
	eventually(t, "the retry waiting in place", func() bool { return h.metric("streamworker_retries_in_place") == 1 })
	pause(t, h, cfg.Group)
	eventually(t, "the worker to see the pause", func() bool { return h.metric("streamworker_stream_paused") == 1 })
	ctx := context.Background()
	eventually(t, "the retry moved into the stream", func() bool {
		return h.client.XLen(ctx, h.stream).Val() == 2 && h.pending() == 0
	})
	if got := seen.of(id); len(got) != 1 {
		t.Errorf("entry ran %d times while paused, want once", len(got))
	}
	if err := h.client.HDel(ctx, wire.PausedKey(h.stream), cfg.Group).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the copy run and acknowledged", func() bool { return h.outcome("x", OutcomeAcked) == 1 })
	if n := h.metric("streamworker_retries_in_place"); n != 0 {
		t.Errorf("retries in place = %v, want 0", n)
	}
}

// What waits in place is held to inPlaceMost messages and inPlaceBytes
// bytes; after close nothing more waits.
func TestRetriesInPlaceAreBounded(t *testing.T) {
	p := newInPlace("s")
	at := time.Now()
	for i := range inPlaceMost {
		if !p.add(inPlaceRetry{m: &Message{ID: strconv.Itoa(i) + "-0", Stream: "s"}, at: at}) {
			t.Fatalf("retry %d refused, want %d to wait", i, inPlaceMost)
		}
	}
	if p.add(inPlaceRetry{m: &Message{ID: "x-0", Stream: "s"}, at: at}) {
		t.Errorf("retry past %d waits", inPlaceMost)
	}
	q := newInPlace("s")
	if !q.add(inPlaceRetry{m: &Message{ID: "1-0", Stream: "s", size: inPlaceBytes / 2}, at: at}) {
		t.Fatal("first retry refused")
	}
	if q.add(inPlaceRetry{m: &Message{ID: "2-0", Stream: "s", size: inPlaceBytes/2 + 1}, at: at}) {
		t.Errorf("retry past %d bytes waits", inPlaceBytes)
	}
	if due, _ := q.take(at); len(due) != 1 || q.bytes != 0 {
		t.Fatalf("took %d, %d bytes left; want 1 and 0", len(due), q.bytes)
	}
	if len(q.close()) != 0 || q.add(inPlaceRetry{m: &Message{ID: "3-0", Stream: "s"}, at: at}) {
		t.Error("a retry waits after close")
	}
}

// Our own reclaim passes leave a retry in place alone from its failure
// until its handler returns: while it waits for its time, for a handler
// slot (taken from the heap) or for a handler, and while it runs.
func TestReclaimSkipsRetriesInPlace(t *testing.T) {
	cfg := testConfig(t, testredis.Shared(t))
	cfg.Streams = append(cfg.Streams, cfg.Streams[0]+"-other")
	r := newEngine(cfg, nil, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry()))
	s, other := cfg.Streams[0], cfg.Streams[1]
	at := time.Now()
	waiting := &Message{ID: "1-0", Stream: s}
	taken := &Message{ID: "2-0", Stream: s, retried: true}
	r.inPlace[s].add(inPlaceRetry{m: taken, at: at.Add(-time.Second)})
	if due, _ := r.inPlace[s].take(at); len(due) != 1 || due[0].m != taken {
		t.Fatalf("took %v, want 2-0", due)
	}
	r.inPlace[s].add(inPlaceRetry{m: waiting, at: at.Add(time.Hour)})
	r.inPlace[other].add(inPlaceRetry{m: &Message{ID: "3-0", Stream: other}, at: at})
	left := func() []string {
		var entries []reclaim.Entry
		for _, id := range []string{"1-0", "2-0", "3-0"} {
			e := reclaim.Entry{}
			e.ID = id
			entries = append(entries, e)
		}
		var out []string
		for _, e := range r.notSettleWaiting(s, entries) {
			out = append(out, e.ID)
		}
		return out
	}
	if got := left(); len(got) != 1 || got[0] != "3-0" {
		t.Errorf("entries left to run: %v, want 3-0 only", got)
	}
	if n := r.inPlace.len(); n != 3 {
		t.Errorf("retries in place = %d, want 3 (one taken for a slot)", n)
	}
	r.inPlace.forget(taken) // its handler returned
	if got := left(); len(got) != 2 || got[0] != "2-0" {
		t.Errorf("entries left to run: %v, want 2-0 and 3-0", got)
	}
}

// A retry in place sent to the delayed set after all (at shutdown, or due
// while its stream is paused) is written only if its entry is still ours:
// one that waited a lease period is confirmed first, and one another
// consumer claimed meanwhile is left to it, not acknowledged under it. One
// whose entry was trimmed from the stream meanwhile is written as a copy
// all the same: it is all that is left of the message.
func TestRetryInPlaceSettledOnlyWhileOurs(t *testing.T) {
	t.Parallel()
	r, c, ids := settleEngine(t, 3)
	ctx := context.Background()
	s := r.cfg.Streams[0]
	if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: s, Group: r.cfg.Group, Consumer: "c2", Messages: ids[:1]}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XDel(ctx, s, ids[2]).Err(); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-2 * r.leaseEvery()) // both were read two lease periods ago
	var xs []inPlaceRetry
	for _, id := range ids {
		m := &Message{}
		m.fill(s, id, []string{wire.FieldType, "t", wire.FieldData, "d"})
		m.Attempt, m.readAt, m.retried = 2, long, true
		r.inPlace[s].add(inPlaceRetry{m: m, at: time.Now().Add(time.Second), failed: 1, outcome: OutcomeRetried, cause: errors.New("try later")})
	}
	xs = r.inPlace[s].close()
	r.settleInPlace(r.inPlace[s], xs, false)
	r.settleBatch(r.settles.take(false))
	r.settles.sent()
	ext, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: r.cfg.Group, Start: "-", End: "+", Count: 10}).Result()
	if err != nil || len(ext) != 1 || ext[0].ID != ids[0] || ext[0].Consumer != "c2" {
		t.Fatalf("pending = %+v (%v), want only %s, c2's", ext, err, ids[0])
	}
	env, err := c.ZRange(ctx, wire.DelayedKey(s), 0, -1).Result()
	if err != nil || len(env) != 2 {
		t.Fatalf("delayed set = %v (%v), want two copies", env, err)
	}
	var tokens []string
	for _, e := range env {
		token, fields, err := wire.DecodeEnvelope(e)
		if err != nil || !slices.Contains(fields, "2") {
			t.Errorf("copy %q: fields %v (%v), want attempt 2", token, fields, err)
		}
		tokens = append(tokens, token)
	}
	slices.Sort(tokens)
	if !slices.Equal(tokens, ids[1:]) {
		t.Errorf("copies of %v, want of %v", tokens, ids[1:])
	}
	if n := r.inPlace.len(); n != 0 {
		t.Errorf("retries in place = %d, want none", n)
	}
}

// A retry waiting in place is a pending entry: cancelled meanwhile
// (streamctl cancel marks it), it is acknowledged when it falls due,
// without running again.
func TestRetryInPlaceCancelled(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.RetryBase, cfg.RetryMax = 4*time.Second, 4*time.Second // 2-4s: time to mark it first (marks are read once a second)
	var seen attempts
	mux := NewMux()
	mux.HandleFunc("x", func(ctx context.Context, m *Message) error {
		seen.add(m)
		return errors.New("try later")
	})
	h := startWorker(t, srv, cfg, mux)
	id := h.publish("type", "x", "data", "d")
	eventually(t, "the retry waiting in place", func() bool { return h.metric("streamworker_retries_in_place") == 1 })
	mark(t, h.client, h.stream, time.Now(), id)
	eventually(t, "the retry cancelled", func() bool { return h.outcome("x", OutcomeCancelled) == 1 })
	if got := seen.of(id); len(got) != 1 {
		t.Errorf("entry ran %d times, want once", len(got))
	}
	eventually(t, "the entry acknowledged", func() bool { return h.pending() == 0 })
	if n := h.metric("streamworker_retries_in_place"); n != 0 {
		t.Errorf("retries in place = %v, want 0", n)
	}
}

// A retry in place held back for slots longer than the min-idle is leased
// again while it waits: no other consumer can claim it, and it runs here
// once a slot is free.
func TestRetryInPlaceLeasedWhileWaitingForSlot(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency, cfg.ReadAhead = 1, 0
	cfg.ReclaimMinIdle = time.Second                                         // a lease period of 250ms
	cfg.RetryBase, cfg.RetryMax = 100*time.Millisecond, 100*time.Millisecond // due 50-100ms later
	release := make(chan struct{})
	blocking := make(chan struct{})
	var seen attempts
	mux := NewMux()
	c := srv.Client(t)
	mux.HandleFunc("x", func(ctx context.Context, m *Message) error {
		if seen.add(m) == 1 {
			// Read once this attempt's slot is free again, before its retry is due.
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: m.Stream, Values: []string{"type", "block"}}).Err(); err != nil {
				return Permanent(err)
			}
			return errors.New("try later")
		}
		return nil
	})
	mux.HandleFunc("block", func(ctx context.Context, m *Message) error {
		close(blocking)
		<-release
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	id := h.publish("type", "x", "data", "d")
	<-blocking
	failed := time.Now()
	eventually(t, "the retry waiting for the slot", func() bool { return h.metric("streamworker_retries_in_place") == 1 })
	ctx := context.Background()
	// Twice the min-idle: unleased, its entry would be anyone's to claim.
	eventually(t, "two min-idles to pass", func() bool { return time.Since(failed) > 2*cfg.ReclaimMinIdle })
	if got := seen.of(id); len(got) != 1 {
		t.Fatalf("retry ran before the slot was free: attempts %v", got)
	}
	claimed, _, err := h.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: h.stream, Group: cfg.Group, Consumer: "c2", MinIdle: cfg.ReclaimMinIdle, Start: "0", Count: 10,
	}).Result()
	if err != nil || len(claimed) != 0 {
		t.Fatalf("another consumer claimed %v (%v), want nothing: the retry's lease renewed", claimed, err)
	}
	close(release)
	eventually(t, "the retry acknowledged", func() bool { return h.outcome("x", OutcomeAcked) == 1 })
	if got := seen.of(id); len(got) != 2 || got[1] != 2 {
		t.Errorf("attempts %v, want [1 2]", got)
	}
}

// A retry in place runs only once Redis has answered since it failed: a
// read answered since (engine.answers) shows it; otherwise it is confirmed
// first, and while Redis does not answer it is left pending for a reclaim
// pass, its attempt not spent.
func TestRetryInPlaceWaitsForRedisToAnswer(t *testing.T) {
	cfg := testConfig(t, testredis.Shared(t))
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	r := newEngine(cfg, dead, NewMux(), testLogger(t), NewMetrics(prometheus.NewRegistry()))
	s := cfg.Streams[0]
	p := r.inPlace[s]
	add := func(id string) inPlaceRetry {
		x := inPlaceRetry{m: &Message{ID: id, Stream: s, readAt: time.Now()}, at: time.Now(), answers: r.answers.Load()}
		p.add(x)
		return x
	}
	x := add("1-0")
	if got := r.confirmRetries(p, []inPlaceRetry{x}, true); len(got) != 0 {
		t.Errorf("ran %d retries while Redis answered nothing since they failed, want none", len(got))
	}
	if n := p.len(); n != 0 {
		t.Errorf("retries in place = %d, want the unconfirmed one left for a reclaim pass", n)
	}
	y := add("2-0")
	r.answers.Add(1) // a read answered
	if got := r.confirmRetries(p, []inPlaceRetry{y}, true); len(got) != 1 {
		t.Errorf("ran %d retries after Redis answered a read, want 1", len(got))
	}
}

package reclaim

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// slotSink stands in for the runtime's dispatch path: a number of free
// handler slots, and a record of what was delivered.
type slotSink struct {
	mu        sync.Mutex
	free      int
	delivered []string
	isolated  []string
}

func (s *slotSink) Reserve(_ context.Context, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := min(n, s.free)
	s.free -= got
	return got
}

func (s *slotSink) Release(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free += n
}

func (s *slotSink) Isolate(_ string, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isolated = append(s.isolated, ids...)
}

func (s *slotSink) Deliver(_ context.Context, _ string, entries []Entry, reserved int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(entries) > reserved {
		panic("delivered more entries than slots reserved")
	}
	for _, e := range entries {
		s.delivered = append(s.delivered, e.ID)
	}
	s.free += reserved - len(entries) // the delivered ones stay busy
}

type fixture struct {
	t      *testing.T
	c      *redis.Client
	stream string
	opts   Options
	m      *Metrics
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := testredis.Shared(t)
	f := &fixture{t: t, c: srv.Client(t), stream: testredis.Prefix(t) + "s", m: NewMetrics(prometheus.NewRegistry())}
	f.opts = Options{
		Group: "g", Consumer: "me", MinIdle: 20 * time.Millisecond, Interval: time.Second,
		Count: 100, GoneAfter: 50 * time.Millisecond, Streams: []string{f.stream},
	}
	if err := f.c.XGroupCreateMkStream(context.Background(), f.stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) reclaimer(sink Sink) *Reclaimer {
	return New(f.c, f.opts, sink, slog.New(slog.DiscardHandler), f.m, nil)
}

// deliverTo adds n entries and delivers them to consumer, which never
// acknowledges them; it returns their IDs.
func (f *fixture) deliverTo(consumer string, n int) []string {
	f.t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		ids = append(ids, f.c.XAdd(ctx, &redis.XAddArgs{Stream: f.stream, Values: []string{"type", "t", "n", strconv.Itoa(i)}}).Val())
	}
	if err := f.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: consumer, Streams: []string{f.stream, ">"}, Count: int64(n)}).Err(); err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// waitIdle polls until every pending entry has been idle for d.
func (f *fixture) waitIdle(d time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p, _ := f.c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 1000}).Result()
		idle := true
		for _, e := range p {
			idle = idle && e.Idle >= d
		}
		if idle {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	f.t.Fatalf("entries never became idle for %s", d)
}

func TestClaimsIdleEntriesScanningThroughTheCursor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.opts.Count = 3 // many XAUTOCLAIM calls for one pass
	ids := f.deliverTo("dead", 25)
	f.waitIdle(f.opts.MinIdle)
	sink := &slotSink{free: 100}
	res, err := f.reclaimer(sink).runOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Claimed != 25 || !slices.Equal(sink.delivered, ids) {
		t.Errorf("claimed %d, delivered %v; want all 25 in order", res.Claimed, sink.delivered)
	}
	p, _ := f.c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 100}).Result()
	for _, e := range p {
		if e.Consumer != "me" || e.RetryCount != 2 {
			t.Fatalf("pending %s: consumer %s deliveries %d, want me, 2", e.ID, e.Consumer, e.RetryCount)
		}
	}
	if got := testutil.ToFloat64(f.m.Reclaimed.WithLabelValues(f.stream)); got != 25 {
		t.Errorf("reclaimed metric = %v, want 25", got)
	}
}

func TestClaimsNoMoreThanFreeSlots(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.deliverTo("dead", 10)
	f.waitIdle(f.opts.MinIdle)
	sink := &slotSink{free: 4}
	r := f.reclaimer(sink)
	if res, err := r.runOnce(context.Background()); err != nil || res.Claimed != 4 {
		t.Fatalf("first pass claimed %d (%v), want 4 with 4 free slots", res.Claimed, err)
	}
	// Still owned by the dead consumer: not claimed into a local queue.
	if n := f.c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 100, Consumer: "dead"}).Val(); len(n) != 6 {
		t.Errorf("dead consumer still owns %d, want 6", len(n))
	}
	sink.Release(6)
	f.waitIdle(0)
	if res, err := r.runOnce(context.Background()); err != nil || res.Claimed != 6 {
		t.Fatalf("second pass claimed %d (%v), want the other 6", res.Claimed, err)
	}
	if !slices.Equal(sink.delivered, ids) {
		t.Errorf("delivered %v, want %v", sink.delivered, ids)
	}
}

func TestEntriesTrimmedWhilePendingAreCounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.deliverTo("dead", 5)
	ctx := context.Background()
	if err := f.c.XTrimMaxLen(ctx, f.stream, 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.waitIdle(f.opts.MinIdle)
	sink := &slotSink{free: 10}
	res, err := f.reclaimer(sink).runOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 5 || res.Claimed != 0 || len(sink.delivered) != 0 {
		t.Errorf("result %+v delivered %v, want 5 deleted, nothing delivered", res, sink.delivered)
	}
	if p := f.c.XPending(ctx, f.stream, "g").Val(); p.Count != 0 {
		t.Errorf("pending = %d after the pass, want 0", p.Count)
	}
	if got := testutil.ToFloat64(f.m.DeletedWhilePending.WithLabelValues(f.stream)); got != 5 {
		t.Errorf("deleted_while_pending metric = %v, want 5", got)
	}
	if sink.free != 10 {
		t.Errorf("free slots = %d, want all 10 back", sink.free)
	}
}

func TestCleanUpRemovesOnlyGoneConsumersThatOwnNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	// gone: read once, acknowledged everything, no heartbeat.
	for _, id := range f.deliverTo("gone", 1) {
		f.c.XAck(ctx, f.stream, "g", id)
	}
	f.deliverTo("crashed", 2) // gone but owns entries
	f.c.XGroupCreateConsumer(ctx, f.stream, "g", "quiet")
	f.c.Set(ctx, wire.HeartbeatKey(f.stream, "g", "quiet"), "1", time.Minute) // alive, blocked on an empty stream
	f.c.XGroupCreateConsumer(ctx, f.stream, "g", "me")
	deadline := time.Now().Add(10 * time.Second)
	for { // until every consumer looks idle past GoneAfter
		cs := f.c.XInfoConsumers(ctx, f.stream, "g").Val()
		ok := len(cs) == 4
		for _, c := range cs {
			ok = ok && c.Idle >= f.opts.GoneAfter
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("consumers never became idle")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	r := f.reclaimer(&slotSink{})
	removed, err := r.cleanOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, c := range f.c.XInfoConsumers(ctx, f.stream, "g").Val() {
		left = append(left, c.Name)
	}
	slices.Sort(left)
	if removed != 1 || !slices.Equal(left, []string{"crashed", "me", "quiet"}) {
		t.Errorf("removed %d, left %v; want only 'gone' removed", removed, left)
	}
	if got := testutil.ToFloat64(f.m.ConsumersRemoved.WithLabelValues(f.stream)); got != 1 {
		t.Errorf("consumers_removed metric = %v, want 1", got)
	}
}

func TestLeaseRenewsOwnEntriesAndReportsLostOnes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ids := f.deliverTo("me", 3)
	f.waitIdle(30 * time.Millisecond)
	// Another consumer took the second one over.
	f.c.XClaim(ctx, &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: "other", MinIdle: 0, Messages: ids[1:2]})
	leased, err := (Consumer{Client: f.c, Group: "g", Name: "me"}).Lease(ctx, f.stream, ids)
	lost, trimmed, gone := leased.Lost, leased.Trimmed, leased.Gone
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lost, ids[1:2]) || len(trimmed) != 0 || len(gone) != 0 {
		t.Errorf("lost = %v, trimmed = %v, gone = %v; want %v, none, none", lost, trimmed, gone, ids[1:2])
	}
	p := f.c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 10}).Val()
	for _, e := range p {
		switch {
		case e.ID == ids[1] && e.Consumer != "other":
			t.Errorf("lease took %s back from its new owner", e.ID)
		case e.ID != ids[1] && (e.Idle >= 30*time.Millisecond || e.RetryCount != 1):
			t.Errorf("%s: idle %s deliveries %d, want renewed (idle reset, count unchanged)", e.ID, e.Idle, e.RetryCount)
		}
	}
}

func TestLeaveRemovesOnlyAnIdleSelf(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	r := f.reclaimer(&slotSink{})
	if err := r.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	f.deliverTo("me", 1)
	r.Leave(ctx)
	if n := len(f.c.XInfoConsumers(ctx, f.stream, "g").Val()); n != 1 {
		t.Errorf("a consumer that owns an entry left the group")
	}
	if f.c.Exists(ctx, wire.HeartbeatKey(f.stream, "g", "me")).Val() != 0 {
		t.Error("heartbeat left behind")
	}
	p := f.c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 10}).Val()
	f.c.XAck(ctx, f.stream, "g", p[0].ID)
	r.Leave(ctx)
	if n := len(f.c.XInfoConsumers(ctx, f.stream, "g").Val()); n != 0 {
		t.Errorf("an idle consumer stayed in the group after leaving")
	}
}

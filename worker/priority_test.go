package worker

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// preload adds n entries of type typ to stream in pipelined batches.
func preload(t *testing.T, c redis.UniversalClient, stream, typ string, n int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		pipe := c.Pipeline()
		for i := 0; i < 1000 && done < n; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", typ, "data", "x"}})
			done++
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("preloading %s: %v", stream, err)
		}
	}
}

// starts records the order in which handlers start, by stream.
type starts struct {
	mu    sync.Mutex
	order []string
	limit int
	full  chan struct{}
}

func (s *starts) add(stream string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) < s.limit {
		s.order = append(s.order, stream)
		if len(s.order) == s.limit {
			close(s.full)
		}
	}
}

func (s *starts) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// With three streams backlogged and weights 6, 3 and 1, each stream's share
// of the first 30,000 handler starts is within 5 % of its weight's share.
func TestPriorityWeightedShares(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	p := testredis.Prefix(t)
	cfg.Streams = []string{p + "critical", p + "default", p + "low"}
	cfg.Weights = map[string]int{p + "critical": 6, p + "default": 3}
	cfg.LogLevel = "info"
	const total = 30000
	c := srv.Client(t)
	for _, s := range cfg.Streams {
		preload(t, c, s, "job", total)
	}
	rec := &starts{limit: total, full: make(chan struct{})}
	mux := NewMux()
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error {
		rec.add(m.Stream)
		time.Sleep(500 * time.Microsecond) // the work: slots stay contended
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	select {
	case <-rec.full:
	case <-time.After(5 * time.Minute):
		t.Fatalf("only %d handler starts within 5 minutes", len(rec.snapshot()))
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range rec.snapshot() {
		got[s]++
	}
	sum := 0
	for _, s := range cfg.Streams {
		sum += cfg.Weight(s)
	}
	for _, s := range cfg.Streams {
		want := float64(total) * float64(cfg.Weight(s)) / float64(sum)
		dev := math.Abs(float64(got[s])-want) / want
		t.Logf("%s (weight %d): %d starts, want %.0f ± 5 %% (off by %.2f %%)", s, cfg.Weight(s), got[s], want, 100*dev)
		if dev > 0.05 {
			t.Errorf("%s (weight %d) got %d of %d handler starts, want %.0f ± 5 %%", s, cfg.Weight(s), got[s], total, want)
		}
	}
	if v := h.metric("streamworker_stream_slots_total"); v < total {
		t.Errorf("streamworker_stream_slots_total = %v, want at least the %d starts", v, total)
	}
}

// Strict priority: while the higher stream has entries to read, the lower
// one is not served (but for what a read already waiting for it brings); it
// runs once the higher one is drained.
func TestPriorityStrict(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	p := testredis.Prefix(t)
	hi, lo := p+"hi", p+"lo"
	cfg.Streams = []string{lo, hi} // the weight orders them, not the list
	cfg.Weights = map[string]int{hi: 2}
	cfg.Priority = config.PriorityStrict
	cfg.LogLevel = "info"
	const nHi, nLo = 3000, 300
	c := srv.Client(t)
	preload(t, c, hi, "job", nHi)
	rec := &starts{limit: nHi + nLo, full: make(chan struct{})}
	mux := NewMux()
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error {
		rec.add(m.Stream)
		time.Sleep(200 * time.Microsecond)
		return nil
	})
	startWorker(t, srv, cfg, mux)
	eventually(t, "the higher stream to be read", func() bool { return len(rec.snapshot()) >= 100 })
	preload(t, c, lo, "job", nLo)
	select {
	case <-rec.full:
	case <-time.After(3 * time.Minute):
		t.Fatalf("only %d of %d handler starts within 3 minutes", len(rec.snapshot()), nHi+nLo)
	}
	order := rec.snapshot()
	lastHi := 0
	for i, s := range order {
		if s == hi {
			lastHi = i
		}
	}
	early := 0
	var at []int
	for i, s := range order[:lastHi] {
		if s == lo {
			early++
			at = append(at, i)
		}
	}
	t.Logf("lower-stream starts before the last higher one at %v", at)
	t.Logf("%d of %d lower-stream starts came before the last higher-stream start (at %d)", early, nLo, lastHi)
	if early > cfg.Concurrency {
		t.Errorf("%d lower-stream messages started while the higher stream still had entries, want at most %d (a read already waiting)", early, cfg.Concurrency)
	}
}

// Without weights, the semaphore has no priorities: the default path is
// today's first come, first served.
func TestPriorityOffByDefault(t *testing.T) {
	cfg := config.Default()
	cfg.Streams = []string{"a", "b"}
	if p, classes := newPriorities(cfg); p != nil || classes != nil {
		t.Errorf("newPriorities without weights = %v, %v; want none", p, classes)
	}
	cfg.Weights = map[string]int{"a": 1, "b": 1}
	if p, _ := newPriorities(cfg); p != nil {
		t.Errorf("newPriorities with every weight 1 = %v; want none", p)
	}
	cfg.Partitions = 4
	cfg.Weights = map[string]int{"a": 3}
	p, classes := newPriorities(cfg)
	if p == nil || len(classes) != 8 || classes["{a:2}"] != p.classes[0] || classes["{b:3}"] != p.classes[1] {
		t.Errorf("partitions of a and b map to %v, want each to its logical stream's class", classes)
	}
}

// Weights apply to a partitioned stream as a whole, on a cluster client:
// two logical streams of 4 partitions each, weights 3 and 1, backlogged on
// every partition, share the first 12,000 handler starts within 5 % of 3:1.
func TestPriorityWeightedPartitionedOnCluster(t *testing.T) {
	t.Parallel()
	srv, cc := testredis.OneNodeCluster(t)
	cfg := partitionedConfig(t, srv, 4, "c1")
	p := testredis.Prefix(t)
	hi, lo := p+"hi", p+"lo"
	cfg.Streams = []string{hi, lo}
	cfg.Weights = map[string]int{hi: 3}
	cfg.Concurrency = 8
	const total, each = 12000, 12000
	for _, s := range cfg.Streams {
		for _, ps := range wire.PartitionStreams(s, cfg.Partitions) {
			preload(t, cc, ps, "job", each/cfg.Partitions)
		}
	}
	rec := &starts{limit: total, full: make(chan struct{})}
	mux := NewMux()
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error {
		rec.add(m.Stream[1:strings.LastIndexByte(m.Stream, ':')]) // {S:i} → S
		time.Sleep(500 * time.Microsecond)                        // the work: slots stay contended
		return nil
	})
	h := startWorker(t, srv, cfg, mux, WithRedis(cc))
	select {
	case <-rec.full:
	case <-time.After(5 * time.Minute):
		t.Fatalf("only %d handler starts within 5 minutes", len(rec.snapshot()))
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range rec.snapshot() {
		got[s]++
	}
	for s, share := range map[string]float64{hi: 0.75, lo: 0.25} {
		want := total * share
		dev := math.Abs(float64(got[s])-want) / want
		t.Logf("%s: %d starts, want %.0f ± 5 %% (off by %.2f %%)", s, got[s], want, 100*dev)
		if dev > 0.05 {
			t.Errorf("%s got %d of %d handler starts, want %.0f ± 5 %%", s, got[s], total, want)
		}
	}
}

// An idle stream saves up no credit, and reserves no slots; a strict
// priority holds slots only while a higher stream has entries to read.
func TestPriorityPick(t *testing.T) {
	a := &slotClass{name: "a", weight: 1, rank: 0}
	b := &slotClass{name: "b", weight: 1, rank: 1}
	now := time.Now()
	p := &priorities{classes: []*slotClass{a, b}, now: func() time.Time { return now }}
	a.waiting = 1
	p.grant(a, 100) // b had nothing to read meanwhile
	a.granted = now
	p.activate(b)
	if b.pass != a.pass {
		t.Errorf("b woke from idle with pass %v, want a's %v: no credit saved up while idle", b.pass, a.pass)
	}
	ws := []*slotWaiter{{class: a}, {class: b}}
	b.waiting = 1
	p.grant(b, 1)
	if i := p.pick(ws); i != 0 {
		t.Errorf("weighted pick = %d, want a (fewer slots per weight)", i)
	}
	if i := p.pick(append([]*slotWaiter{{class: b}}, &slotWaiter{})); i != 1 {
		t.Errorf("pick = %d, want the reclaimer's waiter (no class) first", i)
	}

	p.strict = true
	a.waiting, a.backlogged = 0, 1
	if i := p.pick(ws[1:]); i != -1 {
		t.Errorf("strict pick with a higher stream backlogged between reads = %d, want the slots held (-1)", i)
	}
	if p.mayTake(b) {
		t.Error("strict: b may take free slots while a has entries to read")
	}
	a.backlogged = 0
	if i := p.pick(ws[1:]); i != 0 {
		t.Errorf("strict pick once a is drained = %d, want b", i)
	}
	if !p.mayTake(nil) {
		t.Error("the reclaimer may not take slots")
	}
	// The hold is for a read on its way, not for a read waiting in Redis.
	a.backlogged = 1
	if d := p.heldFor(b); d != strictHoldFor {
		t.Errorf("held for %v right after a's grant, want %v", d, strictHoldFor)
	}
	now = now.Add(strictHoldFor)
	if i := p.pick(ws[1:]); i != 0 {
		t.Errorf("strict pick %v after a's grant = %d, want b: the hold has lapsed", strictHoldFor, i)
	}
}

// Slots held back for a stream's read are let go when the hold lapses,
// even if no slot is released meanwhile.
func TestSemaphoreHoldLapses(t *testing.T) {
	a := &slotClass{name: "a", weight: 1, rank: 0}
	b := &slotClass{name: "b", weight: 1, rank: 1}
	s := newSemaphore(4)
	s.prio = &priorities{classes: []*slotClass{a, b}, strict: true, now: time.Now}
	s.backlog(a, true)
	if n := s.acquireFor(t.Context(), a, 1, 2, 0, nil); n != 2 { // a's read is on its way now
		t.Fatalf("a got %d, want 2", n)
	}
	if n := s.acquireFor(t.Context(), b, 1, 2, 0, nil); n != 2 {
		t.Fatalf("b got %d once the hold for a lapsed, want the 2 free", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		s.hold.Stop()
	}
}

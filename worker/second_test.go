package worker

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
)

// withSecondReads counts the reads of the stream's second fetcher
// (fetchLoop) and the entries they brought.
func withSecondReads(reads, entries *atomic.Int64) Option {
	return func(o *options) {
		o.tune = append(o.tune, func(r *engine) {
			r.secondRead = func(got int) { reads.Add(1); entries.Add(int64(got)) }
		})
	}
}

// A backlog of small entries is read by the stream's two fetchers: the
// first's full read wakes the second, which reads without BLOCK until the
// stream is drained. Every entry runs once and is acknowledged.
func TestSecondFetcherReadsABacklog(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 64
	cfg.LogLevel = "info"
	const n = 5000
	publishBacklog(t, srv, cfg.Streams[0], n, "fast")
	var reads, entries atomic.Int64
	var ran [n]atomic.Int32
	mux := NewMux()
	mux.HandleFunc("fast", func(_ context.Context, m *Message) error {
		i, err := strconv.Atoi(string(m.Data))
		if err != nil || i < 0 || i >= n {
			t.Errorf("message %s has data %q, want an index below %d", m.ID, m.Data, n)
			return nil
		}
		ran[i].Add(1)
		return nil
	})
	h := startWorker(t, srv, cfg, mux, withSecondReads(&reads, &entries), withLoneOff(0))
	eventually(t, "every message acknowledged", func() bool { return h.outcome("fast", OutcomeAcked) == n && h.pending() == 0 })
	if entries.Load() == 0 {
		t.Errorf("the second fetcher read nothing of a backlog of %d (%d reads)", n, reads.Load())
	}
	wrong := 0
	for i := range ran {
		if got := ran[i].Load(); got != 1 && wrong < 10 {
			wrong++
			t.Errorf("message %d ran %d times, want once", i, got)
		}
	}
}

// On a quiet stream the second fetcher does not read: messages that come
// one at a time are the first fetcher's blocking reads, none of them full
// without BLOCK.
func TestSecondFetcherRestsOnAQuietStream(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var reads, entries atomic.Int64
	handled := make(chan struct{}, 1)
	mux := NewMux()
	mux.HandleFunc("t", func(context.Context, *Message) error {
		handled <- struct{}{}
		return nil
	})
	h := startWorker(t, srv, cfg, mux, withSecondReads(&reads, &entries))
	for i := range 20 {
		h.publish("type", "t")
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d of 20, published alone, not handled within 10s", i+1)
		}
	}
	if got := reads.Load(); got != 0 {
		t.Errorf("the second fetcher read %d times (%d entries) on a stream of lone messages, want never", got, entries.Load())
	}
}

// A second fetcher reads only while two reads of WORKER_FETCH_COUNT entries
// of the size recent ones had fit in one read budget together, and not
// before an entry's size is known.
func TestPairable(t *testing.T) {
	cfg := config.Default()
	cfg.FetchCount = 256
	cfg.MaxMessageBytes = 1 << 20 // the budget is minReadBudget, 4 MiB
	f := &fetcher{r: &engine{cfg: cfg}}
	for _, c := range []struct {
		perEntry int
		want     bool
	}{
		{0, false},      // not known yet
		{100, true},     // 50 KiB for two reads
		{8 << 10, true}, // 4 MiB: the budget
		{8<<10 + 1, false},
		{64 << 10, false},
	} {
		f.sizes.perEntry = c.perEntry
		if got := f.pairable(); got != c.want {
			t.Errorf("entries of %d bytes, WORKER_FETCH_COUNT 256, budget %d: pairable = %v, want %v", c.perEntry, f.r.readBudget(), got, c.want)
		}
	}
	cfg.MaxMessageBytes = 16 << 20 // one entry may be larger: the budget is 16 MiB
	f.r.cfg = cfg
	f.sizes.perEntry = 32 << 10
	if !f.pairable() {
		t.Errorf("entries of 32 KiB, budget 16 MiB: not pairable, want pairable (two reads of 8 MiB)")
	}
}

// A word left in the wake channel while the second fetcher read is dropped
// when it rests: its size estimate is older than the reads since (entries
// of 13 bytes, where the second has since read 64 KiB ones), and the second
// waits for the first fetcher's next full read instead.
func TestSecondFetcherDropsAStaleWake(t *testing.T) {
	f := &fetcher{s: &streamState{wake: make(chan readSizer, 1)}, second: true, idle: true}
	f.sizes.perEntry = 64 << 10
	f.s.wake <- readSizer{perEntry: 13} // sent while it read
	woke := make(chan bool, 1)
	go func() { woke <- f.rest(context.Background()) }()
	f.s.wake <- readSizer{perEntry: 100} // the first fetcher's next full read
	if !<-woke {
		t.Fatal("rest = false, want true: woken")
	}
	if f.sizes.perEntry != 100 {
		t.Errorf("woken with an estimate of %d bytes an entry, want 100 (the word sent after it rested, not the one left from before)", f.sizes.perEntry)
	}
	if f.idle {
		t.Error("idle after waking, want reading")
	}
}

// Only a stream whose batches may run on its fetcher has a second one: not
// with priorities (a stream's reads take its share of the slots in turn),
// not on a Redis Cluster (its reads are not parsed raw), and a partition's
// fetcher never has one.
func TestSecondFetcherOnlyWhereBatchesRunOnTheFetcher(t *testing.T) {
	seconds := func(cfg config.Config, client redis.UniversalClient) (n int) {
		r := newEngine(cfg, client, NewMux(), slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
		for _, s := range r.streams {
			if s.second != nil {
				n++
				if s.wake == nil || !slices.Contains(r.workers, s.second) {
					t.Errorf("stream %s has a second fetcher's worker state without a wake channel or not among the engine's workers", s.name)
				}
			}
		}
		return n
	}
	cfg := config.Default()
	cfg.Streams = []string{"a", "b"}
	if got := seconds(cfg, nil); got != 2 {
		t.Errorf("two streams without priorities: %d second fetchers, want 2", got)
	}
	cfg.Weights = map[string]int{"a": 1, "b": 1}
	if got := seconds(cfg, nil); got != 2 {
		t.Errorf("two streams of weight 1 (no priorities): %d second fetchers, want 2", got)
	}
	cfg.Weights = map[string]int{"a": 3}
	if got := seconds(cfg, nil); got != 0 {
		t.Errorf("two streams with priorities: %d second fetchers, want none", got)
	}
	cfg.Weights, cfg.Priority = nil, config.PriorityStrict
	if got := seconds(cfg, nil); got != 0 {
		t.Errorf("two streams in strict order: %d second fetchers, want none", got)
	}
	cfg.Priority = config.Default().Priority
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	if got := seconds(cfg, cluster); got != 0 {
		t.Errorf("two streams on a Redis Cluster: %d second fetchers, want none", got)
	}
	cfg.Partitions = 4
	if got := seconds(cfg, nil); got != 0 {
		t.Errorf("two partitioned streams: %d second fetchers, want none (a partition's fetcher has none)", got)
	}
}

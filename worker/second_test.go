package worker

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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

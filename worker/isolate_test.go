package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// deliverTimes adds one entry per value of data, and delivers them all to
// consumer n times, as n runs of a worker that died holding them would.
func deliverTimes(t *testing.T, c *redis.Client, stream, group, consumer string, n int, data ...string) []string {
	t.Helper()
	ctx := context.Background()
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range data {
		ids = append(ids, c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", d}}).Val())
	}
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: int64(len(ids))}).Err(); err != nil {
		t.Fatal(err)
	}
	for range n - 1 {
		if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: group, Consumer: consumer, Messages: ids}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, c, stream, group)
	return ids
}

// A crash charges a delivery to every entry the process held. Entries held
// beside a message that crashes every worker must not be dead-lettered with
// it: once delivered twice without finishing, they run one at a time, and
// only the one running is charged.
func TestSuspectsRunOneAtATimeAndAreChargedOnlyWhenTheyRun(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 3
	ctx := context.Background()
	c := srv.Client(t)
	stream := cfg.Streams[0]
	// Two runs of c1 crashed holding these: the poison message and six
	// entries read beside it. A third crash was the poison's alone.
	innocent := deliverTimes(t, c, stream, cfg.Group, cfg.Consumer, 2, "i1", "i2", "i3", "i4", "i5", "i6")
	poison := deliverTimes(t, c, stream, cfg.Group, cfg.Consumer, 3, "poison")[0]
	for i := range 20 {
		c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t", "data", fmt.Sprint("fresh", i)}})
	}

	var (
		mu       sync.Mutex
		running  int
		suspects int // suspects running
		problems []string
		attempts = map[string]int{}
	)
	var handled atomic.Int32
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		d := string(m.Data)
		suspect := strings.HasPrefix(d, "i")
		mu.Lock()
		running++
		if suspect {
			suspects++
		}
		if suspects > 1 {
			problems = append(problems, fmt.Sprintf("%s ran beside another suspect (%d suspects running)", d, suspects))
		}
		attempts[d] = m.Attempt
		mu.Unlock()
		if suspect { // the suspects not run yet have not been charged for this one
			p := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: cfg.Group, Start: "-", End: "+", Count: 100, Consumer: cfg.Consumer}).Val()
			for _, e := range p {
				if want := map[bool]int64{true: 3, false: 2}[e.ID == poison]; e.ID != m.ID && e.RetryCount > want {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("while %s ran, %s had %d deliveries", d, e.ID, e.RetryCount))
					mu.Unlock()
				}
			}
		}
		mu.Lock()
		running--
		if suspect {
			suspects--
		}
		mu.Unlock()
		handled.Add(1)
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	// The abandoned counter is added to after the dead-letter script acked
	// the poison, so pending can reach 0 first.
	eventually(t, "everything but the poison handled, the poison counted abandoned", func() bool {
		return handled.Load() == 26 && h.pending() == 0 && h.metric("streamworker_abandoned_total") >= 1
	})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for i := range innocent {
		if got := attempts[fmt.Sprint("i", i+1)]; got != 3 {
			t.Errorf("i%d ran at attempt %d, want 3 (two crashed deliveries and this one)", i+1, got)
		}
	}
	if _, ran := attempts["poison"]; ran {
		t.Error("the poison message ran again")
	}
	dlq := h.dlq()
	if len(dlq) != 1 || dlq[0].Values[wire.FieldOriginID] != poison || !strings.Contains(dlq[0].Values[wire.FieldError].(string), "abandoned") {
		t.Errorf("dead letters = %v, want only the poison message, abandoned", dlq)
	}
	if got := h.metric("streamworker_abandoned_total"); got != 1 {
		t.Errorf("streamworker_abandoned_total = %v, want 1", got)
	}
}

// At start a consumer resumes its own pending entries while its reclaimer
// may claim the same ones (they are idle past the min-idle): each must run
// once.
func TestOwnPendingEntriesRunOnceWhenTheReclaimerFindsThemToo(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 10 * time.Millisecond
	c := srv.Client(t)
	var data []string
	for i := range 60 {
		data = append(data, fmt.Sprint("old", i))
	}
	deliverTimes(t, c, cfg.Streams[0], cfg.Group, cfg.Consumer, 1, data...)
	eventually(t, "the entries claimable", func() bool { // polling with a deadline
		p := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: cfg.Streams[0], Group: cfg.Group, Start: "-", End: "+", Count: 100}).Val()
		return len(p) == 60 && p[len(p)-1].Idle >= cfg.ReclaimMinIdle
	})
	var seen counter
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error {
		seen.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "all handled", func() bool { return seen.total() >= 60 && h.pending() == 0 })
	for _, d := range data {
		if n := seen.get(d); n != 1 {
			t.Errorf("%s handled %d times, want once", d, n)
		}
	}
}

// A suspect an ordered partition's replay runs itself leaves the queue, so
// that the isolate loop does not run it again; the others stay, in order.
func TestUnqueueSuspect(t *testing.T) {
	t.Parallel()
	r := &engine{suspects: suspects{wake: make(chan struct{}, 1), queued: map[suspect]bool{}}}
	r.isolate("s", []string{"1-0", "2-0", "3-0"})
	r.unqueueSuspect("s", "2-0")
	r.unqueueSuspect("s", "9-0")     // not queued: nothing happens
	r.unqueueSuspect("other", "1-0") // another stream's
	var got []string
	for {
		s, ok := r.nextSuspect()
		if !ok {
			break
		}
		got = append(got, s.stream+" "+s.id)
	}
	if want := []string{"s 1-0", "s 3-0"}; !slices.Equal(got, want) {
		t.Errorf("queue after unqueueing s 2-0 = %v, want %v", got, want)
	}
	r.isolate("s", []string{"2-0"})
	if s, ok := r.nextSuspect(); !ok || s.id != "2-0" {
		t.Errorf("2-0 queued again = %v %t, want it queued", s, ok)
	}
}

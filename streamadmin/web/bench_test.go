package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// makeStreams creates n streams, each with a group, a consumer with a
// pending entry, a dead letter and a delayed entry, in one pipeline.
func makeStreams(t testing.TB, c redis.Cmdable, n int) {
	t.Helper()
	ctx := context.Background()
	pipe := c.Pipeline()
	for i := range n {
		s := "stream-" + strconv.Itoa(i)
		for range 3 {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"type", "t", "data", "{}"}})
		}
		pipe.XGroupCreate(ctx, s, "workers", "0")
		pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "pod-0", Streams: []string{s, ">"}, Count: 1})
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(s), Values: []string{"type", "t", "error", "e"}})
		pipe.ZAdd(ctx, wire.DelayedKey(s), redis.Z{Score: 1, Member: "m"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// roundTrips counts what a client sends: each command alone, and each
// pipeline as one.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// The overview costs a fixed number of round trips, however many streams
// there are: its per-stream queries are pipelined.
func TestOverviewRoundTripsPerStreamCount(t *testing.T) {
	t.Parallel()
	trips := map[int]int64{}
	partitioned := map[int]int64{} // as many partitioned streams more, paused
	for _, n := range []int{5, 60} {
		srv := testredis.Start(t)
		c := srv.Client(t)
		makeStreams(t, c, n)
		// Pauses: the overview's Paused column.
		for i := 0; i < n; i += 2 {
			if err := c.HSet(context.Background(), wire.PausedKey("stream-"+strconv.Itoa(i)), "workers", "1").Err(); err != nil {
				t.Fatal(err)
			}
		}
		counter := &roundTrips{}
		c.AddHook(counter)
		w, err := New(Options{Client: c})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET / = %d\n%s", rec.Code, rec.Body)
		}
		trips[n] = counter.n.Load()
		if !strings.Contains(rec.Body.String(), `<span class="tag warn">workers</span>`) {
			t.Fatalf("the overview shows no pause\n%s", rec.Body)
		}
		// Partitioned streams: their pauses are their logical names'.
		pipe := c.Pipeline()
		for i := range n {
			logical := "clicks-" + strconv.Itoa(i)
			for p := range 2 {
				pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: wire.PartitionStream(logical, p), Values: []string{"type", "t"}})
			}
			pipe.HSet(context.Background(), wire.PausedKey(logical), wire.PauseAllGroups, "1")
		}
		if _, err := pipe.Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		counter.n.Store(0)
		rec = httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `<span class="tag warn">all groups</span>`) != n {
			t.Fatalf("GET / = %d, want %d partitioned streams paused for all groups\n%s", rec.Code, n, rec.Body)
		}
		partitioned[n] = counter.n.Load()
	}
	t.Logf("round trips by number of streams: %v; with as many partitioned streams more: %v", trips, partitioned)
	if trips[5] != trips[60] || trips[5] > 8 {
		t.Errorf("round trips of the overview: %v by number of streams; want the same small number", trips)
	}
	if partitioned[5] != partitioned[60] || partitioned[5] > trips[5]+1 {
		t.Errorf("round trips of the overview with partitioned streams: %v by number of streams; want the same, at most one more than %v", partitioned, trips)
	}
}

// BenchmarkOverview500 renders the overview of 500 streams (each with a
// group, a consumer, a pending entry, a dead letter and a delayed entry)
// from a real Redis on loopback. docs/web.md has the numbers.
func BenchmarkOverview500(b *testing.B) {
	srv := testredis.Start(b)
	c := srv.Client(b)
	makeStreams(b, c, 500)
	w, err := New(Options{Client: c})
	if err != nil {
		b.Fatal(err)
	}
	if err := w.sampler.runOnce(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET / = %d", rec.Code)
		}
	}
}

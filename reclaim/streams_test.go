package reclaim

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// brokenStreams adds, before the fixture's stream, one key that is not a
// stream and one stream whose group was deleted, and returns the first.
func (f *fixture) brokenStreams() string {
	f.t.Helper()
	ctx := context.Background()
	wrongType, noGroup := f.stream+"-wrongtype", f.stream+"-nogroup"
	if err := f.c.Set(ctx, wrongType, "not a stream", 0).Err(); err != nil {
		f.t.Fatal(err)
	}
	if err := f.c.XGroupCreateMkStream(ctx, noGroup, "g", "0").Err(); err != nil {
		f.t.Fatal(err)
	}
	if err := f.c.XGroupDestroy(ctx, noGroup, "g").Err(); err != nil {
		f.t.Fatal(err)
	}
	f.opts.Streams = []string{wrongType, noGroup, f.stream}
	return wrongType
}

func TestOneStreamFailingDoesNotStopClaimsOnTheOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := f.brokenStreams()
	ids := f.deliverTo("dead", 5)
	f.waitIdle(f.opts.MinIdle)
	sink := &slotSink{free: 10}
	res, err := f.reclaimer(sink).runOnce(context.Background())
	if res.Claimed != 5 || !slices.Equal(sink.delivered, ids) {
		t.Errorf("claimed %d, delivered %v; want the 5 of the stream that works", res.Claimed, sink.delivered)
	}
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("runOnce error = %v, want the WRONGTYPE error naming %s", err, bad)
	}
	if got := testutil.ToFloat64(f.m.Failures.WithLabelValues(bad)); got != 1 {
		t.Errorf("failures of %s = %v, want 1", bad, got)
	}
	if got := testutil.CollectAndCount(f.m.Failures); got != 1 {
		t.Errorf("failure series = %d, want 1 (a deleted group is recreated by the fetcher, not a failure)", got)
	}
	if sink.free != 5 {
		t.Errorf("free slots = %d, want 5: the failed stream's reservation is released", sink.free)
	}
}

func TestOneStreamFailingDoesNotStopCleanUpOnTheOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := f.brokenStreams()
	ctx := context.Background()
	f.deliverTo("gone", 1)
	f.c.XAck(ctx, f.stream, "g", f.c.XRange(ctx, f.stream, "-", "+").Val()[0].ID)
	f.waitConsumerIdle("gone", f.opts.GoneAfter)
	removed, err := f.reclaimer(&slotSink{}).cleanOnce(ctx)
	if removed != 1 {
		t.Errorf("removed %d consumers, want the gone one of the stream that works", removed)
	}
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("cleanOnce error = %v, want one naming %s", err, bad)
	}
	if got := testutil.ToFloat64(f.m.Failures.WithLabelValues(bad)); got != 1 {
		t.Errorf("failures of %s = %v, want 1", bad, got)
	}
}

// Run logs a stream's failure once per kind of pass, naming the stream,
// while it lasts, and claims on the other streams meanwhile.
func TestRunLogsAFailingStreamOnceAndGoesOn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := f.brokenStreams()
	f.opts.Interval = 10 * time.Millisecond
	ids := f.deliverTo("dead", 3)
	var logs syncBuffer
	sink := &slotSink{free: 10}
	r := New(f.c, f.opts, sink, slog.New(slog.NewTextHandler(&logs, nil)), f.m, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !(sink.deliveredCount() == len(ids) && testutil.ToFloat64(f.m.Failures.WithLabelValues(bad)) >= 3) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("delivered %d of %d, %v failures of %s; logs:\n%s", sink.deliveredCount(), len(ids),
				testutil.ToFloat64(f.m.Failures.WithLabelValues(bad)), bad, logs.String())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	// Repaired: the key is gone, and the fetcher would create the stream.
	if err := f.c.Del(context.Background(), bad).Err(); err != nil {
		t.Fatal(err)
	}
	for !(strings.Contains(logs.String(), `msg="claiming idle entries works again on a stream" component=reclaim stream=`+bad) &&
		strings.Contains(logs.String(), `msg="cleaning up gone consumers works again on a stream" component=reclaim stream=`+bad)) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no recovery logged for %s; logs:\n%s", bad, logs.String())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	var lines []string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Errorf("error lines %q, want two: claiming and cleaning up failed", lines)
	}
	for _, l := range lines {
		if !strings.Contains(l, "stream="+bad) || !strings.Contains(l, "WRONGTYPE") {
			t.Errorf("error line %q, want it to name stream=%s and the error", l, bad)
		}
	}
}

func (s *slotSink) deliveredCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.delivered)
}

// waitConsumerIdle polls until consumer has been idle for d.
func (f *fixture) waitConsumerIdle(consumer string, d time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cs, _ := f.c.XInfoConsumers(context.Background(), f.stream, "g").Result()
		for _, c := range cs {
			if c.Name == consumer && c.Idle >= d {
				return
			}
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	f.t.Fatalf("consumer %s never became idle for %s", consumer, d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

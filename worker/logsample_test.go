package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

// The sampler lets the first lines of each stream, type and outcome through
// in each second, counts the others, and hands their count to the next line
// it lets through. A type no handler has shares the "other" label's lines,
// so producers' types cannot grow its map, and a wall clock that steps back
// starts a new window.
func TestLogSamplerKeepsAFewLinesASecondOfEachKind(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // pure time arithmetic: nothing is written anywhere
	s := newLogSampler(func(typ string) string {
		if typ == "known" {
			return typ
		}
		return TypeLabelOther
	})
	s.now = func() time.Time { return at }
	allow := func(stream, typ, outcome string) (bool, int) { return s.allow(stream, typ, outcome) }

	for i := range failLogBurst {
		if ok, skipped := allow("s", "known", OutcomeRetried); !ok || skipped != 0 {
			t.Fatalf("line %d of the second: allow = %v, %d; want true, 0", i+1, ok, skipped)
		}
	}
	for range 5 {
		if ok, _ := allow("s", "known", OutcomeRetried); ok {
			t.Fatalf("a line past %d in a second was let through", failLogBurst)
		}
	}
	// Other kinds have lines of their own.
	for _, k := range [][3]string{{"s", "known", OutcomeDead}, {"s2", "known", OutcomeRetried}, {"s", "a-producers-type", OutcomeRetried}} {
		if ok, _ := allow(k[0], k[1], k[2]); !ok {
			t.Errorf("the first line of %v was not let through", k)
		}
	}
	for i := range 20 { // the first one above took one of the "other" label's
		allow("s", fmt.Sprintf("type-%d", i), OutcomeRetried)
	}
	if n := len(s.kinds); n != 4 {
		t.Errorf("%d kinds tracked, want 4 (producers' types share one)", n)
	}

	at = at.Add(failLogEvery)
	if ok, skipped := allow("s", "known", OutcomeRetried); !ok || skipped != 5 {
		t.Errorf("the first line of the next second: allow = %v, %d; want true, 5 (the lines left out)", ok, skipped)
	}
	if ok, skipped := allow("s", "known", OutcomeRetried); !ok || skipped != 0 {
		t.Errorf("the second line of the next second: allow = %v, %d; want true, 0", ok, skipped)
	}
	if ok, skipped := allow("s", "x", OutcomeRetried); !ok || skipped != 11 {
		t.Errorf("the other label's first line of the next second: allow = %v, %d; want true, 11", ok, skipped)
	}

	for range failLogBurst {
		allow("s2", "known", OutcomeRetried)
	}
	at = at.Add(-time.Hour) // the wall clock stepped back
	if ok, _ := allow("s2", "known", OutcomeRetried); !ok {
		t.Errorf("after the clock stepped back, lines stay held back")
	}
}

// A handler that fails every message logs a few retry lines a second, not
// one a message; every retry is counted, and the first line of the next
// second says how many were left out.
func TestFailuresAreLoggedAFewASecond(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.RetryBase, cfg.RetryMax = time.Hour, time.Hour // the retries stay in the delayed set
	mux := NewMux()
	mux.HandleFunc("t", func(ctx context.Context, m *Message) error { return fmt.Errorf("dependency down") })
	logs := &syncBuffer{}
	base := time.Now()
	var offset atomic.Int64
	clock := func(r *engine) { r.failLogs.now = func() time.Time { return base.Add(time.Duration(offset.Load())) } }
	h := startWorker(t, srv, cfg, mux, WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		func(o *options) { o.tune = append(o.tune, clock) })
	const n = 3 * failLogBurst
	for range n {
		h.publish("type", "t")
	}
	eventually(t, "every message to fail once", func() bool { return h.outcome("t", OutcomeRetried) == n })
	lines := func() int { return strings.Count(logs.String(), "retry scheduled") }
	if got := lines(); got != failLogBurst {
		t.Errorf("%d retry lines for %d retries in a second, want %d", got, n, failLogBurst)
	}
	offset.Store(int64(failLogEvery))
	h.publish("type", "t")
	eventually(t, "the next message to fail", func() bool { return h.outcome("t", OutcomeRetried) == n+1 })
	if got := lines(); got != failLogBurst+1 {
		t.Errorf("%d retry lines after the next second's, want %d", got, failLogBurst+1)
	}
	if want := fmt.Sprintf("not_logged=%d", n-failLogBurst); !strings.Contains(logs.String(), want) {
		t.Errorf("the next second's line does not say %s:\n%s", want, logs.String())
	}
}

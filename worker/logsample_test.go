package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
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
	var told toldCounts
	s := newLogSampler(func(typ string) string {
		if typ == "known" {
			return typ
		}
		return TypeLabelOther
	}, told.add)
	s.now = func() time.Time { return at }
	defer s.stop()
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
	if got := told.all(); len(got) != 0 {
		t.Errorf("counts told with no window ended: %v", got)
	}
}

// toldCounts records what a sampler tells of the lines it left out; its
// timer may tell from a goroutine of its own.
type toldCounts struct {
	mu   sync.Mutex
	told []string
}

func (c *toldCounts) add(k labelKey, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.told = append(c.told, fmt.Sprintf("%s/%s/%s: %d", k.stream, k.typ, k.outcome, n))
}

func (c *toldCounts) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.told)
}

// Lines left out of a second no line of their kind follows are told of in
// a line of their own when the second ends (flush, which the sampler's
// timer calls), once; at shutdown (stop) every count still untold is, and
// nothing is after it.
func TestLogSamplerTellsWhatItLeftOut(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // pure time arithmetic: nothing is written anywhere
	var told toldCounts
	s := newLogSampler(func(typ string) string { return typ }, told.add)
	s.now = func() time.Time { return at }
	tells := told.all
	for range failLogBurst + 3 {
		s.allow("s", "t", OutcomeDead)
	}
	s.mu.Lock()
	armed := s.armed
	s.mu.Unlock()
	if !armed {
		t.Errorf("lines were left out, and no timer is set to tell of them")
	}
	s.flush()
	if got := tells(); len(got) != 0 {
		t.Errorf("told before the second ended: %v", got)
	}
	at = at.Add(failLogEvery / 2)
	for range failLogBurst + 2 { // another kind, in a window that ends later
		s.allow("s", "t", OutcomeRetried)
	}
	at = at.Add(failLogEvery / 2)
	s.flush()
	if got, want := tells(), []string{"s/t/dead: 3"}; !slices.Equal(got, want) {
		t.Errorf("told %v at the end of the first window, want %v", got, want)
	}
	s.flush()
	if got := tells(); len(got) != 1 {
		t.Errorf("told again: %v", got)
	}
	s.stop()
	if got, want := tells(), []string{"s/t/dead: 3", "s/t/retried: 2"}; !slices.Equal(got, want) {
		t.Errorf("told %v at shutdown, want %v", got, want)
	}
	s.allow("s", "t", OutcomeRetried)
	s.flush()
	s.stop()
	if got := tells(); len(got) != 2 {
		t.Errorf("told after shutdown: %v", got)
	}
}

// A handler that fails every message logs a few retry lines a second, not
// one a message; every retry is counted, the first line of the next second
// (or one of its own, if the sampler's timer fires first) says how many
// were left out, and the shutdown tells of those left out after it.
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
	// Said by the next second's line, or by a line of its own if the
	// sampler's timer fired first.
	if want := fmt.Sprintf("not_logged=%d", n-failLogBurst); strings.Count(logs.String(), want) != 1 {
		t.Errorf("the log does not say %s once:\n%s", want, logs.String())
	}
	// Three more than the second's lines, then shutdown: it tells of them.
	for range failLogBurst + 2 {
		h.publish("type", "t")
	}
	eventually(t, "those messages to fail", func() bool { return h.outcome("t", OutcomeRetried) == n+failLogBurst+3 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{`msg="failures not logged"`, "stream=" + h.stream, "type=t", "outcome=retried", "not_logged=3"}
	told := false
	for line := range strings.Lines(logs.String()) {
		told = told || !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(line, w) })
	}
	if !told {
		t.Errorf("no line at shutdown says all of %q:\n%s", want, logs.String())
	}
}

// The timer is set for the first window to end with lines left out, also
// when a window that began sooner leaves lines out after a later one did.
func TestLogSamplerTimerIsForTheFirstWindowToEnd(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // pure time arithmetic: nothing is written anywhere
	at := t0
	var told toldCounts
	s := newLogSampler(func(typ string) string { return typ }, told.add)
	s.now = func() time.Time { return at }
	defer s.stop()
	due := func() time.Time {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.due
	}
	s.allow("s", "t", OutcomeRetried) // its window begins at t0
	at = t0.Add(failLogEvery / 2)
	for range failLogBurst + 1 {
		s.allow("s", "t", OutcomeDead)
	}
	if got, want := due(), t0.Add(failLogEvery*3/2); !got.Equal(want) {
		t.Errorf("timer due at %v, want the dead-letter window's end, %v", got, want)
	}
	at = t0.Add(failLogEvery * 6 / 10)
	for range failLogBurst {
		s.allow("s", "t", OutcomeRetried)
	}
	if got, want := due(), t0.Add(failLogEvery); !got.Equal(want) {
		t.Errorf("timer due at %v, want the retry window's end, %v", got, want)
	}
}

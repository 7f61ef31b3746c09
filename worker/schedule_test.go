package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/schedule"
	"github.com/streamworker/streamworker/wire"
)

// newTestScheduler is a scheduler of spec on stream, its clock driven by
// the test through runOnce's now.
func newTestScheduler(t *testing.T, c redis.UniversalClient, stream, spec, missed string) *scheduler {
	t.Helper()
	cfg := config.Default()
	cfg.Streams, cfg.ScheduleMissed = []string{stream}, missed
	s := newScheduler(c, cfg, []schedule.Entry{schedule.MustParseEntry("cleanup.run", spec)}, slog.New(slog.DiscardHandler))
	s.now = func() time.Time {
		t.Fatal("the scheduler read the wall clock in a test driving it")
		return time.Time{}
	}
	return s
}

// ticksIn returns the ticks of the events in stream, in order, checking
// each event's type, id and data.
func ticksIn(t *testing.T, c redis.UniversalClient, stream string, e schedule.Entry) []time.Time {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, m := range msgs {
		var d struct{ Tick, Schedule string }
		if err := json.Unmarshal([]byte(m.Values[wire.FieldData].(string)), &d); err != nil {
			t.Fatalf("entry %s: data %v: %v", m.ID, m.Values[wire.FieldData], err)
		}
		tick, err := time.Parse(time.RFC3339Nano, d.Tick)
		if err != nil {
			t.Fatal(err)
		}
		if m.Values[wire.FieldType] != e.Type || m.Values[wire.FieldID] != e.EventID(tick) || d.Schedule != e.Spec {
			t.Errorf("entry %s = %v, want type %s, id %s, schedule %q", m.ID, m.Values, e.Type, e.EventID(tick), e.Spec)
		}
		out = append(out, tick)
	}
	return out
}

func wantTicks(t *testing.T, got []time.Time, want ...time.Time) {
	t.Helper()
	ok := len(got) == len(want)
	for i := range want {
		ok = ok && got[i].Equal(want[i])
	}
	if !ok {
		t.Errorf("ticks published = %v\nwant %v", got, want)
	}
}

// Two schedulers of one entry, as two workers, driven through the same
// ticks, one of them late: every tick is published once, in order.
func TestSchedulerPublishesEachTickOnce(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	a := newTestScheduler(t, c, stream, "@every 1m", schedule.MissedLatest)
	b := newTestScheduler(t, c, stream, "@every 1m", schedule.MissedLatest)
	base := time.Now().Truncate(time.Minute) // a tick
	e := a.entries[0].entry
	for _, s := range []*scheduler{a, b} { // both start between two ticks: nothing is due
		if next, err := s.runOnce(ctx, base.Add(10*time.Second)); err != nil || !next.Equal(base.Add(time.Minute)) {
			t.Fatalf("runOnce at start = %s, %v; want the next tick %s", next, err, base.Add(time.Minute))
		}
	}
	for i := 1; i <= 5; i++ {
		now := base.Add(time.Duration(i) * time.Minute)
		if _, err := a.runOnce(ctx, now.Add(20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.runOnce(ctx, now.Add(5*time.Millisecond)); err != nil { // b is behind a, and its clock too
			t.Fatal(err)
		}
	}
	// b, late by up to the grace, publishes what a has not yet: nothing
	// twice, nothing older than what was published.
	if _, err := b.runOnce(ctx, base.Add(6*time.Minute+schedule.Grace)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.runOnce(ctx, base.Add(6*time.Minute+time.Second)); err != nil {
		t.Fatal(err)
	}
	var want []time.Time
	for i := 1; i <= 6; i++ {
		want = append(want, base.Add(time.Duration(i)*time.Minute))
	}
	wantTicks(t, ticksIn(t, c, stream, e), want...)
	if got := c.HGet(ctx, wire.ScheduleKey(stream), wire.ScheduleTickField(e.Name())).Val(); got != strconv.FormatInt(base.Add(6*time.Minute).UnixMilli(), 10) {
		t.Errorf("last tick in the hash = %s, want %d", got, base.Add(6*time.Minute).UnixMilli())
	}
	var reg schedule.Registration
	if err := json.Unmarshal([]byte(c.HGet(ctx, wire.ScheduleKey(stream), wire.ScheduleEntryField(e.Name())).Val()), &reg); err != nil ||
		reg != (schedule.Registration{Type: "cleanup.run", Spec: "@every 1m", TZ: "UTC", Missed: "latest"}) {
		t.Errorf("registration = %+v, %v", reg, err)
	}
}

// A worker that starts while ticks are late but within the grace publishes
// each of them, in order: a restart loses no tick.
func TestSchedulerCatchesUpWithinGrace(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	base := time.Now().Truncate(time.Minute)
	s := newTestScheduler(t, c, stream, "@every 1s", schedule.MissedSkip)
	e := s.entries[0].entry
	c.HSet(ctx, wire.ScheduleKey(stream), wire.ScheduleTickField(e.Name()), base.UnixMilli())
	if _, err := s.runOnce(ctx, base.Add(4500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	wantTicks(t, ticksIn(t, c, stream, e), base.Add(1*time.Second), base.Add(2*time.Second), base.Add(3*time.Second), base.Add(4*time.Second))
}

// Ticks older than the grace that no worker published were missed: latest
// publishes the latest of them once, skip none; the ticks within the grace
// are published either way.
func TestSchedulerMissedTicks(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	base := time.Now().Truncate(time.Hour)
	for _, tc := range []struct {
		missed string
		want   []time.Time
	}{
		{schedule.MissedLatest, []time.Time{base.Add(time.Hour + 55*time.Minute), base.Add(2 * time.Hour)}},
		{schedule.MissedSkip, []time.Time{base.Add(2 * time.Hour)}},
	} {
		t.Run(tc.missed, func(t *testing.T) {
			stream := "{" + testredis.Prefix(t) + "s}"
			s := newTestScheduler(t, c, stream, "@every 5m", tc.missed)
			e := s.entries[0].entry
			c.HSet(ctx, wire.ScheduleKey(stream), wire.ScheduleTickField(e.Name()), base.UnixMilli())
			// Two hours after the last tick published, 2s after a tick: the
			// ticks from base+5m to base+1h55m were missed; base+2h is late
			// by less than the grace.
			if _, err := s.runOnce(ctx, base.Add(2*time.Hour+2*time.Second)); err != nil {
				t.Fatal(err)
			}
			wantTicks(t, ticksIn(t, c, stream, e), tc.want...)
		})
	}
}

// An entry that never ran publishes no tick before the worker started, even
// with the latest policy: nothing was missed.
func TestSchedulerNewEntryStartsNow(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	base := time.Now().Truncate(time.Hour)
	s := newTestScheduler(t, c, stream, "@hourly", schedule.MissedLatest)
	if _, err := s.runOnce(ctx, base.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := c.XLen(ctx, stream).Val(); n != 0 {
		t.Errorf("%d events published at the first start, want none", n)
	}
	if _, err := s.runOnce(ctx, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantTicks(t, ticksIn(t, c, stream, s.entries[0].entry), base.Add(time.Hour))
}

// Run publishes on real time, sleeping until each tick, and returns when
// its context ends (goleak checks that nothing is left running).
func TestSchedulerRun(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	stream := "{" + testredis.Prefix(t) + "s}"
	cfg := config.Default()
	cfg.Streams = []string{stream}
	s := newScheduler(c, cfg, []schedule.Entry{schedule.MustParseEntry("cleanup.run", "@every 1s")}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for c.XLen(context.Background(), stream).Val() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no two ticks published in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ticks := ticksIn(t, c, stream, s.entries[0].entry)
	for i := 1; i < len(ticks); i++ {
		if !ticks[i].Equal(ticks[i-1].Add(time.Second)) {
			t.Errorf("ticks %v: not one second apart", ticks)
		}
	}
}

// A bad WithSchedule entry stops Run before it connects, with an error
// that names the entry.
func TestWithScheduleBadEntry(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.HTTPAddr = "off"
	for _, tc := range []struct {
		cfg  string
		opts [][2]string
		want string
	}{
		{"", [][2]string{{"cleanup.run", "@every soon"}}, `WithSchedule: entry "cleanup.run @every soon": @every soon: want a Go duration`},
		{"cleanup.run @every 5m", [][2]string{{"cleanup.run", "@every  5m"}}, `WithSchedule: entry "cleanup.run @every 5m": given twice`},
	} {
		cfg.Schedule = tc.cfg
		var opts []Option
		for _, o := range tc.opts {
			opts = append(opts, WithSchedule(o[0], o[1]))
		}
		opts = append(opts, WithLogger(slog.New(slog.DiscardHandler)), WithRegistry(prometheus.NewRegistry()))
		err := Run(context.Background(), cfg, NewMux(), opts...)
		if !errors.Is(err, schedule.ErrBadEntry) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run = %v, want %q", err, tc.want)
		}
	}
}

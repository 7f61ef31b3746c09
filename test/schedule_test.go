package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/schedule"
	"github.com/streamworker/streamworker/wire"
)

// TestScheduleFiveWorkers runs five worker processes with WORKER_SCHEDULE
// "cleanup.run @every 1s" for 30 ticks, kills two of them with SIGKILL on
// the way and restarts them, then reads the schedule's stream: one event per
// tick, in order, none twice and none missing from the first tick to the
// last (three workers ran throughout), each with the id derived from its
// tick.
func TestScheduleFiveWorkers(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/customworker", "customworker", raceEnabled)
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	prefix := testredis.Prefix(t)
	ticks := prefix + "ticks" // nobody consumes it: every event published stays there
	entry := schedule.MustParseEntry("cleanup.run", "@every 1s")
	env := func(name string) map[string]string {
		return workerEnv(srv.URL(), prefix+"events", name, map[string]string{
			"WORKER_SCHEDULE":        "cleanup.run @every 1s",
			"WORKER_SCHEDULE_STREAM": ticks,
			"LOG_LEVEL":              "debug", // "periodic event published" says who published which tick
		})
	}
	workers := map[string]*workerProc{}
	var all []*workerProc // every process, the killed ones too
	run := func(name string) {
		p := startWorker(t, bin, "worker "+name, env(name))
		workers[name] = p
		all = append(all, p)
	}
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		run(name)
	}
	until := func(n int64, p *workerProc) {
		t.Helper()
		waitFor(t, time.Duration(n)*time.Second+60*time.Second, p, strconv.FormatInt(n, 10)+" ticks published", func() (bool, string) {
			l := c.XLen(ctx, ticks).Val()
			return l >= n, fmt.Sprintf("%d ticks published", l)
		})
	}
	until(5, workers["c"])
	workers["a"].kill()
	until(9, workers["c"])
	workers["b"].kill()
	until(12, workers["c"])
	run("a")
	until(17, workers["c"])
	run("b")
	until(30, workers["c"])
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		workers[name].stop(30 * time.Second)
		workers[name].requireCleanLog()
	}

	msgs, err := c.XRange(ctx, ticks, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var prev time.Time
	seen := map[string]bool{}
	for i, m := range msgs {
		var d struct{ Tick, Schedule string }
		if err := json.Unmarshal([]byte(fmt.Sprint(m.Values[wire.FieldData])), &d); err != nil {
			t.Fatalf("event %s: data %v: %v", m.ID, m.Values[wire.FieldData], err)
		}
		tick, err := time.Parse(time.RFC3339Nano, d.Tick)
		if err != nil {
			t.Fatalf("event %s: tick %q: %v", m.ID, d.Tick, err)
		}
		id := fmt.Sprint(m.Values[wire.FieldID])
		switch {
		case m.Values[wire.FieldType] != "cleanup.run" || d.Schedule != "@every 1s" || id != entry.EventID(tick):
			t.Errorf("event %s = %v, want type cleanup.run, schedule @every 1s, id %s", m.ID, m.Values, entry.EventID(tick))
		case seen[id]:
			t.Errorf("tick %s published twice (event %s)", d.Tick, m.ID)
		case i > 0 && !tick.Equal(prev.Add(time.Second)):
			t.Errorf("event %s: tick %s follows %s: want the next second, no tick missing, none out of order", m.ID, d.Tick, prev.Format(time.RFC3339Nano))
		case !tick.Equal(tick.Truncate(time.Second)):
			t.Errorf("event %s: tick %s is not on a second since the epoch", m.ID, d.Tick)
		}
		seen[id] = true
		prev = tick
	}
	if len(msgs) < 30 {
		t.Fatalf("%d ticks published, want at least 30", len(msgs))
	}
	// Who published which: not a property (any worker may win a tick),
	// but the log shows that there is no single publisher.
	by := map[string]int{}
	for _, p := range all {
		for _, rec := range p.logLines() {
			if rec["msg"] == "periodic event published" {
				by[p.name]++
			}
		}
	}
	t.Logf("%d ticks from %s to %s, published by %v", len(msgs), msgs[0].Values[wire.FieldData], msgs[len(msgs)-1].Values[wire.FieldData], by)
	sum := 0
	for _, n := range by {
		sum += n
	}
	if sum > len(msgs) { // fewer when a worker was killed between a publish and its log line
		t.Errorf("the workers logged %d publications, the stream has %d events", sum, len(msgs))
	}
}

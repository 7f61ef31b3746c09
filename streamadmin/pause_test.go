package streamadmin

import (
	"testing"

	"github.com/streamworker/streamworker/wire"
)

func TestPauseResume(t *testing.T) {
	f := newFixture(t)
	f.add("type", "t")
	if err := f.c.XGroupCreate(f.ctx, f.stream, "workers", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.c.XGroupCreate(f.ctx, f.stream, "audit", "0").Err(); err != nil {
		t.Fatal(err)
	}
	paused := func() map[string]bool {
		st, err := f.admin.Status(f.ctx, []string{f.stream})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, g := range st[0].Groups {
			out[g.Group] = g.Paused
		}
		return out
	}
	if already, err := f.admin.Pause(f.ctx, f.stream, "workers"); err != nil || already {
		t.Fatalf("Pause = %v, %v; want a new pause", already, err)
	}
	if already, err := f.admin.Pause(f.ctx, f.stream, "workers"); err != nil || !already {
		t.Fatalf("second Pause = %v, %v; want already paused", already, err)
	}
	if got := paused(); !got["workers"] || got["audit"] {
		t.Errorf("after pausing workers: %v", got)
	}
	if _, err := f.admin.Pause(f.ctx, f.stream, ""); err != nil {
		t.Fatal(err)
	}
	ps, err := f.admin.Pauses(f.ctx, f.stream)
	if err != nil || len(ps) != 2 || ps[0].Group != wire.PauseAllGroups || ps[1].Group != "workers" || ps[0].Since.IsZero() {
		t.Fatalf("Pauses = %+v, %v; want * then workers, with times", ps, err)
	}
	if got := paused(); !got["workers"] || !got["audit"] {
		t.Errorf("after pausing every group: %v", got)
	}
	still, ended, err := f.admin.Resume(f.ctx, f.stream, "workers")
	if err != nil || !ended || !PausedFor(still, "workers") {
		t.Errorf("Resume(workers) under a pause of every group = %+v, %v, %v; want it still paused by *", still, ended, err)
	}
	if _, ended, err := f.admin.Resume(f.ctx, f.stream, ""); err != nil || !ended {
		t.Fatalf("Resume(all) = %v, %v", ended, err)
	}
	if got := paused(); got["workers"] || got["audit"] {
		t.Errorf("after resuming: %v", got)
	}
	if _, ended, err := f.admin.Resume(f.ctx, f.stream, ""); err != nil || ended {
		t.Errorf("Resume of a stream not paused = %v, %v; want nothing ended", ended, err)
	}
}

// A partitioned stream is paused by its logical name; each partition's row
// shows it.
func TestPartitionStatusShowsPause(t *testing.T) {
	f := newFixture(t)
	if _, err := f.admin.Pause(f.ctx, f.stream, ""); err != nil {
		t.Fatal(err)
	}
	st, err := f.admin.PartitionStatus(f.ctx, f.stream, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !PausedFor(s.Paused, "workers") {
			t.Errorf("partition %s: Paused = %+v, want the logical stream's pause", s.Stream, s.Paused)
		}
	}
}

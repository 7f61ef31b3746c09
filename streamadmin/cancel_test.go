package streamadmin

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// delay puts an envelope in the stream's delayed set, due in an hour.
func (f *fixture) delay(token string, fields ...string) string {
	f.t.Helper()
	m := wire.EncodeEnvelope(token, fields)
	due := float64(time.Now().Add(time.Hour).UnixMilli())
	if err := f.c.ZAdd(f.ctx, wire.DelayedKey(f.stream), redis.Z{Score: due, Member: m}).Err(); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// marks returns the stream's cancel marks.
func (f *fixture) marks() []string {
	f.t.Helper()
	m, err := f.c.ZRange(f.ctx, wire.CancelledKey(f.stream), 0, -1).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// Every kind of ID, in one call: a retry in the delayed set by its failed
// entry's ID (the token), a producer's delayed event by its id field, a
// retry by its origin_id, an entry not yet delivered, one pending, one
// acknowledged, and IDs that match nothing.
func TestCancelEveryStatus(t *testing.T) {
	f := newFixture(t)
	f.group("workers")
	done := f.add("type", "a")
	pending := f.add("type", "a")
	f.read("workers", "w1", 2)
	f.c.XAck(f.ctx, f.stream, "workers", done)
	queued := f.add("type", "a")
	other := f.add("type", "a")
	retry := f.delay("1700000000001-0", "type", "a", "attempt", "2", "origin_id", "1700000000000-0")
	byOrigin := f.delay("1700000000005-0", "type", "a", "attempt", "3", "origin_id", "1700000000002-0")
	f.delay("d-0123456789abcdef", "type", "a", "id", "order-7")
	f.delay("d-fedcba9876543210", "type", "a", "id", "order-7")
	keep := f.delay("d-1111111111111111", "type", "a", "id", "order-8")

	got, err := f.admin.Cancel(f.ctx, f.stream, "workers", []string{
		"1700000000001-0", "order-7", "1700000000002-0", queued, pending, done, "9-0", "order-9",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []CancelResult{
		{ID: "1700000000001-0", Status: CancelledDelayed, Delayed: 1},
		{ID: "order-7", Status: CancelledDelayed, Delayed: 2},
		{ID: "1700000000002-0", Status: CancelledDelayed, Delayed: 1},
		{ID: queued, Status: CancelledQueued},
		{ID: pending, Status: CancelledPending, Consumer: "w1"},
		{ID: done, Status: AlreadyDone},
		{ID: "9-0", Status: CancelNotFound},
		{ID: "order-9", Status: CancelNotFound},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Cancel (-want +got):\n%s", diff)
	}
	left, err := f.c.ZRange(f.ctx, wire.DelayedKey(f.stream), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{keep}, left); diff != "" {
		t.Errorf("delayed set after cancel (-want +got):\n%s\n(removed %q and %q)", diff, retry, byOrigin)
	}
	if diff := cmp.Diff([]string{pending, queued}, f.marks()); diff != "" {
		t.Errorf("cancel marks (-want +got):\n%s", diff)
	}
	_ = other

	// Again: the marks stay, and the delayed ones are gone.
	again, err := f.admin.Cancel(f.ctx, f.stream, "workers", []string{queued, "order-7"})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Status != CancelledQueued || again[1].Status != CancelNotFound {
		t.Errorf("second cancel = %+v, want cancelled-queued then not-found", again)
	}
}

// An entry ID written with leading zeros is the same entry.
func TestCancelNormalisesIDs(t *testing.T) {
	f := newFixture(t)
	f.group("g")
	id := f.add("type", "a")
	ms, seq, _ := cutID(id)
	given := "000" + ms + "-0" + seq
	got, err := f.admin.Cancel(f.ctx, f.stream, "g", []string{given})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID != given || got[0].Status != CancelledQueued {
		t.Errorf("Cancel(%q) = %+v, want cancelled-queued under the ID as given", given, got[0])
	}
	if diff := cmp.Diff([]string{id}, f.marks()); diff != "" {
		t.Errorf("marks (-want +got):\n%s", diff)
	}
}

func cutID(id string) (string, string, bool) {
	for i := range len(id) {
		if id[i] == '-' {
			return id[:i], id[i+1:], true
		}
	}
	return id, "", false
}

// Marks older than the retention are trimmed by the next cancel.
func TestCancelTrimsOldMarks(t *testing.T) {
	f := newFixture(t)
	f.group("g")
	id := f.add("type", "a")
	old := float64(time.Now().Add(-wire.CancelRetention - time.Hour).UnixMilli())
	f.c.ZAdd(f.ctx, wire.CancelledKey(f.stream), redis.Z{Score: old, Member: "1-0"})
	if _, err := f.admin.Cancel(f.ctx, f.stream, "g", []string{id}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{id}, f.marks()); diff != "" {
		t.Errorf("marks (-want +got):\n%s", diff)
	}
}

func TestCancelErrors(t *testing.T) {
	f := newFixture(t)
	f.add("type", "a")
	if _, err := f.admin.Cancel(f.ctx, f.stream, "nope", []string{"1-0"}); !errors.Is(err, ErrNoGroup) {
		t.Errorf("unknown group: %v, want ErrNoGroup", err)
	}
	if _, err := f.admin.Cancel(f.ctx, f.stream, "g", nil); err == nil {
		t.Error("no IDs: no error")
	}
	if _, err := f.admin.Cancel(f.ctx, f.stream, "g", []string{""}); err == nil {
		t.Error("an empty ID: no error")
	}
	// No stream at all: nothing is found, and that is no error.
	got, err := f.admin.Cancel(f.ctx, f.stream+"-none", "g", []string{"1-0", "x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Status != CancelNotFound {
			t.Errorf("%s on a missing stream: %s, want not-found", r.ID, r.Status)
		}
	}
}

// The delayed set is searched a page at a time: a match on a later page of
// ZSCAN is found, and the others stay.
func TestCancelSearchesALargeDelayedSet(t *testing.T) {
	f := newFixture(t)
	n := 3 * cancelDelayedScan
	pipe := f.c.Pipeline()
	for i := range n {
		m := wire.EncodeEnvelope("d-"+strconv.Itoa(i), []string{"type", "a", "id", "e" + strconv.Itoa(i)})
		pipe.ZAdd(f.ctx, wire.DelayedKey(f.stream), redis.Z{Score: float64(i), Member: m})
	}
	if _, err := pipe.Exec(f.ctx); err != nil {
		t.Fatal(err)
	}
	got, err := f.admin.Cancel(f.ctx, f.stream, "g", []string{"e" + strconv.Itoa(n-1), "e0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Status != CancelledDelayed || r.Delayed != 1 {
			t.Errorf("%s: %+v, want one delayed event cancelled", r.ID, r)
		}
	}
	if left := f.c.ZCard(f.ctx, wire.DelayedKey(f.stream)).Val(); left != int64(n-2) {
		t.Errorf("delayed set has %d, want %d", left, n-2)
	}
}

package streamadmin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// fixture is a stream on the shared server with an Admin and a plain client.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	c      *redis.Client
	admin  *Admin
	stream string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	return &fixture{t: t, ctx: context.Background(), c: c, admin: New(c), stream: testredis.Prefix(t) + "orders"}
}

func (f *fixture) add(fields ...string) string {
	f.t.Helper()
	id, err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: f.stream, Values: fields}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) group(name string) {
	f.t.Helper()
	if err := f.c.XGroupCreateMkStream(f.ctx, f.stream, name, "0").Err(); err != nil {
		f.t.Fatal(err)
	}
}

// read delivers up to n new entries to consumer, leaving them pending.
func (f *fixture) read(group, consumer string, n int64) []string {
	f.t.Helper()
	res, err := f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{f.stream, ">"}, Count: n, Block: -1}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func (f *fixture) dead(fields ...string) string {
	f.t.Helper()
	id, err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(f.stream), Values: fields}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func TestStatus(t *testing.T) {
	f := newFixture(t)
	first := f.add("type", "a", "data", "1")
	for range 4 {
		f.add("type", "a", "data", "x")
	}
	f.group("workers")
	f.group("audit")
	f.read("workers", "w1", 2)
	f.read("workers", "w2", 1)
	f.c.ZAdd(f.ctx, wire.DelayedKey(f.stream), redis.Z{Score: 1, Member: "m1"}, redis.Z{Score: 2, Member: "m2"})
	f.dead("type", "a", "error", "boom")

	got, err := f.admin.Status(f.ctx, []string{f.stream})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Groups) != 2 {
		t.Fatalf("status = %+v, want one stream with two groups", got)
	}
	w := got[0].Groups[1]
	// Ages and idle times come from the server's clock; check them apart.
	if w.OldestPendingAge <= 0 || w.OldestPendingAge > time.Minute {
		t.Errorf("oldest pending age = %s, want the age of %s", w.OldestPendingAge, first)
	}
	for _, c := range w.Consumers {
		if c.Idle < 0 || c.Idle > time.Minute {
			t.Errorf("consumer %s idle = %s", c.Consumer, c.Idle)
		}
	}
	if got[0].Memory <= 0 {
		t.Errorf("memory = %d bytes, want MEMORY USAGE of the stream", got[0].Memory)
	}
	want := []StreamStatus{{
		Stream: f.stream, Length: 5, Delayed: 2, Dead: 1, Memory: got[0].Memory,
		Acked: 0, AckedMemory: 0, // audit was delivered nothing
		Groups: []GroupStatus{
			{Group: "audit", Pending: 0, Lag: 5, LastDeliveredID: "0-0"},
			{
				Group: "workers", Pending: 3, Lag: 2, LastDeliveredID: w.LastDeliveredID, OldestPendingID: first,
				Consumers: []ConsumerStatus{{Consumer: "w1", Pending: 2}, {Consumer: "w2", Pending: 1}},
			},
		},
	}}
	opts := cmpopts.IgnoreFields(GroupStatus{}, "OldestPendingAge")
	if diff := cmp.Diff(want, got, opts, cmpopts.IgnoreFields(ConsumerStatus{}, "Idle")); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// TestStatusAcked checks the estimate of the entries every group is done
// with: exact without pending entries, by the IDs' times with them.
func TestStatusAcked(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 10; i++ {
		if err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: f.stream, ID: fmt.Sprintf("%d-0", i*1000), Values: []string{"type", "a"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	status := func() StreamStatus {
		t.Helper()
		got, err := f.admin.Status(f.ctx, []string{f.stream})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	f.group("done")
	ids := f.read("done", "c", 10)
	f.c.XAck(f.ctx, f.stream, "done", ids...)
	if s := status(); s.Acked != 10 || s.AckedMemory != s.Memory || s.Memory <= 0 {
		t.Errorf("one group done with all: acked %d (%d of %d bytes), want 10 (all the bytes)", s.Acked, s.AckedMemory, s.Memory)
	}
	f.group("slow")
	ids = f.read("slow", "c", 4)
	f.c.XAck(f.ctx, f.stream, "slow", ids...)
	if s := status(); s.Acked != 4 || s.AckedMemory != s.Memory*4/10 {
		t.Errorf("the slowest group done with 4: acked %d (%d of %d bytes), want 4", s.Acked, s.AckedMemory, s.Memory)
	}
	// slow reads the rest and leaves 6000-0 pending: 5 entries before it.
	ids = f.read("slow", "c", 6)
	f.c.XAck(f.ctx, f.stream, "slow", slices.DeleteFunc(ids, func(id string) bool { return id == "6000-0" })...)
	if s := status(); s.Acked != 5 {
		t.Errorf("6000-0 pending: acked %d, want the 5 entries before it", s.Acked)
	}
	f.group("new")
	if s := status(); s.Acked != 0 {
		t.Errorf("a group delivered nothing: acked %d, want 0", s.Acked)
	}
}

func TestStatusLagUnknownAfterDeletion(t *testing.T) {
	f := newFixture(t)
	f.add("type", "a")
	mid := f.add("type", "a")
	f.add("type", "a")
	f.group("g")
	f.read("g", "c", 1)
	f.c.XDel(f.ctx, f.stream, mid)
	got, err := f.admin.Status(f.ctx, []string{f.stream})
	if err != nil {
		t.Fatal(err)
	}
	if lag := got[0].Groups[0].Lag; lag != -1 {
		t.Errorf("lag = %d, want -1 (unknown) after a deletion inside the undelivered range", lag)
	}
}

func TestStatusErrors(t *testing.T) {
	f := newFixture(t)
	_, err := f.admin.Status(f.ctx, []string{f.stream})
	if !errors.Is(err, ErrNoStream) || !strings.Contains(err.Error(), f.stream) {
		t.Errorf("missing stream: err = %v, want ErrNoStream naming it", err)
	}
	f.c.Set(f.ctx, f.stream, "x", 0)
	_, err = f.admin.Status(f.ctx, []string{f.stream})
	if err == nil || !strings.Contains(err.Error(), "is a string, not a stream") {
		t.Errorf("string key: err = %v, want it named as not a stream", err)
	}
}

func TestStatusOfStreamWithOnlyDeadLetters(t *testing.T) {
	f := newFixture(t)
	f.dead("type", "a")
	got, err := f.admin.Status(f.ctx, []string{f.stream})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]StreamStatus{{Stream: f.stream, Dead: 1}}, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestStreamsSkipsDeadLetterStreams(t *testing.T) {
	f := newFixture(t)
	f.add("type", "a")
	f.dead("type", "a")
	other := f.stream + "2"
	f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: other, Values: []string{"type", "a"}})
	f.c.Set(f.ctx, f.stream+"-string", "x", 0)
	all, err := f.admin.Streams(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, s := range all {
		if strings.HasPrefix(s, f.stream) {
			mine = append(mine, s)
		}
	}
	if diff := cmp.Diff([]string{f.stream, other}, mine); diff != "" {
		t.Errorf("streams (-want +got):\n%s", diff)
	}
	if !slices.IsSorted(all) {
		t.Errorf("streams not sorted: %v", all)
	}
}

func TestPending(t *testing.T) {
	f := newFixture(t)
	a := f.add("type", "order.created")
	b := f.add("type", "order.paid")
	c := f.add("type", "order.paid")
	f.group("workers")
	f.group("idle")
	f.read("workers", "w1", 2)
	f.read("workers", "w2", 1)
	f.c.XDel(f.ctx, f.stream, b)

	got, err := f.admin.Pending(f.ctx, f.stream, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []GroupPending{
		{Group: "idle"},
		{Group: "workers", Total: 3, Entries: []PendingEntry{
			{ID: a, Consumer: "w1", Deliveries: 1, Type: "order.created"},
			{ID: b, Consumer: "w1", Deliveries: 1, Deleted: true},
		}},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(PendingEntry{}, "Idle")); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	one, err := f.admin.Pending(f.ctx, f.stream, "workers", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || len(one[0].Entries) != 3 || one[0].Entries[2].ID != c || one[0].Entries[2].Consumer != "w2" {
		t.Errorf("pending of one group = %+v", one)
	}
}

func TestPendingErrors(t *testing.T) {
	f := newFixture(t)
	_, err := f.admin.Pending(f.ctx, f.stream, "", 10)
	if !errors.Is(err, ErrNoStream) {
		t.Errorf("missing stream: err = %v, want ErrNoStream", err)
	}
	_, err = f.admin.Pending(f.ctx, f.stream, "workers", 10)
	if !errors.Is(err, ErrNoStream) {
		t.Errorf("missing stream, group named: err = %v, want ErrNoStream", err)
	}
	f.add("type", "a")
	_, err = f.admin.Pending(f.ctx, f.stream, "workers", 10)
	if !errors.Is(err, ErrNoGroup) || !strings.Contains(err.Error(), "has no consumer groups") {
		t.Errorf("no groups: err = %v", err)
	}
	f.group("a")
	f.group("b")
	_, err = f.admin.Pending(f.ctx, f.stream, "workers", 10)
	if !errors.Is(err, ErrNoGroup) || !strings.Contains(err.Error(), `no group "workers" (it has: a, b)`) {
		t.Errorf("wrong group: err = %v, want the groups there are named", err)
	}
}

func TestCheckID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"0-0", "1700000000000-0", "1700000000000-18446744073709551615"} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "1700000000000", "abc", "1-2-3", "-1-0", "1-", "1-18446744073709551616", "99999999999999999999-0", " 1-0"} {
		if err := CheckID(id); !errors.Is(err, ErrBadID) {
			t.Errorf("CheckID(%q) = %v, want ErrBadID", id, err)
		}
	}
}

func TestNextID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"5-0":                    "5-1",
		"5-41":                   "5-42",
		"5-18446744073709551615": "6-0",
	} {
		if got := nextID(in); got != want {
			t.Errorf("nextID(%s) = %s, want %s", in, got, want)
		}
	}
}

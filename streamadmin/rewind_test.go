package streamadmin

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func TestParseRewindPoint(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct{ in, want string }{
		{"start", "0-0"},
		{"1700000000000-0", "1700000000000-0"},
		{"0001700000000000-07", "1700000000000-7"},
		{at.Format(time.RFC3339), strconv.FormatInt(at.UnixMilli()-1, 10) + "-18446744073709551615"},
		{"1970-01-01T00:00:00Z", "0-0"},
	} {
		got, err := ParseRewindPoint(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRewindPoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "1700000000000", "1-x", "99999999999999999999-0", "2026-01-02"} {
		if got, err := ParseRewindPoint(bad); err == nil {
			t.Errorf("ParseRewindPoint(%q) = %q, want an error", bad, got)
		}
	}
}

// deliverAll reads every new entry as consumer c and acknowledges it,
// returning the IDs in order.
func (f *fixture) deliverAll(group, c string) []string {
	f.t.Helper()
	var ids []string
	for {
		res, err := f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: group, Consumer: c, Streams: []string{f.stream, ">"}, Count: 100, Block: -1}).Result()
		if errors.Is(err, redis.Nil) {
			return ids
		}
		if err != nil {
			f.t.Fatal(err)
		}
		for _, m := range res[0].Messages {
			f.c.XAck(f.ctx, f.stream, group, m.ID)
			ids = append(ids, m.ID)
		}
	}
}

// A rewind delivers again exactly the entries after the point, the dry run
// counts them without moving the group, and the group's lag stays right.
func TestRewindRedeliversExactlyAfterThePoint(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 10 {
		ids = append(ids, f.add("type", "a", "data", strconv.Itoa(i)))
	}
	f.group("g")
	if got := f.deliverAll("g", "c"); len(got) != 10 {
		t.Fatalf("delivered %d, want 10", len(got))
	}
	point := ids[5]

	dry, err := f.admin.Rewind(f.ctx, f.stream, "g", point, false)
	if err != nil {
		t.Fatal(err)
	}
	want := RewindPlan{Stream: f.stream, Group: "g", From: ids[9], To: point, Redeliver: 4, EntriesRead: 6}
	if diff := cmp.Diff(want, dry); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if again := f.deliverAll("g", "c"); len(again) != 0 {
		t.Fatalf("a dry run moved the group: %d delivered again", len(again))
	}

	done, err := f.admin.Rewind(f.ctx, f.stream, "g", point, true)
	if err != nil {
		t.Fatal(err)
	}
	want.Done = true
	if diff := cmp.Diff(want, done); diff != "" {
		t.Errorf("rewind (-want +got):\n%s", diff)
	}
	groups, err := f.c.XInfoGroups(f.ctx, f.stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	if g := groups[0]; g.LastDeliveredID != point || g.Lag != 4 || g.EntriesRead != 6 {
		t.Errorf("group after rewind: last %s lag %d entries-read %d; want %s, 4, 6", g.LastDeliveredID, g.Lag, g.EntriesRead, point)
	}
	if diff := cmp.Diff(ids[6:], f.deliverAll("g", "c")); diff != "" {
		t.Errorf("delivered again (-want +got):\n%s", diff)
	}

	// From the start: all ten.
	plan, err := f.admin.Rewind(f.ctx, f.stream, "g", "0-0", true)
	if err != nil || plan.Redeliver != 10 {
		t.Fatalf("rewind to start = %+v, %v; want 10 to deliver again", plan, err)
	}
	if diff := cmp.Diff(ids, f.deliverAll("g", "c")); diff != "" {
		t.Errorf("delivered again from the start (-want +got):\n%s", diff)
	}
}

// A time point delivers again the entries added at or after it.
func TestRewindToATime(t *testing.T) {
	f := newFixture(t)
	f.group("g")
	f.add("type", "a")
	mid, err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: f.stream, ID: "99999999999998-0", Values: []string{"type", "a"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	last := f.add("type", "a") // after mid: IDs only grow
	f.deliverAll("g", "c")
	point, err := ParseRewindPoint(time.UnixMilli(99999999999998).UTC().Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.Rewind(f.ctx, f.stream, "g", point, true); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{mid, last}, f.deliverAll("g", "c")); diff != "" {
		t.Errorf("delivered again (-want +got):\n%s", diff)
	}
}

// After a deletion past the point, the entries-read counter is left to
// Redis; the count is of entries that are there.
func TestRewindAfterDeletion(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for range 5 {
		ids = append(ids, f.add("type", "a"))
	}
	f.group("g")
	f.deliverAll("g", "c")
	f.c.XDel(f.ctx, f.stream, ids[3])
	plan, err := f.admin.Rewind(f.ctx, f.stream, "g", ids[1], true)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Redeliver != 2 || plan.EntriesRead != -1 {
		t.Errorf("plan = %+v, want 2 to deliver again and entries-read left to Redis", plan)
	}
	if diff := cmp.Diff([]string{ids[2], ids[4]}, f.deliverAll("g", "c")); diff != "" {
		t.Errorf("delivered again (-want +got):\n%s", diff)
	}
}

// Counting goes in chunks: a history longer than one chunk is counted whole.
func TestRewindCountsInChunks(t *testing.T) {
	f := newFixture(t)
	n := rewindCountChunk + 7
	pipe := f.c.Pipeline()
	for range n {
		pipe.XAdd(f.ctx, &redis.XAddArgs{Stream: f.stream, Values: []string{"type", "a"}})
	}
	if _, err := pipe.Exec(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.XGroupCreate(f.ctx, f.stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	plan, err := f.admin.Rewind(f.ctx, f.stream, "g", "0-0", false)
	if err != nil || plan.Redeliver != int64(n) {
		t.Errorf("dry run = %+v, %v; want %d to deliver again", plan, err, n)
	}
}

func TestRewindErrors(t *testing.T) {
	f := newFixture(t)
	a := f.add("type", "a")
	b := f.add("type", "a")
	f.group("g")
	f.read("g", "c", 1)
	if _, err := f.admin.Rewind(f.ctx, f.stream, "g", b, true); !errors.Is(err, ErrRewindForward) {
		t.Errorf("forward past %s: %v, want ErrRewindForward", a, err)
	}
	if _, err := f.admin.Rewind(f.ctx, f.stream, "nope", "0-0", true); !errors.Is(err, ErrNoGroup) {
		t.Errorf("unknown group: %v, want ErrNoGroup", err)
	}
	if _, err := f.admin.Rewind(f.ctx, f.stream+"-none", "g", "0-0", true); !errors.Is(err, ErrNoStream) {
		t.Errorf("missing stream: %v, want ErrNoStream", err)
	}
	if _, err := f.admin.Rewind(f.ctx, f.stream, "g", "x", true); !errors.Is(err, ErrBadID) {
		t.Errorf("bad point: %v, want ErrBadID", err)
	}
	// Pending entries stay pending.
	plan, err := f.admin.Rewind(f.ctx, f.stream, "g", "0-0", true)
	if err != nil || plan.Pending != 1 {
		t.Errorf("rewind with one pending = %+v, %v; want Pending 1", plan, err)
	}
	if p := f.c.XPending(f.ctx, f.stream, "g").Val(); p.Count != 1 {
		t.Errorf("pending after rewind = %d, want 1", p.Count)
	}
}

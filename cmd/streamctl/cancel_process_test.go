package main

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// delay puts an envelope in the delayed set of stream, due in an hour.
func (f *fixture) delay(stream, token string, fields ...string) {
	f.t.Helper()
	due := float64(time.Now().Add(time.Hour).UnixMilli())
	if err := f.c.ZAdd(f.ctx, wire.DelayedKey(stream), redis.Z{Score: due, Member: wire.EncodeEnvelope(token, fields)}).Err(); err != nil {
		f.t.Fatal(err)
	}
}

// cancelFixture is a stream with one entry acknowledged, one pending on w1,
// one queued, a retry of 1700000000000-0 and a delayed event with id
// order-42.
func cancelFixture(t *testing.T, c *binary) (f *fixture, done, pending, queued string) {
	f = c.fixture(t)
	f.group("workers")
	done = f.add(f.stream, "type", "a")
	pending = f.add(f.stream, "type", "a")
	f.read("workers", "w1", 2)
	f.c.XAck(f.ctx, f.stream, "workers", done)
	queued = f.add(f.stream, "type", "a")
	f.delay(f.stream, "1700000000005-0", "type", "a", "attempt", "2", "origin_id", "1700000000000-0")
	f.delay(f.stream, "d-0123456789abcdef", "type", "a", "id", "order-42")
	return f, done, pending, queued
}

func testCancel(t *testing.T, c *binary) {
	f, done, pending, queued := cancelFixture(t, c)
	s := f.stream

	// Every ID cancelled: exit 0, a line each.
	r := c.run(t, []string{"cancel", "--stream", s, "1700000000000-0", "order-42", queued, pending})
	r.Want(t, 0)
	want := strings.Join([]string{
		"cancelled 1700000000000-0: removed 1 from " + s + ":delayed",
		"cancelled order-42: removed 1 from " + s + ":delayed",
		"cancelled " + queued + ": queued, marked; a worker will acknowledge it without running it",
		"cancelled " + pending + ": pending on consumer w1, marked; it is acknowledged without running when next delivered (unless it is running now)",
		"",
	}, "\n")
	if diff := cmp.Diff(want, r.Stdout); diff != "" || r.Stderr != "" {
		t.Errorf("stdout (-want +got):\n%s\nstderr %q", diff, r.Stderr)
	}
	if n := f.c.ZCard(f.ctx, wire.DelayedKey(s)).Val(); n != 0 {
		t.Errorf("delayed set holds %d, want 0", n)
	}
	if m := f.c.ZRange(f.ctx, wire.CancelledKey(s), 0, -1).Val(); !cmp.Equal(m, []string{pending, queued}) {
		t.Errorf("cancel marks = %v, want %s and %s", m, pending, queued)
	}

	// Already done and not found: said on stderr, exit 1.
	r = c.run(t, []string{"cancel", "--stream", s, done, "order-42"})
	r.Want(t, 1)
	wantErr := "streamctl: " + done + ": already done: delivered to group workers and acknowledged; nothing to cancel\n" +
		"streamctl: order-42: not found: no delayed event has it, and it is no entry of " + s + "\n"
	if r.Stdout != "" || r.Stderr != wantErr {
		t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, wantErr)
	}

	// The group comes from WORKER_GROUP when --group is not given.
	r = c.run(t, []string{"cancel", "--stream", s, queued}, "WORKER_GROUP=nope")
	r.Want(t, 1)
	if !strings.Contains(r.Stderr, `no such consumer group: "nope"`) {
		t.Errorf("WORKER_GROUP=nope: stderr %q, want no such consumer group", r.Stderr)
	}
}

func testCancelJSON(t *testing.T, c *binary) {
	f, done, pending, queued := cancelFixture(t, c)
	r := c.run(t, []string{"cancel", "--stream", f.stream, "--group", "workers", "--json", "1700000000000-0", queued, pending, done, "9-9"})
	r.Want(t, 1)
	var doc cancelDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.Stdout)
	}
	want := cancelDoc{Stream: f.stream, Group: "workers", Results: []cancelResultDoc{
		{ID: "1700000000000-0", Status: "cancelled-delayed", Delayed: 1},
		{ID: queued, Status: "cancelled-queued"},
		{ID: pending, Status: "cancelled-pending", Consumer: "w1"},
		{ID: done, Status: "already-done"},
		{ID: "9-9", Status: "not-found"},
	}}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.Stdout, `"status": "cancelled-delayed"`) || !strings.Contains(r.Stdout, `"delayed_removed": 1`) {
		t.Errorf("JSON names: %s", r.Stdout)
	}
}

// rewindFixture is a stream of ten entries, all delivered to workers and
// acknowledged but the last, which is pending.
func rewindFixture(t *testing.T, c *binary) (*fixture, []string) {
	f := c.fixture(t)
	var ids []string
	for range 10 {
		ids = append(ids, f.add(f.stream, "type", "a"))
	}
	f.group("workers")
	f.read("workers", "w1", 10)
	f.c.XAck(f.ctx, f.stream, "workers", ids[:9]...)
	return f, ids
}

// delivered reads every new entry of the group as consumer c2, returning
// their IDs.
func (f *fixture) delivered(stream, group string) []string {
	f.t.Helper()
	res, err := f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c2", Streams: []string{stream, ">"}, Count: 1000, Block: -1}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func testRewind(t *testing.T, c *binary) {
	f, ids := rewindFixture(t, c)
	s := f.stream
	r := c.run(t, []string{"group", "rewind", "--stream", s, "--group", "workers", "--to", ids[6], "--dry-run"})
	r.Want(t, 0)
	want := s + ": group workers would go back from " + ids[9] + " to " + ids[6] + ": 3 entries delivered again; 1 entry pending (dry run: nothing changed)\n"
	if r.Stdout != want || r.Stderr != "" {
		t.Errorf("dry run: stdout %q, stderr %q; want %q", r.Stdout, r.Stderr, want)
	}
	if got := f.delivered(s, "workers"); len(got) != 0 {
		t.Fatalf("the dry run moved the group: %v delivered", got)
	}

	r = c.run(t, []string{"group", "rewind", "--stream", s, "--group", "workers", "--to", ids[6], "--yes"})
	r.Want(t, 0)
	want = s + ": group workers went back from " + ids[9] + " to " + ids[6] + ": 3 entries to deliver again; 1 entry pending\n"
	if r.Stdout != want || r.Stderr != "" {
		t.Errorf("rewind: stdout %q, stderr %q; want %q", r.Stdout, r.Stderr, want)
	}
	if diff := cmp.Diff(ids[7:], f.delivered(s, "workers")); diff != "" {
		t.Errorf("delivered again (-want +got):\n%s", diff)
	}

	// Forward is refused, and changes nothing.
	r = c.run(t, []string{"group", "rewind", "--stream", s, "--group", "workers", "--to", "start", "--yes"})
	r.Want(t, 0)
	r = c.run(t, []string{"group", "rewind", "--stream", s, "--group", "workers", "--to", ids[9], "--yes"})
	r.Want(t, 1)
	wantErr := "streamctl: the point " + ids[9] + " is after 0-0, the last entry delivered to group \"workers\": a rewind only moves back\n"
	if r.Stderr != wantErr {
		t.Errorf("forward: stderr %q, want %q", r.Stderr, wantErr)
	}
}

func testRewindJSON(t *testing.T, c *binary) {
	f, ids := rewindFixture(t, c)
	r := c.run(t, []string{"group", "rewind", "--stream", f.stream, "--group", "workers", "--to", "start", "--yes", "--json"})
	r.Want(t, 0)
	var doc rewindDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.Stdout)
	}
	zero := int64(0)
	want := rewindDoc{Group: "workers", To: "start", Point: "0-0", Streams: []rewindRowDoc{
		{Stream: f.stream, LastDeliveredID: ids[9], Redeliver: 10, Pending: 1, EntriesRead: &zero, Rewound: true},
	}}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids, f.delivered(f.stream, "workers")); diff != "" {
		t.Errorf("delivered again (-want +got):\n%s", diff)
	}
}

func testRewindPartitions(t *testing.T, c *binary) {
	f := c.fixture(t)
	logical := strings.NewReplacer("{", "", "}", "").Replace(f.stream)
	parts := wire.PartitionStreams(logical, 3)
	for _, p := range parts[:2] { // the third has no events and no group
		f.add(p, "type", "a")
		f.add(p, "type", "a")
		if err := f.c.XGroupCreate(f.ctx, p, "workers", "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	r := c.run(t, []string{"group", "rewind", "--stream", logical, "--partitions", "3", "--group", "workers", "--to", "start", "--yes"})
	r.Want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "2 entries to deliver again") || !strings.Contains(lines[1], "2 entries to deliver again") ||
		!strings.HasPrefix(lines[2], parts[2]+": skipped: no such stream") {
		t.Errorf("stdout:\n%s", r.Stdout)
	}
	for _, p := range parts[:2] {
		if got := f.delivered(p, "workers"); len(got) != 2 {
			t.Errorf("%s: %d delivered again, want 2", p, len(got))
		}
	}
}

func testCancelRewindUsageErrors(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.add(f.stream, "type", "a")
	f.group("workers")
	s := []string{"--stream", f.stream}
	rw := slices.Clip(append([]string{"group", "rewind", "--group", "workers"}, s...)) // each case appends its own
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"CancelMissingStream", []string{"cancel", "1-0"}, "streamctl: --stream is required\nRun 'streamctl cancel --help' for usage.\n"},
		{"CancelNoIDs", append([]string{"cancel"}, s...), "streamctl: name the events to cancel: entry IDs (1700000000000-0) or event id fields\nRun 'streamctl cancel --help' for usage.\n"},
		{"CancelEmptyID", append([]string{"cancel", ""}, s...), "streamctl: an empty ID: want an entry ID (1700000000000-0) or an event id field\nRun 'streamctl cancel --help' for usage.\n"},
		{"CancelEmptyGroup", append([]string{"cancel", "--group", "", "1-0"}, s...), "streamctl: --group is empty: want a consumer group name\nRun 'streamctl cancel --help' for usage.\n"},
		{"CancelUnknownFlag", append([]string{"cancel", "--all"}, s...), "streamctl: unknown flag: --all\nRun 'streamctl cancel --help' for usage.\n"},
		{"NoGroupCommand", []string{"group"}, "streamctl: missing command: rewind\nRun 'streamctl group --help' for usage.\n"},
		{"UnknownGroupCommand", []string{"group", "rewnid"}, "streamctl: unknown command \"rewnid\" for \"streamctl group\"; did you mean \"rewind\"?\nRun 'streamctl group --help' for usage.\n"},
		{"RewindMissingStream", []string{"group", "rewind", "--group", "g", "--to", "start", "--yes"}, "streamctl: --stream is required\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindMissingGroup", append([]string{"group", "rewind", "--to", "start", "--yes"}, s...), "streamctl: --group is required\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindMissingTo", append(rw, "--yes"), "streamctl: --to is required: an entry ID, an RFC 3339 time or start\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindWithoutYes", append(rw, "--to", "start"), "streamctl: a rewind delivers every entry after the point again: add --yes to rewind, or --dry-run to count them first\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindYesAndDryRun", append(rw, "--to", "start", "--yes", "--dry-run"), "streamctl: --yes and --dry-run cannot be used together\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindBadTo", append(rw, "--to", "yesterday", "--yes"), "streamctl: --to \"yesterday\": want an entry ID (<ms>-<seq>, e.g. 1700000000000-0), an RFC 3339 time (e.g. 2026-01-02T15:04:05Z) or start\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindBareMillis", append(rw, "--to", "1700000000000", "--yes"), "streamctl: --to \"1700000000000\": want an entry ID (<ms>-<seq>, e.g. 1700000000000-0), an RFC 3339 time (e.g. 2026-01-02T15:04:05Z) or start\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindZeroPartitions", append(rw, "--to", "start", "--yes", "--partitions", "0"), "streamctl: --partitions 0: want 1 to 1024 (1: the stream is not partitioned)\nRun 'streamctl group rewind --help' for usage.\n"},
		{"RewindArgument", append(rw, "--to", "start", "--yes", "now"), "streamctl: unexpected argument \"now\" (every input is a flag)\nRun 'streamctl group rewind --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, tc.args)
			r.Want(t, 2)
			if r.Stderr != tc.want || r.Stdout != "" {
				t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, tc.want)
			}
		})
	}
	if g := f.c.XInfoGroups(f.ctx, f.stream).Val(); len(g) != 1 || g[0].LastDeliveredID != "0-0" || f.c.Exists(f.ctx, wire.CancelledKey(f.stream)).Val() != 0 {
		t.Errorf("a refused command line changed Redis: %+v", g)
	}
}

func testCancelRewindFailures(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.add(f.stream, "type", "a")
	f.group("workers")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"CancelNoGroup", []string{"cancel", "--stream", f.stream, "--group", "nope", "1-0"}, "streamctl: no such consumer group: \"nope\" on stream \"" + f.stream + "\"\n"},
		{"RewindNoGroup", []string{"group", "rewind", "--stream", f.stream, "--group", "nope", "--to", "start", "--dry-run"}, "streamctl: no such consumer group: \"nope\" on stream \"" + f.stream + "\"\n"},
		{"RewindNoStream", []string{"group", "rewind", "--stream", f.stream + "-none", "--group", "g", "--to", "start", "--dry-run"}, "streamctl: no such stream: \"" + f.stream + "-none\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, tc.args)
			r.Want(t, 1)
			if r.Stderr != tc.want || r.Stdout != "" {
				t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, tc.want)
			}
		})
	}
}

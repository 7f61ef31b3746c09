package streamadmin

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// deadLetterFields is an entry as the runtime dead-letters it.
func deadLetterFields(typ, origin string) []string {
	return []string{
		"type", typ, "data", `{"to":"x"}`, "id", "key-1", "traceparent", "00-abc",
		"attempt", "3",
		"error", "permanent: invalid email address", "attempts", "3", "origin_id", origin,
		"failed_at", "2026-01-02T03:04:05Z", "group", "workers", "consumer", "w1",
	}
}

func TestDeadLetters(t *testing.T) {
	f := newFixture(t)
	a := f.dead(deadLetterFields("email.send", "1-0")...)
	f.dead(deadLetterFields("email.send", "2-0")...)
	got, n, err := f.admin.DeadLetters(f.ctx, f.stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || len(got) != 1 || got[0].ID != a || got[0].Fields["error"] != "permanent: invalid email address" || got[0].Fields["origin_id"] != "1-0" {
		t.Errorf("DeadLetters = %+v, %d", got, n)
	}
	got, n, err = f.admin.DeadLetters(f.ctx, f.stream+"-none", 10)
	if err != nil || n != 0 || len(got) != 0 {
		t.Errorf("empty DLQ: %v, %d, %v", got, n, err)
	}
}

func TestReplayStripsRuntimeFieldsAndResetsAttempt(t *testing.T) {
	f := newFixture(t)
	id := f.dead(deadLetterFields("email.send", "1700000000000-0")...)
	res, err := f.admin.Replay(f.ctx, f.stream, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Outcome != Replayed || res[0].ID != id || res[0].NewID == "" {
		t.Fatalf("Replay = %+v", res)
	}
	entries := f.c.XRange(f.ctx, f.stream, "-", "+").Val()
	if len(entries) != 1 || entries[0].ID != res[0].NewID {
		t.Fatalf("stream = %v, want the one copy %s", entries, res[0].NewID)
	}
	want := map[string]any{
		"type": "email.send", "data": `{"to":"x"}`, "id": "key-1", "traceparent": "00-abc",
		"origin_id": "1700000000000-0",
	}
	if diff := cmp.Diff(want, entries[0].Values); diff != "" {
		t.Errorf("replayed entry (-want +got):\n%s", diff)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 0 {
		t.Errorf("DLQ length = %d, want the entry removed", n)
	}
}

func TestReplayOutcomes(t *testing.T) {
	f := newFixture(t)
	ok := f.dead(deadLetterFields("a", "1-0")...)
	noType := f.dead("error", "malformed delayed envelope", "envelope", "zz")
	emptyType := f.dead("type", "", "error", "message has no type field")
	res, err := f.admin.Replay(f.ctx, f.stream, []string{ok, "1-1", noType, emptyType, ok})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, r.ID+" "+r.Outcome.String())
	}
	want := []string{
		ok + " replayed",
		"1-1 not in the dead-letter stream",
		noType + " has no type field; left in the dead-letter stream",
		emptyType + " has no type field; left in the dead-letter stream",
		ok + " not in the dead-letter stream", // named twice: moved once
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if n := f.c.XLen(f.ctx, f.stream).Val(); n != 1 {
		t.Errorf("stream length = %d, want 1", n)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 2 {
		t.Errorf("DLQ length = %d, want the 2 typeless entries kept", n)
	}
}

func TestReplayRefusesBadIDsBeforeAnything(t *testing.T) {
	f := newFixture(t)
	ok := f.dead(deadLetterFields("a", "1-0")...)
	_, err := f.admin.Replay(f.ctx, f.stream, []string{ok, "1700000000000"})
	if !errors.Is(err, ErrBadID) || !strings.Contains(err.Error(), `"1700000000000"`) {
		t.Errorf("err = %v, want ErrBadID naming the ID", err)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 {
		t.Errorf("DLQ length = %d, want nothing replayed", n)
	}
}

// A copy that cannot be written leaves the dead letter where it is.
func TestReplayKeepsDeadLetterWhenCopyFails(t *testing.T) {
	f := newFixture(t)
	id := f.dead(deadLetterFields("a", "1-0")...)
	f.c.Set(f.ctx, f.stream, "not a stream", 0)
	_, err := f.admin.Replay(f.ctx, f.stream, []string{id})
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("err = %v, want the XADD's WRONGTYPE", err)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 {
		t.Errorf("DLQ length = %d, want the dead letter kept", n)
	}
	_, _, err = f.admin.ReplayAll(f.ctx, f.stream)
	if err == nil {
		t.Error("ReplayAll into a string key succeeded")
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 {
		t.Errorf("DLQ length after ReplayAll = %d, want the dead letter kept", n)
	}
}

func TestReplayAll(t *testing.T) {
	f := newFixture(t)
	for range 250 { // more than one script batch
		f.dead(deadLetterFields("a", "1-0")...)
	}
	noType := f.dead("error", "x")
	n, skipped, err := f.admin.ReplayAll(f.ctx, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	if n != 250 || len(skipped) != 1 || skipped[0] != noType {
		t.Errorf("ReplayAll = %d, %v; want 250 and [%s]", n, skipped, noType)
	}
	if got := f.c.XLen(f.ctx, f.stream).Val(); got != 250 {
		t.Errorf("stream length = %d, want 250", got)
	}
	n, skipped, err = f.admin.ReplayAll(f.ctx, f.stream+"-empty")
	if n != 0 || skipped != nil || err != nil {
		t.Errorf("ReplayAll of an empty DLQ = %d, %v, %v", n, skipped, err)
	}
}

func TestPurge(t *testing.T) {
	f := newFixture(t)
	a := f.dead("type", "a")
	b := f.dead("type", "b")
	c := f.dead("type", "c")
	deleted, missing, err := f.admin.Purge(f.ctx, f.stream, []string{a, "1-1", c})
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 2 || len(missing) != 1 || missing[0] != "1-1" {
		t.Errorf("Purge = %d, %v", deleted, missing)
	}
	left := f.c.XRange(f.ctx, wire.DeadLetterKey(f.stream), "-", "+").Val()
	if len(left) != 1 || left[0].ID != b {
		t.Errorf("DLQ = %v, want only %s", left, b)
	}
	if _, _, err := f.admin.Purge(f.ctx, f.stream, []string{"x"}); !errors.Is(err, ErrBadID) {
		t.Errorf("bad ID: err = %v", err)
	}
}

func TestPurgeAll(t *testing.T) {
	f := newFixture(t)
	for range 5 {
		f.dead("type", "a")
	}
	n, err := f.admin.PurgeAll(f.ctx, f.stream)
	if err != nil || n != 5 {
		t.Errorf("PurgeAll = %d, %v; want 5", n, err)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 0 {
		t.Errorf("DLQ length = %d", n)
	}
	// An entry with the highest ID of its millisecond: the trim bound rolls
	// over to the next millisecond.
	edge := f.stream + "-edge"
	if err := f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(edge), ID: "5-18446744073709551615", Values: []string{"type", "a"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := f.admin.PurgeAll(f.ctx, edge); err != nil || n != 1 {
		t.Errorf("PurgeAll at the sequence limit = %d, %v; want 1", n, err)
	}
	if n, err := f.admin.PurgeAll(f.ctx, f.stream+"-none"); err != nil || n != 0 {
		t.Errorf("PurgeAll of nothing = %d, %v", n, err)
	}
}

// wideFields is type, data and n metadata pairs.
func wideFields(n int) []string {
	f := []string{"type", "wide", "data", "{}"}
	for i := range n {
		f = append(f, "m"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	return f
}

// rawStream reads a stream's entries' fields in order, duplicates included.
func (f *fixture) rawStream(key string) [][]string {
	f.t.Helper()
	reply, err := f.c.Do(f.ctx, "XRANGE", key, "-", "+").Slice()
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([][]string, len(reply))
	for i, e := range reply {
		for _, v := range e.([]any)[1].([]any) {
			out[i] = append(out[i], v.(string))
		}
	}
	return out
}

// Dead letters too wide for a script to copy (Lua's unpack stops near 8000
// values) are replayed whole: as written field by field, as the runtime keeps
// a wide entry (in an envelope), and as the promote script keeps a wide
// delayed envelope.
func TestReplayWideDeadLetters(t *testing.T) {
	for _, n := range []int{5000, 20000} {
		t.Run("Fields"+strconv.Itoa(n), func(t *testing.T) {
			f := newFixture(t)
			entry := wideFields(n)
			runtime := []string{"error", "e", "attempts", "1", "origin_id", "1-0", "failed_at", "2026-01-02T03:04:05Z", "group", "g", "consumer", "c"}
			flat := f.dead(append(slices.Clone(entry), append(runtime, "attempt", "3")...)...)
			whole := f.dead(append([]string{"type", "wide", "envelope", wire.EncodeEnvelope("1-0", append(slices.Clone(entry), "attempt", "2", "origin_id", "1-0"))}, runtime...)...)
			delayed := f.dead("error", "delayed envelope has more than 1000 field/value pairs", "envelope", wire.EncodeEnvelope("d-1", entry))
			ok := f.dead(deadLetterFields("a", "2-0")...)
			res, err := f.admin.Replay(f.ctx, f.stream, []string{flat, whole, ok, delayed})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res {
				got = append(got, r.ID+" "+r.Outcome.String())
			}
			want := []string{flat + " replayed", whole + " replayed", ok + " replayed", delayed + " replayed"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("outcomes (-want +got):\n%s", diff)
			}
			// The script moves what it can in its call; the wide ones follow.
			wantEntries := [][]string{
				{"type", "a", "data", `{"to":"x"}`, "id", "key-1", "traceparent", "00-abc", "origin_id", "2-0"},
				append(slices.Clone(entry), "origin_id", "1-0"),
				append(slices.Clone(entry), "origin_id", "1-0"),
				entry,
			}
			if diff := cmp.Diff(wantEntries, f.rawStream(f.stream)); diff != "" {
				t.Errorf("stream (-want +got):\n%.2000s", diff)
			}
			if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 0 {
				t.Errorf("DLQ length = %d, want every dead letter moved", n)
			}
		})
	}
}

// A wide dead letter whose copy cannot be written stays where it is, and
// ReplayAll moves wide ones too.
func TestReplayWideKeepsDeadLetterWhenCopyFails(t *testing.T) {
	f := newFixture(t)
	id := f.dead(wideFields(5000)...)
	f.c.Set(f.ctx, f.stream, "not a stream", 0)
	_, err := f.admin.Replay(f.ctx, f.stream, []string{id})
	if !redis.HasErrorPrefix(err, "WRONGTYPE") {
		t.Fatalf("err = %v, want the XADD's WRONGTYPE", err)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 {
		t.Errorf("DLQ length = %d, want the dead letter kept", n)
	}
	f.c.Del(f.ctx, f.stream)
	n, skipped, err := f.admin.ReplayAll(f.ctx, f.stream)
	if err != nil || n != 1 || len(skipped) != 0 {
		t.Fatalf("ReplayAll = %d, %v, %v; want 1 replayed", n, skipped, err)
	}
	if diff := cmp.Diff([][]string{wideFields(5000)}, f.rawStream(f.stream)); diff != "" {
		t.Errorf("stream (-want +got):\n%.2000s", diff)
	}
}

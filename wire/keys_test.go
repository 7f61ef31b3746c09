package wire_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/wire"
)

// ParseCompanion knows every key the builders make beside a stream, and the
// key it was built from; a stream itself is none of them.
func TestParseCompanion(t *testing.T) {
	partition := wire.PartitionStream("orders", 3)
	for _, s := range []string{
		"orders", "{orders}", partition, "dlq", "delayed", "orders:dlqs", "orders:dlq:archive",
		"orders:delayed-jobs", "orders:owner:eu", "{orders}:members", "orders:dedupe:", "orders:alive:", "orders:cancelled:x", "orders:trim-lease:x",
	} {
		if kind, of, ok := wire.ParseCompanion(s); ok {
			t.Errorf("ParseCompanion(%q) = %v of %q, want no companion", s, kind, of)
		}
	}
	for _, tc := range []struct {
		key  string
		kind wire.KeyKind
		of   string
	}{
		{wire.DelayedKey("orders"), wire.KeyDelayed, "orders"},
		{wire.DelayedKey("{orders}"), wire.KeyDelayed, "{orders}"},
		{wire.DelayedKey(partition), wire.KeyDelayed, partition},
		{wire.DeadLetterKey("orders"), wire.KeyDeadLetter, "orders"},
		{wire.DeadLetterKey("{orders}"), wire.KeyDeadLetter, "{orders}"},
		{wire.DeadLetterKey(partition), wire.KeyDeadLetter, partition},
		{wire.CancelledKey("orders"), wire.KeyCancelled, "orders"},
		{wire.CancelledKey(partition), wire.KeyCancelled, partition},
		{wire.DedupeKey("orders", "42"), wire.KeyDedupe, "orders"},
		{wire.DedupeKey(partition, "42"), wire.KeyDedupe, partition},
		{wire.HeartbeatKey("orders", "workers", "pod-1"), wire.KeyHeartbeat, "orders"},
		{wire.HeartbeatKey(partition, "workers", "pod-1"), wire.KeyHeartbeat, partition},
		{wire.PartitionOwnerKey(partition, "workers"), wire.KeyPartitionOwner, partition},
		{wire.PartitionMembersKey("orders", "workers"), wire.KeyPartitionMembers, "orders"},
		{wire.PausedKey("orders"), wire.KeyPaused, "orders"},
		{wire.PausedKey("{orders}"), wire.KeyPaused, "{orders}"},
		{wire.UniqueKey("{orders}", "42"), wire.KeyUnique, "{orders}"},
		{wire.UniqueKey(partition, "42"), wire.KeyUnique, partition},
		{wire.ScheduleKey("{orders}"), wire.KeySchedule, "{orders}"},
		{wire.ScheduleKey(partition), wire.KeySchedule, partition},
		{wire.TrimLeaseKey("orders"), wire.KeyTrimLease, "orders"},
		{wire.TrimLeaseKey(partition), wire.KeyTrimLease, partition},
	} {
		kind, of, ok := wire.ParseCompanion(tc.key)
		if !ok || kind != tc.kind || of != tc.of {
			t.Errorf("ParseCompanion(%q) = %v of %q, %v; want %v of %q", tc.key, kind, of, ok, tc.kind, tc.of)
		}
	}
}

// A stream's companions share its hash tag, and so its slot; each partition
// is a slot of its own, with its companions and owner key.
func TestCompanionsShareTheSlot(t *testing.T) {
	for _, s := range append([]string{"{orders}", "shop:{orders}:v2"}, wire.PartitionStreams("orders", 4)...) {
		for _, k := range []string{
			wire.DelayedKey(s), wire.DeadLetterKey(s), wire.CancelledKey(s), wire.DedupeKey(s, "id}{x"),
			wire.HeartbeatKey(s, "{g}", "c}"), wire.PartitionOwnerKey(s, "{g}"), wire.PausedKey(s),
			wire.UniqueKey(s, "id}{x"), wire.ScheduleKey(s), wire.TrimLeaseKey(s),
		} {
			if wire.Slot(k) != wire.Slot(s) {
				t.Errorf("%q is in slot %d, its stream %q in %d", k, wire.Slot(k), s, wire.Slot(s))
			}
		}
	}
	if m, p := wire.PartitionMembersKey("orders", "g"), wire.PartitionStream("orders", 0); wire.Slot(m) != wire.Slot("{orders}") || wire.Slot(m) == wire.Slot(p) {
		t.Errorf("members key %q in slot %d, want the slot of {orders} (%d), not the partition's (%d)", m, wire.Slot(m), wire.Slot("{orders}"), wire.Slot(p))
	}
}

func TestPartitionStreams(t *testing.T) {
	want := []string{"{orders:0}", "{orders:1}", "{orders:2}"}
	if diff := cmp.Diff(want, wire.PartitionStreams("orders", 3)); diff != "" {
		t.Errorf("PartitionStreams (-want +got):\n%s", diff)
	}
}

package wire

import (
	"strconv"
	"strings"
	"time"
)

// Every Redis key of the wire format is built here. For a stream key S the
// companions are S:delayed, S:dlq, S:cancelled, S:paused, S:trim-lease,
// S:dedupe:<id>, S:unique:<id>, S:schedule and S:alive:<group>:<consumer>; a
// partitioned stream adds an owner key per partition and a members key per
// logical stream. The package doc says what each holds and which share a
// hash tag.

// DelayedKey is the sorted set of retry and delayed envelopes of stream,
// each scored by its due time in unix ms.
func DelayedKey(stream string) string { return stream + ":delayed" }

// DeadLetterKey is the dead-letter stream of stream.
func DeadLetterKey(stream string) string { return stream + ":dlq" }

// CancelledKey is the sorted set of the entry IDs of stream cancelled
// before they ran (streamctl cancel), each scored by when it was cancelled
// in unix ms. A worker acknowledges such an entry without running it. Marks
// older than CancelRetention are trimmed by the next cancel and ignored by
// workers.
func CancelledKey(stream string) string { return stream + ":cancelled" }

// CancelRetention is how long a cancel mark counts: an entry still waiting
// in the stream, or pending, after that long runs after all.
const CancelRetention = 7 * 24 * time.Hour

// DedupeKey marks the idempotency key id as processed on stream: SET with
// the dedupe window as its TTL.
func DedupeKey(stream, id string) string { return stream + ":dedupe:" + id }

// DedupeMark is the value of a dedupe mark. The runtime reads it (GET)
// rather than asking whether the key exists: a producer may write under the
// stream's prefix, and a key it put there (a stream it XADDed, say) must not
// pass for a mark and suppress the event.
const DedupeMark = "1"

// UniqueKey marks the idempotency key id as published on stream by a
// unique publish: SET to the entry ID of the event added, with the unique
// window as its TTL. While it exists, a unique publish of the same id adds
// nothing. It shares the stream's hash tag.
func UniqueKey(stream, id string) string { return stream + ":unique:" + id }

// ScheduleKey is the hash of the periodic events published to stream: per
// entry of the schedule, the last tick published (field ScheduleTickField,
// unix ms) and the entry as a worker registered it (field
// ScheduleEntryField). It shares the stream's hash tag.
func ScheduleKey(stream string) string { return stream + ":schedule" }

// ScheduleTickField is the field of ScheduleKey holding the last tick
// published of the schedule entry entry ("TYPE SPEC"), in unix ms.
func ScheduleTickField(entry string) string { return "tick:" + entry }

// ScheduleEntryField is the field of ScheduleKey holding the entry
// ("TYPE SPEC") as a worker registered it: JSON with its time zone and
// missed-tick policy.
func ScheduleEntryField(entry string) string { return "entry:" + entry }

// HeartbeatKey marks consumer of group alive on stream while it exists: SET
// with a TTL of the consumer gone-after age.
func HeartbeatKey(stream, group, consumer string) string {
	return stream + ":alive:" + group + ":" + consumer
}

// PausedKey is the pause state of stream (a WORKER_STREAMS entry: the
// logical name of a partitioned stream): a hash whose fields are the groups
// that must not read it (PauseAllGroups for every group), each valued with
// when it was paused in unix ms. The workers of a group poll it; streamctl
// pause and resume write it.
func PausedKey(stream string) string { return stream + ":paused" }

// PauseAllGroups is the field of PausedKey that pauses the stream for
// every group.
const PauseAllGroups = "*"

// TrimLeaseKey names the worker that trims stream now (WORKER_RETENTION):
// SET to "<group>/<consumer>" with a TTL of a few trim intervals, renewed
// while it trims. Only its holder trims the stream.
func TrimLeaseKey(stream string) string { return stream + ":trim-lease" }

// PartitionStream is the stream key of partition i of the logical stream
// stream: {stream:i}. The braces make the whole name its hash tag, so each
// partition, with its companions, lives in a slot of its own and the
// partitions spread over the nodes of a Redis Cluster. A partitioned logical
// stream is therefore named without braces.
func PartitionStream(stream string, i int) string {
	return "{" + stream + ":" + strconv.Itoa(i) + "}"
}

// PartitionStreams lists the n partition stream keys of stream, in order.
func PartitionStreams(stream string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = PartitionStream(stream, i)
	}
	return out
}

// PartitionOwnerKey names the consumer of group that owns partition (a
// partition stream key) now: SET with a TTL of the partition lease, renewed
// while it is owned. It shares the partition's hash tag.
func PartitionOwnerKey(partition, group string) string { return partition + ":owner:" + group }

// PartitionMembersKey is the sorted set of the consumers of group that read
// the partitions of stream (a logical, unpartitioned name), each scored by
// when its membership runs out (unix ms). Its hash tag is {stream}, a slot of
// its own.
func PartitionMembersKey(stream, group string) string {
	return "{" + stream + "}:members:" + group
}

// KeyKind is which of a stream's companion keys a key is.
type KeyKind int

// The companion keys, as the builders above make them.
const (
	KeyDelayed          KeyKind = iota + 1 // DelayedKey
	KeyDeadLetter                          // DeadLetterKey
	KeyDedupe                              // DedupeKey
	KeyHeartbeat                           // HeartbeatKey
	KeyPartitionOwner                      // PartitionOwnerKey
	KeyPartitionMembers                    // PartitionMembersKey
	KeyCancelled                           // CancelledKey
	KeyPaused                              // PausedKey
	KeyUnique                              // UniqueKey
	KeySchedule                            // ScheduleKey
	KeyTrimLease                           // TrimLeaseKey
)

// String names the kind, e.g. "delayed" or "partition owner".
func (k KeyKind) String() string {
	for _, c := range companions {
		if c.kind == k {
			return c.name
		}
	}
	return "KeyKind(" + strconv.Itoa(int(k)) + ")"
}

// companions are the shapes of the companion keys, for ParseCompanion.
var companions = []struct {
	kind   KeyKind
	name   string
	marker string // what follows the stream in the key
	suffix bool   // the key ends with marker; otherwise something follows it
}{
	{KeyDelayed, "delayed", ":delayed", true},                       // S:delayed
	{KeyDeadLetter, "dead letters", ":dlq", true},                   // S:dlq
	{KeyCancelled, "cancel marks", ":cancelled", true},              // S:cancelled
	{KeyDedupe, "dedupe mark", ":dedupe:", false},                   // S:dedupe:<id>
	{KeyHeartbeat, "heartbeat", ":alive:", false},                   // S:alive:<group>:<consumer>
	{KeyTrimLease, "trim lease", ":trim-lease", true},               // S:trim-lease
	{KeyPartitionOwner, "partition owner", "}:owner:", false},       // {S:i}:owner:<group>
	{KeyPartitionMembers, "partition members", "}:members:", false}, // {S}:members:<group>
	{KeyPaused, "pause state", ":paused", true},                     // S:paused
	{KeyUnique, "unique mark", ":unique:", false},                   // S:unique:<id>
	{KeySchedule, "schedule", ":schedule", true},                    // S:schedule
}

// ParseCompanion reports whether key has the shape of a companion key that
// one of the builders above makes, which one, and the key it is built from:
// the stream (S of S:delayed), the partition stream ({S:i} of
// {S:i}:owner:<group>), or the logical stream (S of {S}:members:<group>). A
// stream key never has such a shape unless it is named like one, which the
// runtime refuses.
func ParseCompanion(key string) (kind KeyKind, of string, ok bool) {
	for _, c := range companions {
		var i int
		if c.suffix {
			if !strings.HasSuffix(key, c.marker) {
				continue
			}
			i = len(key) - len(c.marker)
		} else if i = strings.Index(key, c.marker); i < 0 || i+len(c.marker) == len(key) {
			continue
		}
		of = key[:i]
		switch c.kind {
		case KeyPartitionOwner: // the partition {S:i}, braces included
			if !strings.HasPrefix(of, "{") {
				continue
			}
			of += "}"
		case KeyPartitionMembers: // the logical stream S of {S}
			if !strings.HasPrefix(of, "{") {
				continue
			}
			of = of[1:]
		}
		return c.kind, of, true
	}
	return 0, "", false
}

package wire

import (
	"strconv"
	"strings"
)

// Every Redis key of the wire format is built here. For a stream key S the
// companions are S:delayed, S:dlq, S:trim-lease, S:dedupe:<id> and
// S:alive:<group>:<consumer>; a partitioned stream adds an owner key per
// partition and a members key per logical stream. The package doc says
// what each holds and which share a hash tag.

// DelayedKey is the sorted set of retry and delayed envelopes of stream,
// each scored by its due time in unix ms.
func DelayedKey(stream string) string { return stream + ":delayed" }

// DeadLetterKey is the dead-letter stream of stream.
func DeadLetterKey(stream string) string { return stream + ":dlq" }

// DedupeKey marks the idempotency key id as processed on stream: SET with
// the dedupe window as its TTL.
func DedupeKey(stream, id string) string { return stream + ":dedupe:" + id }

// DedupeMark is the value of a dedupe mark. The runtime reads it (GET)
// rather than asking whether the key exists: a producer may write under the
// stream's prefix, and a key it put there (a stream it XADDed, say) must not
// pass for a mark and suppress the event.
const DedupeMark = "1"

// HeartbeatKey marks consumer of group alive on stream while it exists: SET
// with a TTL of the consumer gone-after age.
func HeartbeatKey(stream, group, consumer string) string {
	return stream + ":alive:" + group + ":" + consumer
}

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
	{KeyDedupe, "dedupe mark", ":dedupe:", false},                   // S:dedupe:<id>
	{KeyHeartbeat, "heartbeat", ":alive:", false},                   // S:alive:<group>:<consumer>
	{KeyTrimLease, "trim lease", ":trim-lease", true},               // S:trim-lease
	{KeyPartitionOwner, "partition owner", "}:owner:", false},       // {S:i}:owner:<group>
	{KeyPartitionMembers, "partition members", "}:members:", false}, // {S}:members:<group>
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

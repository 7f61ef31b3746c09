package worker

import (
	"hash/fnv"
	"strconv"
)

// Every Redis key the runtime uses is built here. For a stream key S the
// companions are S:delayed (a sorted set of envelopes scored by due time in
// ms), S:dlq (the dead-letter stream) and S:dedupe:<id> (SET with a TTL).
// Give S a hash tag ({orders}) on Redis Cluster so they share its slot.

// DelayedKey is the sorted set of retry and delayed envelopes for stream.
func DelayedKey(stream string) string { return stream + ":delayed" }

// DeadLetterKey is the dead-letter stream for stream.
func DeadLetterKey(stream string) string { return stream + ":dlq" }

// dedupeKey marks an idempotency key as processed on stream.
func dedupeKey(stream, id string) string { return stream + ":dedupe:" + id }

// dedupeMark is the value of a dedupe mark. The check reads it (GET) rather
// than asking whether the key exists: a producer may write under the
// stream's prefix, and a key it put there (a stream it XADDed, say) must not
// pass for a mark and suppress the event.
const dedupeMark = "1"

// PartitionStream is the stream key of partition i of the logical stream
// stream: {stream:i}. The braces make the whole name its hash tag, so each
// partition, with its :delayed, :dlq and :dedupe companions, lives in a slot
// of its own and the partitions spread over the nodes of a Redis Cluster. A
// partitioned logical stream is therefore named without braces.
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

// PartitionFor is the partition (0 ≤ p < n) that events with the partition
// key key go to: FNV-1a of the key, modulo n. Producers in any language
// reproduce it to keep per-key order with Go producers.
func PartitionFor(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n)) //nolint:gosec // n is a positive partition count
}

// partitionOwnerKey names the consumer of group that owns partition (a
// partition stream key) now: SET with a TTL of WORKER_PARTITION_LEASE,
// renewed while it is owned. It shares the partition's hash tag.
func partitionOwnerKey(partition, group string) string { return partition + ":owner:" + group }

// partitionMembersKey is the sorted set of the consumers of group that read
// the partitions of stream (a logical, unpartitioned name), each scored by
// when its membership runs out (unix ms). Its hash tag is {stream}, a slot of
// its own.
func partitionMembersKey(stream, group string) string {
	return "{" + stream + "}:members:" + group
}

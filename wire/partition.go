package wire

import "hash/fnv"

// PartitionFor is the partition (0 ≤ p < n) that events with the partition
// key key go to: FNV-1a (32 bit) of the key's bytes, modulo n. Producers in
// any language reproduce it to keep per-key order with Go producers.
func PartitionFor(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n)) //nolint:gosec // n is a positive partition count
}

package worker

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

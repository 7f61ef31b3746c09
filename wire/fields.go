package wire

// Fields a producer sets. Every other field is metadata: it reaches the
// handler as it is and is carried on retried copies and dead letters.
const (
	// FieldType is the routing key, e.g. order.created. An entry without
	// it, or with it empty, is dead-lettered.
	FieldType = "type"
	// FieldData is the payload, opaque bytes (JSON by convention).
	FieldData = "data"
	// FieldID is the producer's idempotency key, optional.
	FieldID = "id"
	// FieldKey is the partition key, optional: on a partitioned stream the
	// entries with one key go to one partition (PartitionFor) and run one at
	// a time, in order.
	FieldKey = "key"
	// FieldTraceparent is the W3C trace context, optional.
	FieldTraceparent = "traceparent"
)

// Fields the runtime sets on a retried or delayed copy of an entry, and
// keeps on its dead letter.
const (
	// FieldAttempt is the attempt the copy runs as, in decimal: 2 for the
	// first retry. Absent means 1; a value that is not decimal digits, or
	// is 0, counts as 1.
	FieldAttempt = "attempt"
	// FieldOriginID is the entry ID the event had when it was first added.
	FieldOriginID = "origin_id"
)

// Fields the runtime adds to a dead letter, beside FieldOriginID.
const (
	// FieldError is why the entry was dead-lettered.
	FieldError = "error"
	// FieldAttempts is how many attempts it had, in decimal.
	FieldAttempts = "attempts"
	// FieldFailedAt is when, in RFC 3339 with nanoseconds, UTC.
	FieldFailedAt = "failed_at"
	// FieldGroup is the consumer group that dead-lettered it.
	FieldGroup = "group"
	// FieldConsumer is the consumer that dead-lettered it.
	FieldConsumer = "consumer"
	// FieldEnvelope, on a dead letter, holds an entry that could not be
	// copied field by field, encoded as a delayed envelope (EncodeEnvelope):
	// a delayed envelope that did not decode or had more than MaxFields
	// pairs, or an entry with more than MaxFields pairs that failed.
	FieldEnvelope = "envelope"
)

// Package wire is the wire format of streamworker: the fields of a stream
// entry, the Redis keys kept beside a stream, the delayed-entry envelope, the
// partition hash and the Redis Cluster hash slot. It imports nothing but the
// standard library, so that a producer, an admin tool or a building block can
// speak the format without linking the consumer runtime, and this file is the
// reference for a producer written in another language.
//
// # The entry
//
// An event is one entry of a Redis stream (XADD), a flat list of field/value
// pairs. Names and values are byte strings; names are case-sensitive.
//
//	type         FieldType: the routing key, e.g. order.created. Required: an
//	             entry without it, or with it empty, is dead-lettered.
//	data         FieldData: the payload, opaque bytes (JSON by convention).
//	id           FieldID: optional idempotency key. With a dedupe window
//	             configured, an entry whose id was processed on the same
//	             stream inside the window is acknowledged without running.
//	key          FieldKey: optional partition key (see Partitions below).
//	traceparent  FieldTraceparent: optional W3C trace context.
//
// Every other field is metadata: it reaches the handler as it is and travels
// with every copy of the entry. A producer does not set attempt or origin_id;
// the runtime does (next section), and it reads them from any entry: attempt
// is decimal digits, and anything else, or 0, counts as attempt 1. The
// runtime dead-letters without running it an entry whose field names and
// values together take more than WORKER_MAX_MESSAGE_BYTES (4 MiB by
// default); Go producers refuse a payload over 1 MiB by default.
//
// # A retried or delayed copy
//
// When a handler fails and attempts remain, or asks for a delay, the runtime
// acknowledges the entry and, in the same Lua script, puts a copy of it in
// the delayed set S:delayed (Keys below), encoded as an envelope (Envelope
// below) whose token is the failed entry's ID. When it is due the copy is
// appended to S again, with a new entry ID. The copy holds every field of
// the entry, type and data first, except attempt and origin_id, followed by
//
//	attempt      FieldAttempt: the attempt the copy runs as, one more than the
//	             failed one (the same for a delay).
//	origin_id    FieldOriginID: the entry ID the event had when first added
//	             (kept from the failed entry, or its own ID on a first try).
//
// On a partitioned stream, an entry with a key is retried in place instead:
// it stays pending and runs again, so that the later entries of its key wait
// behind it; no copy is written.
//
// # A dead letter
//
// An entry that fails for good (a permanent error, its attempts spent, too
// large, no type, no handler, or delivered to consumers that never finished
// it as often as attempts allow) is appended to the dead-letter stream S:dlq
// and acknowledged in one script. The dead letter holds every field of the
// entry, type and data first, except those below, followed by
//
//	error        FieldError: why, in words; not a stable format.
//	attempts     FieldAttempts: how many attempts it had, in decimal.
//	origin_id    FieldOriginID: the entry ID the event had when first added.
//	failed_at    FieldFailedAt: when, RFC 3339 with nanoseconds, UTC.
//	group        FieldGroup: the consumer group.
//	consumer     FieldConsumer: the consumer.
//
// An entry of more than MaxFields field/value pairs, which no script can copy
// field by field, is dead-lettered at its first failure as its type (when it
// has one), envelope (FieldEnvelope: the whole entry, origin_id included, as
// an envelope whose token is its entry ID) and the six fields above. A member
// of the delayed set that does not decode as an envelope, or has more than
// MaxFields pairs, is moved to the dead-letter stream as error and envelope
// (the member as it was). Replaying a dead letter (streamctl dlq replay)
// appends its fields to S without error, attempts, failed_at, group, consumer
// and attempt, keeping origin_id, or the entry held in its envelope field.
//
// # Keys
//
// For a stream key S the runtime keeps, beside S:
//
//	S:delayed                  DelayedKey: sorted set of envelopes, each
//	                           scored by its due time in unix milliseconds.
//	S:dlq                      DeadLetterKey: the dead-letter stream.
//	S:cancelled                CancelledKey: sorted set of entry IDs of S
//	                           cancelled before they ran (streamctl cancel),
//	                           each scored by when, in unix ms; a worker
//	                           acknowledges such an entry unrun. Marks older
//	                           than CancelRetention (7 days) do not count.
//	S:dedupe:<id>              DedupeKey: the idempotency key id processed on S
//	                           (SET to DedupeMark, "1", with the dedupe window as TTL;
//	                           only that value counts: any other key there is
//	                           not a mark).
//	S:unique:<id>              UniqueKey: the idempotency key id published
//	                           on S by a unique publish (SET to the entry ID
//	                           added, with the unique window as TTL); while it
//	                           exists a unique publish of id adds nothing.
//	S:schedule                 ScheduleKey: hash of the periodic events
//	                           published to S: per schedule entry E ("TYPE
//	                           SPEC"), tick:E the last tick published (unix
//	                           ms) and entry:E the entry as a worker
//	                           registered it (JSON: time zone, missed-tick
//	                           policy).
//	S:alive:<group>:<consumer> HeartbeatKey: a consumer's heartbeat (SET to
//	                           "1" with the consumer gone-after age as TTL).
//	S:paused                   PausedKey: hash of the groups that must not
//	                           read S (field: the group, or * for every
//	                           group; value: when it was paused, unix ms).
//	                           Written by streamctl pause and resume; the
//	                           workers poll it (HMGET) every half WORKER_BLOCK.
//	S:trim-lease               TrimLeaseKey: the worker that trims S now, when
//	                           WORKER_RETENTION is set (SET to
//	                           "<group>/<consumer>" with a TTL of three trim
//	                           intervals); only its holder trims S.
//
// A partitioned logical stream L (named without braces) with N partitions is
// the N streams {L:0} … {L:N-1} (PartitionStream), each with the keys
// above but S:paused, and L:paused, which pauses all of them, and two kinds
// of keys of its own:
//
//	{L:i}:owner:<group>        PartitionOwnerKey: the consumer of group that
//	                           reads partition {L:i} now (SET to the consumer
//	                           name with the partition lease as TTL).
//	{L}:members:<group>        PartitionMembersKey: sorted set of the
//	                           consumers of group that read L's partitions,
//	                           each scored by when its membership runs out
//	                           (unix ms).
//
// ParseCompanion recognises these shapes; the runtime refuses to consume any
// of them as a stream.
//
// # Hash tags
//
// Redis Cluster puts a key in the slot of its hash tag — the text between its
// first '{' and the first '}' after it, when not empty — or of the whole key
// without one (HashTag, Slot: CRC-16/XMODEM modulo 16384, as CLUSTER KEYSLOT).
// The runtime's scripts touch S with S:delayed (retry), S with S:dlq
// (dead-letter), all three (promote) and S with its heartbeat keys (consumer
// clean-up), streamctl's cancel script S with S:cancelled, so on a cluster S must carry a hash tag ({orders}): then every
// key above that is built from S shares S's slot, and the runtime refuses at
// start a stream whose keys do not (S:paused is read alone, so its slot does
// not matter, but it shares S's all the same). A partition {L:i} is a hash tag of its
// own, so the partitions, each with its companions and its owner key, spread
// over the slots; {L}:members:<group> is in the slot of L, shared with
// none of them. On a single server, slots do not matter.
//
// # Envelope
//
// A member of S:delayed is an envelope (EncodeEnvelope, DecodeEnvelope): a
// token followed by the entry's field/value pairs, each string written as
//
//	<length>:<bytes>
//
// where length is the number of bytes in decimal ASCII, with no sign and no
// leading zero ("0" for an empty string), at most MaxLengthDigits digits, and
// bytes are the string as it is (binary safe: no escaping, no terminator).
// The strings follow each other with nothing between them or after the last.
// There is one token and at least one whole pair, so the count of strings is
// odd and at least 3. The token makes two envelopes of identical events two
// members of the set: the runtime uses the failed entry's ID, a producer a
// random string (Go producers: "d-" and 16 hex digits). The token is not
// written to the stream. For example, token 1-0 with type order.created and
// data {} is
//
//	3:1-04:type13:order.created4:data2:{}
//
// To schedule an event, a producer adds such a member to the delayed set of
// the stream (of the partition, on a partitioned stream) with its due time in
// unix milliseconds as the score (ZADD S:delayed <ms> <member>). The runtime
// moves due members, a bounded batch at a time, into S in one script; a
// member with more than MaxFields pairs, or that does not decode exactly as
// above, goes to S:dlq instead. A delayed event carries the fields of an
// entry (type, data, and so on); attempt and origin_id are set by the runtime
// only.
//
// # Partitions
//
// A producer sends an event of a partitioned logical stream L with N
// partitions to {L:p}, where p = PartitionFor(key, N): the 32-bit FNV-1a hash
// of the partition key's bytes, modulo N. Go producers take the key from the
// event's key field, else its id (so that a resend lands where the first
// went), else go round-robin. Each partition is read by one consumer of a
// group at a time, so the events of one key run one at a time, in the order
// they were added.
package wire

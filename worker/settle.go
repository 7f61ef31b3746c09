package worker

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// A failed message is settled by a script that writes its copy (a retry in
// the delayed set, or a dead letter) and acknowledges the original in one
// step. Each script acts only while the entry is pending in the group, so a
// script repeated after a lost reply, or run by two consumers for one entry,
// acts once: scripts run one at a time, and the first one's XACK ends the
// entry's pending state. Each writes its copy before it acknowledges: a copy
// that cannot be written stops the script with an error before the XACK, so
// the entry stays pending and is never acknowledged without its copy.
//
// A handler's failures are written in batches by settleScript
// (settlebatch.go), which keeps these guarantees per entry; the one-entry
// scripts here serve what must be settled at once: a suspect's failure
// (settleNow) and the dead letters of the dispatch path.

// retryScript schedules a copy for later and acknowledges the original.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :delayed sorted set
// ARGV[1] -> group
// ARGV[2] -> entry ID
// ARGV[3] -> due time, unix ms
// ARGV[4] -> envelope (see wire.EncodeEnvelope)
// Returns 1 when it scheduled the copy, 0 when the entry was not pending.
var retryScript = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// deadLetterScript appends a copy to the dead-letter stream and acknowledges
// the original, then drops the oldest dead letters past the bounds
// (WORKER_DLQ_MAXLEN, WORKER_DLQ_RETENTION), exactly, so that the
// dead-letter stream never holds more.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :dlq stream
// ARGV[1] -> group
// ARGV[2] -> entry ID
// ARGV[3] -> most dead letters kept; 0 for no bound
// ARGV[4] -> age of the oldest dead letter kept, ms; 0 for no bound
// ARGV[5..] -> field, value, field, value, ... of the dead-letter entry (at
// most wire.MaxFields pairs: unpack refuses much more)
// Returns 0 when the entry was not pending, else 1 + the dead letters dropped.
var deadLetterScript = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local dropped = 0
if ARGV[3] ~= '0' then dropped = dropped + redis.call('XTRIM', KEYS[2], 'MAXLEN', '=', ARGV[3]) end
if ARGV[4] ~= '0' then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[4])
  if ms > 0 then dropped = dropped + redis.call('XTRIM', KEYS[2], 'MINID', '=', string.format('%d', ms) .. '-0') end
end
return 1 + dropped
`)

// deadLetter moves m to the dead-letter stream (deadLetterFields).
func (r *engine) deadLetter(ctx context.Context, m *Message, cause error) error {
	return r.writeDeadLetter(ctx, m.Stream, m.ID, r.deadLetterFields(m, cause, time.Now()))
}

// writeDeadLetter runs deadLetterScript: the entry id of stream goes to the
// dead-letter stream with fields.
func (r *engine) writeDeadLetter(ctx context.Context, stream, id string, fields []string) error {
	args := make([]any, 0, 4+len(fields))
	args = append(args, r.cfg.Group, id, r.cfg.DLQMaxLen, r.cfg.DLQRetention.Milliseconds())
	for _, f := range fields {
		args = append(args, f)
	}
	n, err := deadLetterScript.Run(ctx, r.client, []string{stream, wire.DeadLetterKey(stream)}, args...).Int64()
	if err != nil {
		return err
	}
	r.deadDropped(stream, n-1)
	return nil
}

// deadLetterFields returns the fields of m's dead letter: its own plus why,
// when (at) and where it failed. When that is more than wire.MaxFields
// pairs, the entry's fields are kept whole in one wire.FieldEnvelope field
// instead, beside its type and the runtime's fields, so nothing of it is
// lost.
func (r *engine) deadLetterFields(m *Message, cause error, at time.Time) []string {
	added := []string{
		wire.FieldError, cause.Error(),
		wire.FieldAttempts, itoa(min(m.Attempt, r.cfg.MaxAttempts)),
		wire.FieldOriginID, m.OriginID,
		wire.FieldFailedAt, at.UTC().Format(time.RFC3339Nano),
		wire.FieldGroup, r.cfg.Group,
		wire.FieldConsumer, r.cfg.Consumer,
	}
	fields := m.copyFields(wire.FieldError, wire.FieldAttempts, wire.FieldOriginID, wire.FieldFailedAt, wire.FieldGroup, wire.FieldConsumer)
	if (len(fields)+len(added))/2 > wire.MaxFields {
		entry := append(m.copyFields(wire.FieldOriginID), wire.FieldOriginID, m.OriginID)
		fields = fields[:0]
		if typ, ok := m.field(wire.FieldType); ok {
			fields = append(fields, wire.FieldType, typ)
		}
		fields = append(fields, wire.FieldEnvelope, wire.EncodeEnvelope(m.ID, entry))
	}
	return append(fields, added...)
}

// deadDropped counts and logs n dead letters of stream dropped to keep its
// dead-letter stream within bounds.
func (r *engine) deadDropped(stream string, n int64) {
	if n <= 0 {
		return
	}
	r.metrics.Trim.DeadDropped.WithLabelValues(stream).Add(float64(n))
	r.logger.Warn("dead letters dropped, oldest first, to keep the dead-letter stream within WORKER_DLQ_MAXLEN and WORKER_DLQ_RETENTION",
		"stream", stream, "dlq", wire.DeadLetterKey(stream), "count", n, "max_len", r.cfg.DLQMaxLen, "retention", r.cfg.DLQRetention)
}

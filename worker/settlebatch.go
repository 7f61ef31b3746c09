package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// Failures are settled in batches, as acknowledgements are (acks.go): a
// handler that fails leaves its retry or dead letter in a buffer and takes
// its next message, and one loop writes what gathered with one script call
// per stream. A script call per failure, made from the handler's goroutine,
// cost a round trip and a script run each, which made a failing message
// several times as dear as one that succeeds.
//
// Until its outcome is written, a failed entry stays pending in the group
// and waiting here (waiting): the reclaimer does not run it again. A batch
// that cannot be written leaves its entries pending, exactly as a single
// failed script does (settle.go); a reclaim pass runs them again after the
// min-idle. Shutdown flushes what is left, after the handlers are done.
const (
	settleLinger = 2 * time.Millisecond
	settleFlush  = 256  // write at once when this many are waiting
	settleMax    = 4096 // handlers wait for room beyond this (Redis is failing)
	settleChunk  = 512  // most entries of one script call (Lua's unpack stays far from its limit)
)

// settleReq is one failed message's retry or dead letter, and what its log
// line and counter need once it is written.
type settleReq struct {
	stream, id, typ string
	attempt         int
	dead            bool
	due             int64    // a retry: when, unix ms
	envelope        string   // a retry: its copy (wire.EncodeEnvelope)
	fields          []string // a dead letter: its fields (deadLetterFields)
	outcome         string   // OutcomeRetried, OutcomeDelayed or OutcomeDead
	delay           time.Duration
	cause           error           // the handler's error
	logCtx          context.Context //nolint:containedctx // the message's span, for the log line written after the batch
	counted         bool            // a retry that waited in place until shutdown (inplace.go): logged and counted when it failed
}

// settleBuffer is where handlers leave failures for the settle loop.
type settleBuffer struct {
	mu      sync.Mutex
	room    sync.Cond // signalled when the loop takes the buffer
	buf     []settleReq
	sending []settleReq // being written by the loop
	ended   bool        // the loop has stopped: nothing more is written
	kick    chan struct{}
}

func newSettleBuffer() *settleBuffer {
	b := &settleBuffer{kick: make(chan struct{}, 1)}
	b.room.L = &b.mu
	return b
}

// add queues s and reports whether it was queued: after the loop has ended
// (a handler that ignored the shutdown deadline) it is not, and the entry
// stays pending.
func (b *settleBuffer) add(s settleReq) bool {
	b.mu.Lock()
	for len(b.buf) >= settleMax && !b.ended {
		b.room.Wait()
	}
	if b.ended {
		b.mu.Unlock()
		return false
	}
	b.buf = append(b.buf, s)
	n := len(b.buf)
	b.mu.Unlock()
	if n == 1 || n == settleFlush {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return true
}

func (b *settleBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// take moves what is queued to sending and returns it; end does the same
// for the last time and makes later adds no-ops.
func (b *settleBuffer) take(end bool) []settleReq {
	b.mu.Lock()
	out := b.buf
	b.sending, b.buf = out, nil
	if end {
		b.ended = true
	}
	b.mu.Unlock()
	b.room.Broadcast()
	return out
}

// sent ends the waiting of what take returned: it is written, or it failed
// and stays pending for a reclaim pass.
func (b *settleBuffer) sent() {
	b.mu.Lock()
	b.sending = nil
	b.mu.Unlock()
}

// waiting returns the IDs of stream's entries whose failure is queued or
// being written. It is for the reclaimer, rarely; it costs the hot path
// nothing.
func (b *settleBuffer) waiting(stream string) map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out map[string]bool
	for _, list := range [][]settleReq{b.buf, b.sending} {
		for _, s := range list {
			if s.stream == stream {
				if out == nil {
					out = map[string]bool{}
				}
				out[s.id] = true
			}
		}
	}
	return out
}

// notSettleWaiting drops from claimed entries those that failed here and
// whose retry or dead letter waits to be written, or whose retry waits in
// place (inplace.go): running them again would run them twice. The write
// on its way ends their pending state; the retry in place runs them.
func (r *engine) notSettleWaiting(stream string, entries []reclaim.Entry) []reclaim.Entry {
	if len(entries) == 0 {
		return entries
	}
	waiting := r.settles.waiting(stream)
	for id := range r.inPlace.waiting(stream) {
		if waiting == nil {
			waiting = map[string]bool{}
		}
		waiting[id] = true
	}
	if len(waiting) == 0 {
		return entries
	}
	out := entries[:0]
	for _, e := range entries {
		if !waiting[e.ID] {
			out = append(out, e)
		}
	}
	if n := len(entries) - len(out); n > 0 {
		r.logger.Info("claimed entries that failed here, their retry or dead letter waiting to be written or their retry waiting in place; not run again", "stream", stream, "count", n)
	}
	return out
}

// settleLoop writes the queued failures in batches until ctx ends, then
// writes what is left and stops.
func (r *engine) settleLoop(ctx context.Context) error {
	stop := ctx.Done()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-r.settles.kick:
		case <-stop:
			r.settleBatch(r.settles.take(true))
			r.settles.sent()
			return nil
		}
		if r.settles.len() < settleFlush {
			linger.Reset(settleLinger)
			select {
			case <-r.settles.kick:
			case <-linger.C:
			case <-stop:
			}
			linger.Stop()
		}
		r.settleBatch(r.settles.take(false))
		r.settles.sent()
	}
}

// settleBatch writes batch with a script call per stream (and per
// settleChunk entries), the streams' calls at once: a stream whose primary
// does not answer holds up only its own.
func (r *engine) settleBatch(batch []settleReq) {
	if len(batch) == 0 {
		return
	}
	var chunks [][]settleReq
	first := batch[0].stream
	same := true
	for _, s := range batch {
		if s.stream != first {
			same = false
			break
		}
	}
	if same {
		for len(batch) > 0 {
			n := min(len(batch), settleChunk)
			chunks = append(chunks, batch[:n])
			batch = batch[n:]
		}
	} else {
		byStream := map[string][]settleReq{}
		var order []string
		for _, s := range batch {
			if _, ok := byStream[s.stream]; !ok {
				order = append(order, s.stream)
			}
			byStream[s.stream] = append(byStream[s.stream], s)
		}
		for _, st := range order {
			list := byStream[st]
			for len(list) > 0 {
				n := min(len(list), settleChunk)
				chunks = append(chunks, list[:n])
				list = list[n:]
			}
		}
	}
	if len(chunks) == 1 {
		r.settleChunk(chunks[0])
		return
	}
	var wg sync.WaitGroup
	for _, c := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.settleChunk(c)
		}()
	}
	wg.Wait()
}

// settleChunk writes the failures of one stream with one script call and
// records each one's outcome.
func (r *engine) settleChunk(chunk []settleReq) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	dropped, err := r.writeSettles(ctx, chunk)
	if err != nil {
		r.health.noted(err)
		r.metrics.redisError(OpSettle)
		for i := range chunk {
			r.notSettled(&chunk[i], err)
		}
		return
	}
	r.deadDropped(chunk[0].stream, dropped)
	var due int64
	for i := range chunk {
		if s := &chunk[i]; !s.dead && (due == 0 || s.due < due) {
			due = s.due
		}
		r.settled(&chunk[i])
	}
	if due != 0 {
		r.promote.due(chunk[0].stream, time.UnixMilli(due)) // promote.go: the pass that moves the soonest runs when it falls due
	}
}

// settleScript writes the copies of a batch of one stream's failed entries
// and acknowledges them: retries into the delayed set, dead letters into
// the dead-letter stream. It keeps the guarantees of retryScript and
// deadLetterScript (settle.go) for each entry: what it leaves written is
// only for the entries still pending in the group (once for an ID given
// twice), so that a batch repeated after a lost reply acts once, and every
// copy is written before any acknowledgement. A write that fails stops the
// script before the XACKs, leaving every entry pending; the type checks
// come before any write, and Redis refuses a write for want of memory only
// while the script has written nothing. Then the oldest dead letters past
// the bounds are dropped, exactly, as deadLetterScript does.
//
// A retry is not looked up first (an XPENDING per entry, two fifths of the
// script's time): its copy is added unless that very member is there
// (ZADD NX, which says whether it added it), then its entry is acknowledged
// alone (XACK, which says whether it was pending). An entry that was not
// pending (acknowledged elsewhere, or a batch repeated after a lost reply)
// has the copy added now removed again; a member that was there before is
// the copy of the run that acknowledged it, and stays. Replicas and the AOF
// see that add and remove, and an XACK per retry. When Redis refuses the
// copies for want of memory, the entries are looked up after all: a batch
// none of whose entries is pending has nothing to write, and succeeds, as
// it did when each was looked up first. A dead letter, rare, is looked up
// first: an XADD always adds.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :delayed sorted set
// KEYS[3] -> the stream's :dlq stream
// ARGV[1] -> group
// ARGV[2] -> most dead letters kept; 0 for no bound
// ARGV[3] -> age of the oldest dead letter kept, ms; 0 for no bound
// ARGV[4] -> how many retries follow (R)
// ARGV[5..] -> R times: entry ID, due time (unix ms), envelope (wire.EncodeEnvelope);
// then per dead letter: entry ID, n, and its n field, value, ... strings
// (at most wire.MaxFields pairs)
// Returns {entries acted on, dead letters dropped}.
var settleScript = redis.NewScript(`
local group, nretry = ARGV[1], tonumber(ARGV[4])
local seen, retries = {}, {}
for j = 0, nretry - 1 do
  local id = ARGV[5 + 3 * j]
  if not seen[id] then
    seen[id] = true
    retries[#retries + 1] = 5 + 3 * j
  end
end
local dead, deadIDs = {}, {}
local i = 5 + 3 * nretry
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  if not seen[id] then
    seen[id] = true
    if #redis.call('XPENDING', KEYS[1], group, id, id, 1) > 0 then
      deadIDs[#deadIDs + 1] = id
      dead[#dead + 1] = i + 2
      dead[#dead + 1] = i + 1 + n
    end
  end
  i = i + 2 + n
end
if #retries == 0 and #dead == 0 then return {0, 0} end
do
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t ~= 'none' and t ~= 'stream' then return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a stream') end
end
if #retries > 0 then
  local t = redis.call('TYPE', KEYS[2])['ok']
  if t ~= 'none' and t ~= 'zset' then return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' is not a sorted set') end
end
if #dead > 0 then
  local t = redis.call('TYPE', KEYS[3])['ok']
  if t ~= 'none' and t ~= 'stream' then return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' is not a stream') end
end
local added, wrote = {}, false
for k, a in ipairs(retries) do
  local r = redis.pcall('ZADD', KEYS[2], 'NX', ARGV[a + 1], ARGV[a + 2])
  if type(r) == 'table' and r.err then
    -- Refused, with nothing written yet (out of memory): fine when no
    -- entry of the batch is pending any more.
    if not wrote and #dead == 0 then
      local any = false
      for _, b in ipairs(retries) do
        if #redis.call('XPENDING', KEYS[1], group, ARGV[b], ARGV[b], 1) > 0 then
          any = true
          break
        end
      end
      if not any then return {0, 0} end
    end
    return r
  end
  added[k] = r
  wrote = wrote or r == 1
end
for j = 1, #dead, 2 do
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, dead[j], dead[j + 1]))
end
local acted = #deadIDs
if #deadIDs > 0 then redis.call('XACK', KEYS[1], group, unpack(deadIDs)) end
for k, a in ipairs(retries) do
  if redis.call('XACK', KEYS[1], group, ARGV[a]) == 1 then
    acted = acted + 1
  elseif added[k] == 1 then
    redis.call('ZREM', KEYS[2], ARGV[a + 2])
  end
end
local dropped = 0
if #dead > 0 then
  if ARGV[2] ~= '0' then dropped = dropped + redis.call('XTRIM', KEYS[3], 'MAXLEN', '=', ARGV[2]) end
  if ARGV[3] ~= '0' then
    local t = redis.call('TIME')
    local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
    if ms > 0 then dropped = dropped + redis.call('XTRIM', KEYS[3], 'MINID', '=', string.format('%d', ms) .. '-0') end
  end
end
return {acted, dropped}
`)

// writeSettles runs settleScript on chunk, whose entries are all of one
// stream, and returns how many dead letters it dropped.
func (r *engine) writeSettles(ctx context.Context, chunk []settleReq) (dropped int64, err error) {
	stream := chunk[0].stream
	n := 4
	for i := range chunk {
		if chunk[i].dead {
			n += 2 + len(chunk[i].fields)
		} else {
			n += 3
		}
	}
	args := make([]any, 0, n)
	retries := 0
	for i := range chunk {
		if !chunk[i].dead {
			retries++
		}
	}
	args = append(args, r.cfg.Group, r.cfg.DLQMaxLen, r.cfg.DLQRetention.Milliseconds(), retries)
	for i := range chunk {
		if s := &chunk[i]; !s.dead {
			args = append(args, s.id, s.due, s.envelope)
		}
	}
	for i := range chunk {
		if s := &chunk[i]; s.dead {
			args = append(args, s.id, len(s.fields))
			for _, f := range s.fields {
				args = append(args, f)
			}
		}
	}
	res, err := settleScript.Run(ctx, r.client, []string{stream, wire.DelayedKey(stream), wire.DeadLetterKey(stream)}, args...).Int64Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("settle script returned %d values, want 2", len(res))
	}
	if retries > 0 {
		r.health.wrote()
	}
	if acted := int(res[0]); acted < len(chunk) {
		r.logger.Debug("failed messages no longer pending (acknowledged elsewhere, or trimmed from the stream); nothing written for them",
			"stream", stream, "count", len(chunk)-acted)
	}
	return res[1], nil
}

// settled logs and counts the outcome of a failure whose retry or dead
// letter is written.
func (r *engine) settled(s *settleReq) {
	if s.counted {
		return
	}
	if !s.dead {
		r.logRetry(s.logCtx, s.stream, s.id, s.typ, s.outcome, s.attempt, s.delay, s.cause, false)
	} else if ok, skipped := r.failLogs.allow(s.stream, s.typ, s.outcome); ok {
		r.logger.WarnContext(s.logCtx, "message dead-lettered", notLogged(skipped, "stream", s.stream, "id", s.id, "type", shownType(s.typ), "attempt", s.attempt, "error", s.cause.Error())...)
	}
	r.metrics.finished(s.stream, s.typ, s.outcome, 1)
}

// logRetry logs a failure retried after delay, through the delayed set or
// in place (inplace.go): a delay (OutcomeDelayed) at debug, a failure for
// the first few a second of its kind (failLogs).
func (r *engine) logRetry(logCtx context.Context, stream, id, typ, outcome string, attempt int, delay time.Duration, cause error, inPlace bool) {
	delayed, failed := "message delayed", "message failed; retry scheduled"
	if inPlace {
		delayed, failed = "message delayed in place", "message failed; retrying in place"
	}
	if outcome == OutcomeDelayed {
		r.logger.DebugContext(logCtx, delayed, "stream", stream, "id", id, "type", shownType(typ), "run_in", delay.Round(time.Millisecond), "reason", cause.Error())
	} else if ok, skipped := r.failLogs.allow(stream, typ, outcome); ok {
		r.logger.InfoContext(logCtx, failed, notLogged(skipped, "stream", stream, "id", id, "type", shownType(typ),
			"attempt", attempt, "retry_in", delay.Round(time.Millisecond), "error", firstLine(cause.Error()))...)
	}
}

// notSettled logs and counts a failure whose retry or dead letter could not
// be written: the entry stays pending.
func (r *engine) notSettled(s *settleReq, err error) {
	if s.dead {
		r.logger.ErrorContext(s.logCtx, "could not dead-letter message; it stays pending", "stream", s.stream, "id", s.id, "type", shownType(s.typ), "error", err, "handler_error", s.cause.Error())
	} else {
		r.logger.ErrorContext(s.logCtx, "could not schedule retry; message stays pending", "stream", s.stream, "id", s.id, "type", shownType(s.typ), "error", err, "handler_error", s.cause.Error())
	}
	if !s.counted {
		r.metrics.finished(s.stream, s.typ, OutcomeUnrecorded, 1)
	}
}

// settleNow writes one failure at once, for a message that must be settled
// before the next one runs (a suspect), with the one-entry scripts of
// settle.go, and returns its outcome.
func (r *engine) settleNow(s *settleReq) string {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var err error
	if s.dead {
		err = r.writeDeadLetter(ctx, s.stream, s.id, s.fields)
	} else {
		err = retryScript.Run(ctx, r.client, []string{s.stream, wire.DelayedKey(s.stream)}, r.cfg.Group, s.id, s.due, s.envelope).Err()
		if err == nil {
			r.health.wrote()
			r.promote.due(s.stream, time.UnixMilli(s.due))
		}
	}
	if err != nil {
		r.health.noted(err)
		r.metrics.redisError(OpSettle)
		r.notSettled(s, err)
		return OutcomeUnrecorded
	}
	r.settled(s)
	return s.outcome
}

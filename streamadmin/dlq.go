package streamadmin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// DeadLetter is one entry of a dead-letter stream: the original fields plus
// those the runtime adds (wire.FieldError, FieldAttempts, FieldOriginID,
// FieldFailedAt, FieldGroup, FieldConsumer).
type DeadLetter struct {
	ID     string
	Fields map[string]string
}

// DeadLetters returns up to limit entries of stream's dead-letter stream,
// oldest first, and its length.
func (a *Admin) DeadLetters(ctx context.Context, stream string, limit int64) ([]DeadLetter, int64, error) {
	key := wire.DeadLetterKey(stream)
	pipe := a.client.Pipeline()
	n := pipe.XLen(ctx, key)
	r := pipe.XRangeN(ctx, key, "-", "+", limit)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	out := make([]DeadLetter, len(r.Val()))
	for i, m := range r.Val() {
		out[i] = DeadLetter{ID: m.ID, Fields: make(map[string]string, len(m.Values))}
		for k, v := range m.Values {
			out[i].Fields[k] = fmt.Sprint(v)
		}
	}
	return out, n.Val(), nil
}

// DeadLetterRange returns up to count entries of stream's dead-letter
// stream between start and end (XRANGE bounds: "-", "+", an entry ID, or
// "(" and an ID to leave it out), oldest first, and the ID of the last one
// ("" when there is none), from which a caller goes on.
func (a *Admin) DeadLetterRange(ctx context.Context, stream, start, end string, count int64) ([]DeadLetter, string, error) {
	key := wire.DeadLetterKey(stream)
	msgs, err := a.client.XRangeN(ctx, key, start, end, count).Result()
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", key, err)
	}
	out := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		out[i] = DeadLetter{ID: m.ID, Fields: make(map[string]string, len(m.Values))}
		for k, v := range m.Values {
			out[i].Fields[k] = fmt.Sprint(v)
		}
	}
	if len(msgs) == 0 {
		return out, "", nil
	}
	return out, msgs[len(msgs)-1].ID, nil
}

// ReplayOutcome is what became of one dead letter asked to be replayed.
type ReplayOutcome int

const (
	// Replayed: the entry is back in the stream and gone from the DLQ.
	Replayed ReplayOutcome = iota
	// NotFound: no entry with that ID is in the DLQ.
	NotFound
	// NoType: the entry has no type field and stays in the DLQ; the worker
	// would only dead-letter it again.
	NoType
)

func (o ReplayOutcome) String() string {
	switch o {
	case Replayed:
		return "replayed"
	case NotFound:
		return "not in the dead-letter stream"
	case NoType:
		return "has no type field; left in the dead-letter stream"
	}
	return "ReplayOutcome(" + strconv.Itoa(int(o)) + ")"
}

// ReplayResult is the outcome for one dead-letter ID.
type ReplayResult struct {
	// ID is the dead-letter entry ID.
	ID      string
	Outcome ReplayOutcome
	// NewID is the entry ID of the copy in the stream, when Replayed.
	NewID string
}

// replayBatch is how many dead letters one script call moves.
const replayBatch = 100

// Replay moves the dead letters with the given IDs back into stream, each
// atomically, without the runtime's dead-letter fields and with its attempt
// count reset; see replayScript. Every ID is checked with CheckID first.
func (a *Admin) Replay(ctx context.Context, stream string, ids []string) ([]ReplayResult, error) {
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return nil, err
		}
	}
	out := make([]ReplayResult, 0, len(ids))
	for start := 0; start < len(ids); start += replayBatch {
		batch := ids[start:min(start+replayBatch, len(ids))]
		res, err := a.replay(ctx, stream, batch)
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ReplayAll replays every dead letter of stream that was there when it
// started; entries dead-lettered meanwhile, such as replayed ones that fail
// again, stay for another run. It returns how many were replayed and the IDs
// left behind for having no type.
func (a *Admin) ReplayAll(ctx context.Context, stream string) (int, []string, error) {
	key := wire.DeadLetterKey(stream)
	last, err := a.lastID(ctx, key)
	if err != nil || last == "" {
		return 0, nil, err
	}
	var replayed int
	var noType []string
	from := "-"
	for {
		msgs, err := a.client.XRangeN(ctx, key, from, last, replayBatch).Result()
		if err != nil {
			return replayed, noType, fmt.Errorf("reading %s: %w", key, err)
		}
		if len(msgs) == 0 {
			return replayed, noType, nil
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		res, err := a.replay(ctx, stream, ids)
		for _, r := range res {
			switch r.Outcome {
			case Replayed:
				replayed++
			case NoType:
				noType = append(noType, r.ID)
			}
		}
		if err != nil {
			return replayed, noType, err
		}
		from = "(" + ids[len(ids)-1]
	}
}

// replayStrip are the fields a replayed copy leaves out: those the runtime
// added when it dead-lettered the entry, and attempt, so the copy starts
// again at attempt 1.
var replayStrip = []string{
	wire.FieldError, wire.FieldAttempts, wire.FieldFailedAt, wire.FieldGroup, wire.FieldConsumer,
	wire.FieldAttempt,
}

// replayScript moves dead letters back into their stream. For each ID it
// copies the entry to the stream without the fields in replayStrip; origin_id,
// id, data and every other field are kept. The dead letter is deleted only
// after its copy is in: a failed XADD stops the script before the XDEL. An
// entry without a type is left alone, since the worker would dead-letter it
// again at once. The script leaves to its caller (replayWhole) what it cannot
// copy: a copy of more than ARGV[1] pairs, which unpack would refuse after
// earlier entries were moved, and a dead letter that holds its entry whole
// in an envelope field (it has no other field but the runtime's, type and
// origin_id). Every loop is bounded by the length of a reply or of ARGV.
//
// KEYS[1] -> the stream's :dlq stream
// KEYS[2] -> the stream
// ARGV[1] -> most field/value pairs to copy (wire.MaxFields)
// ARGV[2] -> the type field name (wire.FieldType)
// ARGV[3] -> the envelope field name (wire.FieldEnvelope)
// ARGV[4] -> the origin_id field name (wire.FieldOriginID)
// ARGV[5] -> n, how many names follow to leave out (replayStrip)
// ARGV[6..5+n] -> the names
// ARGV[6+n..] -> dead-letter entry IDs
// Returns per ID: the new entry ID, 0 when the ID is not in the dead-letter
// stream, -1 when the entry has no type, or -2 when it is left to the caller.
var replayScript = redis.NewScript(`
local maxValues, n = 2 * tonumber(ARGV[1]), tonumber(ARGV[5])
local strip = {}
for i = 6, 5 + n do strip[ARGV[i]] = true end
local out = {}
for i = 6 + n, #ARGV do
  local id = ARGV[i]
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if #e == 0 then
    out[#out + 1] = 0
  else
    local f, fields, typed, envelope, others = e[1][2], {}, false, false, 0
    for j = 1, #f - 1, 2 do
      local k = f[j]
      if k == ARGV[2] then
        if f[j + 1] ~= '' then typed = true end
      elseif k == ARGV[3] then
        envelope = true
      elseif k ~= ARGV[4] and not strip[k] then
        others = others + 1
      end
      if not strip[k] then
        fields[#fields + 1] = k
        fields[#fields + 1] = f[j + 1]
      end
    end
    if (envelope and others == 0) or #fields > maxValues then
      out[#out + 1] = -2
    elseif typed then
      out[#out + 1] = redis.call('XADD', KEYS[2], '*', unpack(fields))
      redis.call('XDEL', KEYS[1], id)
    else
      out[#out + 1] = -1
    end
  end
end
return out
`)

func (a *Admin) replay(ctx context.Context, stream string, ids []string) ([]ReplayResult, error) {
	args := make([]any, 0, 5+len(replayStrip)+len(ids))
	args = append(args, wire.MaxFields, wire.FieldType, wire.FieldEnvelope, wire.FieldOriginID, len(replayStrip))
	for _, f := range replayStrip {
		args = append(args, f)
	}
	for _, id := range ids {
		args = append(args, id)
	}
	key := wire.DeadLetterKey(stream)
	reply, err := replayScript.Run(ctx, a.client, []string{key, stream}, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("replaying %s into %s: %w", key, stream, err)
	}
	if len(reply) != len(ids) {
		return nil, fmt.Errorf("replaying %s: script returned %d results for %d IDs", key, len(reply), len(ids))
	}
	out := make([]ReplayResult, len(ids))
	var whole []int // left to replayWhole, after the script's batch
	for i, v := range reply {
		out[i] = ReplayResult{ID: ids[i]}
		switch v := v.(type) {
		case string:
			out[i].Outcome, out[i].NewID = Replayed, v
		case int64:
			switch v {
			case 0:
				out[i].Outcome = NotFound
			case -1:
				out[i].Outcome = NoType
			case -2:
				whole = append(whole, i)
			default:
				return nil, fmt.Errorf("replaying %s: unexpected script result %d", key, v)
			}
		default:
			return nil, fmt.Errorf("replaying %s: unexpected script result %T", key, v)
		}
	}
	for n, i := range whole {
		if out[i], err = a.replayWhole(ctx, stream, ids[i]); err != nil {
			// Report what was done: the script's results and the ones
			// replayed whole so far.
			left := whole[n:]
			done := make([]ReplayResult, 0, len(out)-len(left))
			for j, r := range out {
				if !slices.Contains(left, j) {
					done = append(done, r)
				}
			}
			return done, err
		}
	}
	return out, nil
}

// replayGuardScript deletes a dead letter once its copy is in. It runs in
// the transaction of replayWhole right after the XADD of the copy, where the
// copy is the stream's newest entry (nothing runs in between), and deletes
// the dead letter only when that entry holds exactly the copy's fields: an
// XADD that failed inside the transaction, which does not stop it, leaves the
// dead letter in place. The comparison is a loop, bounded by ARGV, where
// unpack would be bounded by Lua's stack.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :dlq stream
// ARGV[1] -> dead-letter entry ID
// ARGV[2..] -> the copy's fields: field, value, ...
// Returns 1 when it deleted the dead letter, 0 when the copy is not there.
var replayGuardScript = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
local f = last[1][2]
if #f ~= #ARGV - 1 then return 0 end
for i = 1, #f do
  if f[i] ~= ARGV[i + 1] then return 0 end
end
return redis.call('XDEL', KEYS[2], ARGV[1])
`)

// replayWatchTries bounds how often replayWhole starts again because the
// dead-letter stream changed under it.
const replayWatchTries = 20

// replayWhole replays one dead letter the script left to it (see
// replayScript): it reads the entry, builds the copy in Go, where a field
// list has no length limit, and writes the copy and deletes the dead letter
// in one transaction, watched so that two replays of one entry copy it once.
func (a *Admin) replayWhole(ctx context.Context, stream, id string) (ReplayResult, error) {
	key := wire.DeadLetterKey(stream)
	res := ReplayResult{ID: id}
	txf := func(tx *redis.Tx) error {
		res = ReplayResult{ID: id}
		dead, found, err := rawEntry(ctx, tx, key, id)
		if err != nil || !found {
			res.Outcome = NotFound
			return err
		}
		fields, ok := replayCopy(dead)
		if !ok {
			res.Outcome = NoType
			return nil
		}
		guard := make([]any, 0, 1+len(fields))
		guard = append(guard, id)
		for _, f := range fields {
			guard = append(guard, f)
		}
		var add *redis.StringCmd
		var del *redis.Cmd
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			add = p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
			// Eval, not EvalSha: a NOSCRIPT inside the transaction would
			// leave the copy in with its dead letter.
			del = replayGuardScript.Eval(ctx, p, []string{stream, key}, guard...)
			return nil
		})
		if err != nil {
			return err
		}
		if n, _ := del.Int(); n != 1 {
			return fmt.Errorf("the copy of %s is not the newest entry of %s; the dead letter is kept", id, stream)
		}
		res.Outcome, res.NewID = Replayed, add.Val()
		return nil
	}
	for range replayWatchTries {
		err := a.client.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("replaying %s from %s into %s: %w", id, key, stream, err)
		}
		return res, nil
	}
	return res, fmt.Errorf("replaying %s from %s: the dead-letter stream kept changing; try again", id, key)
}

// rawEntry reads one entry's fields in their order, duplicates included
// (go-redis's XMessage keeps them in a map).
func rawEntry(ctx context.Context, tx *redis.Tx, key, id string) ([]string, bool, error) {
	cmd := redis.NewSliceCmd(ctx, "XRANGE", key, id, id)
	_ = tx.Process(ctx, cmd)
	reply, err := cmd.Result()
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", key, err)
	}
	if len(reply) == 0 {
		return nil, false, nil
	}
	entry, ok := reply[0].([]any)
	if !ok || len(entry) != 2 {
		return nil, false, fmt.Errorf("reading %s: unexpected reply %T", key, reply[0])
	}
	raw, ok := entry[1].([]any)
	if !ok {
		return nil, false, fmt.Errorf("reading %s: unexpected fields %T", key, entry[1])
	}
	fields := make([]string, len(raw))
	for i, v := range raw {
		if fields[i], ok = v.(string); !ok {
			return nil, false, fmt.Errorf("reading %s: unexpected field %T", key, v)
		}
	}
	return fields, true, nil
}

// replayCopy returns the fields a dead letter is replayed with, by the rules
// of replayScript: its own, or, for one that holds its entry whole in an
// envelope field, the envelope's; either way without replayStrip. ok is false
// when the copy would have no type, or the envelope does not decode (the
// promote script's dead letter of a malformed member).
func replayCopy(dead []string) (fields []string, ok bool) {
	var envelope string
	whole, others := false, 0
	for i := 0; i+1 < len(dead); i += 2 {
		switch k := dead[i]; {
		case k == wire.FieldType:
		case k == wire.FieldEnvelope:
			whole, envelope = true, dead[i+1]
		case k != wire.FieldOriginID && !slices.Contains(replayStrip, k):
			others++
		}
	}
	src := dead
	if whole && others == 0 {
		_, inner, err := wire.DecodeEnvelope(envelope)
		if err != nil {
			return nil, false
		}
		src = inner
	}
	fields = make([]string, 0, len(src))
	for i := 0; i+1 < len(src); i += 2 {
		if slices.Contains(replayStrip, src[i]) {
			continue
		}
		if src[i] == wire.FieldType && src[i+1] != "" {
			ok = true
		}
		fields = append(fields, src[i], src[i+1])
	}
	return fields, ok
}

// Purge deletes the dead letters with the given IDs from stream's DLQ for
// good and returns the IDs that were not there. Every ID is checked with
// CheckID first.
func (a *Admin) Purge(ctx context.Context, stream string, ids []string) (deleted int64, missing []string, err error) {
	for _, id := range ids {
		if err := CheckID(id); err != nil {
			return 0, nil, err
		}
	}
	key := wire.DeadLetterKey(stream)
	pipe := a.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XDel(ctx, key, id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, nil, fmt.Errorf("deleting from %s: %w", key, err)
	}
	for i, c := range cmds {
		if c.Val() == 0 {
			missing = append(missing, ids[i])
		}
		deleted += c.Val()
	}
	return deleted, missing, nil
}

// PurgeAll deletes every dead letter of stream that is there when it starts
// (entries dead-lettered meanwhile stay) and returns how many it deleted.
func (a *Admin) PurgeAll(ctx context.Context, stream string) (int64, error) {
	key := wire.DeadLetterKey(stream)
	last, err := a.lastID(ctx, key)
	if err != nil || last == "" {
		return 0, err
	}
	// XTRIM MINID removes the entries below the threshold: everything up to
	// and including last.
	n, err := a.client.XTrimMinID(ctx, key, nextID(last)).Result()
	if err != nil {
		return 0, fmt.Errorf("trimming %s: %w", key, err)
	}
	return n, nil
}

// lastID returns the newest entry ID of a stream, "" when it is empty.
func (a *Admin) lastID(ctx context.Context, key string) (string, error) {
	msgs, err := a.client.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// nextID returns the smallest entry ID greater than id.
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	s, _ := strconv.ParseUint(seq, 10, 64)
	if s == ^uint64(0) {
		m, _ := strconv.ParseUint(ms, 10, 64)
		return strconv.FormatUint(m+1, 10) + "-0"
	}
	return ms + "-" + strconv.FormatUint(s+1, 10)
}

package streamadmin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// CancelStatus is what Cancel made of one ID.
type CancelStatus string

const (
	// CancelledDelayed: retries or delayed events matching the ID were
	// removed from the delayed set; they will not run.
	CancelledDelayed CancelStatus = "cancelled-delayed"
	// CancelledQueued: the entry is in the stream and not yet delivered to
	// the group; it is marked, and a worker acknowledges it without running
	// it.
	CancelledQueued CancelStatus = "cancelled-queued"
	// CancelledPending: the entry was delivered and is not acknowledged
	// (its consumer may have died); it is marked, and the consumer that
	// next takes it acknowledges it without running it. A handler already
	// running it finishes.
	CancelledPending CancelStatus = "cancelled-pending"
	// AlreadyDone: the entry was delivered to the group and acknowledged
	// (handled, retried as a new entry, dead-lettered or skipped); there is
	// nothing left to cancel.
	AlreadyDone CancelStatus = "already-done"
	// CancelNotFound: nothing matches the ID: no delayed event, and no
	// entry of the stream (trimmed, deleted or never added).
	CancelNotFound CancelStatus = "not-found"
)

// Cancelled reports whether the status means the ID will not run.
func (s CancelStatus) Cancelled() bool {
	return s == CancelledDelayed || s == CancelledQueued || s == CancelledPending
}

// CancelResult is the outcome for one ID given to Cancel.
type CancelResult struct {
	// ID is as given: an entry ID or an event's id field.
	ID     string
	Status CancelStatus
	// Delayed is how many members of the delayed set were removed
	// (CancelledDelayed): an event id may name several.
	Delayed int
	// Consumer holds the entry, when CancelledPending.
	Consumer string
}

// cancelDelayedScan is the COUNT of one ZSCAN of the delayed set: one page of
// members is in memory at a time, however large the set.
const cancelDelayedScan = 1000

// cancelBatch is how many entry IDs one run of cancelScript looks at.
const cancelBatch = 100

// Cancel keeps each of ids from running on stream. An ID is an entry ID
// (<ms>-<seq>) or the id field of an event (wire.FieldID). First the
// delayed set is searched, a page at a time (ZSCAN), for members whose
// token, origin_id or id field is one of ids — a retry waiting there has
// the failed entry's ID as its token and the first one as its origin_id; a
// producer's delayed event is found by its id field — and those are
// removed. An entry ID not found there is looked up in the stream for
// group (cancelScript): pending or not yet delivered, it is marked in
// wire.CancelledKey, which every group's workers honour; delivered and
// acknowledged, it is AlreadyDone. An event id that is not in the delayed
// set is CancelNotFound: entries in the stream are named by entry ID.
//
// A mark affects entries not yet started: a handler running the entry when
// it is marked finishes, and a worker learns of new marks within a second.
func (a *Admin) Cancel(ctx context.Context, stream, group string, ids []string) ([]CancelResult, error) {
	if len(ids) == 0 {
		return nil, errors.New("no ID to cancel")
	}
	out := make([]CancelResult, len(ids))
	for i, id := range ids {
		if id == "" {
			return nil, errors.New("an empty ID: want an entry ID (<ms>-<seq>) or an event's id field")
		}
		out[i] = CancelResult{ID: id, Status: CancelNotFound}
	}
	removed, err := a.cancelDelayed(ctx, stream, ids)
	if err != nil {
		return nil, err
	}
	var entries []int // indexes of entry IDs left to look up in the stream
	norms := make([]string, len(ids))
	for i, id := range ids {
		if n := removed[id]; n > 0 {
			out[i].Status, out[i].Delayed = CancelledDelayed, n
			continue
		}
		if norm, ok := entryID(id); ok {
			entries = append(entries, i)
			norms[i] = norm
		}
	}
	for start := 0; start < len(entries); start += cancelBatch {
		batch := entries[start:min(start+cancelBatch, len(entries))]
		if err := a.cancelEntries(ctx, stream, group, norms, batch, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// entryID returns id in canonical form (no leading zeros) when it is an
// entry ID.
func entryID(id string) (string, bool) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return "", false
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil || strings.HasPrefix(ms, "+") || strings.HasPrefix(seq, "+") {
		return "", false
	}
	return strconv.FormatUint(m, 10) + "-" + strconv.FormatUint(s, 10), true
}

// cancelDelayed removes from the delayed set of stream the members that
// match one of ids (token, origin_id or id field) and returns how many it
// removed per ID. A member promoted or removed meanwhile is not counted.
func (a *Admin) cancelDelayed(ctx context.Context, stream string, ids []string) (map[string]int, error) {
	key := wire.DelayedKey(stream)
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
		if norm, ok := entryID(id); ok {
			want[norm] = true
		}
	}
	matched := map[string][]string{} // member -> the IDs it matches
	var cursor uint64
	for {
		page, next, err := a.client.ZScan(ctx, key, cursor, "", cancelDelayedScan).Result()
		if err != nil {
			return nil, fmt.Errorf("searching %s: %w", key, err)
		}
		for i := 0; i < len(page); i += 2 { // member, score
			member := page[i]
			token, fields, err := wire.DecodeEnvelope(member)
			if err != nil {
				continue // the promoter dead-letters it
			}
			var hits []string
			if want[token] {
				hits = append(hits, token)
			}
			for j := 0; j+1 < len(fields); j += 2 {
				if (fields[j] == wire.FieldOriginID || fields[j] == wire.FieldID) && want[fields[j+1]] && fields[j+1] != token {
					hits = append(hits, fields[j+1])
				}
			}
			if len(hits) > 0 {
				matched[member] = hits
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	removed := map[string]int{}
	if len(matched) == 0 {
		return removed, nil
	}
	pipe := a.client.Pipeline()
	cmds := make(map[string]*redis.IntCmd, len(matched))
	for member := range matched {
		cmds[member] = pipe.ZRem(ctx, key, member)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("removing from %s: %w", key, err)
	}
	for member, hits := range matched {
		if cmds[member].Val() == 0 {
			continue
		}
		for _, h := range hits {
			removed[h]++
		}
	}
	// An ID given in another form than the member holds it (leading zeros)
	// counts under the form given.
	for _, id := range ids {
		if norm, ok := entryID(id); ok && norm != id {
			removed[id] += removed[norm]
		}
	}
	return removed, nil
}

// cancelScript marks entries of a stream as cancelled for every group, and
// says per entry what it was for one group: pending (marked), not yet
// delivered (marked), delivered and acknowledged, or not in the stream. It
// runs in one step, so that no read of the group slips between the look and
// the mark. Entry IDs come canonical (no leading zeros), so that two of them
// compare as their lengths, then their bytes. Marks older than ARGV[3] are
// trimmed first, so the set holds what a retention period cancelled.
//
// KEYS[1] -> the stream
// KEYS[2] -> its cancel marks (wire.CancelledKey)
// ARGV[1] -> the group
// ARGV[2] -> now, unix ms (the score of a new mark)
// ARGV[3] -> the oldest mark kept, unix ms
// ARGV[4..] -> entry IDs
// Returns per ID a code and the consumer holding it: 0 not found, 1 done,
// 2 queued, 3 pending; or an error starting NOGROUP.
var cancelScript = redis.NewScript(`
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am > #bm end
  if am ~= bm then return am > bm end
  if #as ~= #bs then return #as > #bs end
  return as > bs
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
local out = {}
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then
  for i = 4, #ARGV do
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
  return out
end
local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, id
  for j = 1, #g - 1, 2 do
    if g[j] == 'name' then name = g[j + 1] end
    if g[j] == 'last-delivered-id' then id = g[j + 1] end
  end
  if name == ARGV[1] then last = id end
end
if last == nil then
  return redis.error_reply('NOGROUP no such consumer group')
end
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p > 0 then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = 3
    out[#out + 1] = p[1][2]
  elseif #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    out[#out + 1] = 0
    out[#out + 1] = ''
  elseif after(id, last) then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = 2
    out[#out + 1] = ''
  else
    out[#out + 1] = 1
    out[#out + 1] = ''
  end
end
return out
`)

// cancelEntries runs cancelScript for the entries at batch of ids and
// writes their outcomes into out.
func (a *Admin) cancelEntries(ctx context.Context, stream, group string, ids []string, batch []int, out []CancelResult) error {
	now := time.Now()
	args := make([]any, 0, 3+len(batch))
	args = append(args, group, now.UnixMilli(), now.Add(-wire.CancelRetention).UnixMilli())
	for _, i := range batch {
		args = append(args, ids[i])
	}
	reply, err := cancelScript.Run(ctx, a.client, []string{stream, wire.CancelledKey(stream)}, args...).Slice()
	switch {
	case redis.HasErrorPrefix(err, "NOGROUP"):
		return fmt.Errorf("%w: %q on stream %q", ErrNoGroup, group, stream)
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return fmt.Errorf("key %q or %q holds another type: %w", stream, wire.CancelledKey(stream), err)
	case err != nil:
		return fmt.Errorf("cancelling entries of %s: %w", stream, err)
	case len(reply) != 2*len(batch):
		return fmt.Errorf("cancelling entries of %s: script returned %d values for %d IDs", stream, len(reply), len(batch))
	}
	for k, i := range batch {
		code, _ := reply[2*k].(int64)
		consumer, _ := reply[2*k+1].(string)
		switch code {
		case 0:
			out[i].Status = CancelNotFound
		case 1:
			out[i].Status = AlreadyDone
		case 2:
			out[i].Status = CancelledQueued
		case 3:
			out[i].Status, out[i].Consumer = CancelledPending, consumer
		default:
			return fmt.Errorf("cancelling entries of %s: unexpected script result %v", stream, reply[2*k])
		}
	}
	return nil
}

package streamadmin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRewindForward is returned by Rewind for a point after the group's last
// delivered entry: moving there would skip entries, not deliver any again.
var ErrRewindForward = errors.New("a rewind only moves back")

// ParseRewindPoint turns what an operator gives as the point of a rewind
// into the entry ID the group is set to: "start" is 0-0 (the whole stream
// again); an entry ID is itself (the entries after it are delivered again);
// an RFC 3339 time is the last ID before it, so that the entries added at
// or after that time are delivered again.
func ParseRewindPoint(s string) (string, error) {
	if s == "start" {
		return "0-0", nil
	}
	if norm, ok := entryID(s); ok {
		if err := CheckID(norm); err != nil {
			return "", err
		}
		return norm, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", fmt.Errorf("%q: want an entry ID (<ms>-<seq>, e.g. 1700000000000-0), an RFC 3339 time (e.g. 2026-01-02T15:04:05Z) or start", s)
	}
	ms := t.UnixMilli()
	if ms <= 0 {
		return "0-0", nil
	}
	return strconv.FormatInt(ms-1, 10) + "-18446744073709551615", nil
}

// RewindPlan is what a rewind of one group on one stream does, or did.
type RewindPlan struct {
	Stream, Group string
	// From is the group's last delivered entry ID before the rewind; To is
	// where it is set.
	From, To string
	// Redeliver is how many entries of the stream are in (To, From]: the
	// ones delivered to the group again.
	Redeliver int64
	// Pending is how many entries the group has pending. A rewind leaves
	// them pending: those after To are delivered again and leave the list
	// when acknowledged; those up to To stay for the reclaimer.
	Pending int64
	// EntriesRead is what the group's entries-read counter is set to, so
	// that its lag stays right; -1 when Redis is left to work it out (an
	// entry was deleted from the middle of the stream after To, or the
	// server is older than Redis 7).
	EntriesRead int64
	// Done: the group was moved (Rewind with apply).
	Done bool
}

// rewindCountChunk bounds how many entries one run of rewindCountScript
// walks, and so how long it holds the server.
const rewindCountChunk = 10000

// rewindCountScript counts the entries of a stream after one ID up to
// another, at most ARGV[3] of them, without sending them: a rewind's dry run
// counts a long history in chunks.
//
// KEYS[1] -> the stream
// ARGV[1] -> count the entries after this ID
// ARGV[2] -> up to and including this ID
// ARGV[3] -> at most this many
// Returns {how many, the last one's ID or ""}.
var rewindCountScript = redis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'COUNT', ARGV[3])
if #e == 0 then return {0, ''} end
return {#e, e[#e][1]}
`)

// countBetween counts the entries of stream in (from, to].
func (a *Admin) countBetween(ctx context.Context, stream, from, to string) (int64, error) {
	var n int64
	for {
		if from == to {
			return n, nil
		}
		res, err := rewindCountScript.Run(ctx, a.client, []string{stream}, from, to, rewindCountChunk).Slice()
		if err != nil {
			return 0, fmt.Errorf("counting entries of %s: %w", stream, err)
		}
		if len(res) != 2 {
			return 0, fmt.Errorf("counting entries of %s: script returned %d values", stream, len(res))
		}
		c, _ := res[0].(int64)
		last, _ := res[1].(string)
		n += c
		if c < rewindCountChunk || last == "" {
			return n, nil
		}
		from = last
	}
}

// Rewind sets group's last delivered entry on stream back to to (an entry
// ID, see ParseRewindPoint), so that the entries after it are delivered to
// the group again (XGROUP SETID). Without apply it changes nothing and
// returns what it would do. The entries to deliver again are counted on
// the server in chunks, however long the history. A point after the last
// delivered entry is ErrRewindForward.
func (a *Admin) Rewind(ctx context.Context, stream, group, to string, apply bool) (RewindPlan, error) {
	plan := RewindPlan{Stream: stream, Group: group, To: to, EntriesRead: -1}
	if err := CheckID(to); err != nil {
		return plan, err
	}
	pipe := a.client.Pipeline()
	info := pipe.XInfoStream(ctx, stream)
	groups := pipe.XInfoGroups(ctx, stream)
	_, err := pipe.Exec(ctx)
	switch {
	case redis.HasErrorPrefix(err, "no such key"):
		return plan, fmt.Errorf("%w: %q", ErrNoStream, stream)
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return plan, fmt.Errorf("key %q %w", stream, ErrNotStream)
	case err != nil:
		return plan, fmt.Errorf("reading stream %q: %w", stream, err)
	}
	var g *redis.XInfoGroup
	for i, x := range groups.Val() {
		if x.Name == group {
			g = &groups.Val()[i]
		}
	}
	if g == nil {
		return plan, fmt.Errorf("%w: %q on stream %q", ErrNoGroup, group, stream)
	}
	plan.From, plan.Pending = g.LastDeliveredID, g.Pending
	if after(to, plan.From) {
		return plan, fmt.Errorf("the point %s is after %s, the last entry delivered to group %q: %w", to, plan.From, group, ErrRewindForward)
	}
	if plan.Redeliver, err = a.countBetween(ctx, stream, to, plan.From); err != nil {
		return plan, err
	}
	// The group's entries-read less the entries delivered again is right
	// when none was deleted after the point (tombstones would be counted in
	// entries-read and not by the count); Redis reports 0 for an unknown
	// counter, which only a group that read nothing has.
	del := info.Val().MaxDeletedEntryID
	if g.EntriesRead > 0 && (del == "" || del == "0-0" || !after(del, to)) && g.EntriesRead >= plan.Redeliver {
		plan.EntriesRead = g.EntriesRead - plan.Redeliver
	}
	if !apply {
		return plan, nil
	}
	for range rewindTries {
		res, err := rewindScript.Run(ctx, a.client, []string{stream}, group, to, plan.From, plan.Redeliver, rewindCountChunk).Slice()
		switch {
		case redis.HasErrorPrefix(err, "NOGROUP"):
			return plan, fmt.Errorf("%w: %q on stream %q", ErrNoGroup, group, stream)
		case err != nil:
			return plan, fmt.Errorf("XGROUP SETID %s %s %s: %w", stream, group, to, err)
		case len(res) != 4:
			return plan, fmt.Errorf("XGROUP SETID %s: script returned %d values", stream, len(res))
		}
		done, _ := res[0].(int64)
		last, _ := res[1].(string)
		if done == 1 {
			plan.From = last
			plan.Redeliver, _ = res[2].(int64)
			plan.EntriesRead, _ = res[3].(int64)
			plan.Done = true
			return plan, nil
		}
		// The group read far ahead meanwhile: count the rest and try again.
		n, err := a.countBetween(ctx, stream, plan.From, last)
		if err != nil {
			return plan, err
		}
		plan.From, plan.Redeliver = last, plan.Redeliver+n
	}
	return plan, fmt.Errorf("rewinding group %q of %q: the group kept reading ahead of the count; try again", group, stream)
}

// rewindTries bounds how often Rewind counts again because the group read
// more than a chunk ahead while it counted.
const rewindTries = 5

// rewindScript sets a group back to a point in one step with its
// entries-read counter, so that the group's lag stays right. The caller has
// counted the entries from the point up to the last delivered one it saw;
// the group may have read on since, and the script counts those too, up to
// a chunk (more, and it answers 0 for the caller to count). The counter is
// the group's less the entries delivered again, when the group has one
// (Redis 7) and no entry after the point was deleted (a tombstone counts in
// entries-read and not in the count); otherwise Redis works it out.
//
// KEYS[1] -> the stream
// ARGV[1] -> the group
// ARGV[2] -> the point, an entry ID
// ARGV[3] -> the last delivered entry ID the caller counted up to
// ARGV[4] -> how many entries the caller counted after the point up to it
// ARGV[5] -> the most entries to count here
// Returns {1, the last delivered ID before, entries delivered again, the
// counter set or -1}, or {0, the last delivered ID now, 0, 0}, or an error
// starting NOGROUP.
var rewindScript = redis.NewScript(`
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am > #bm end
  if am ~= bm then return am > bm end
  if #as ~= #bs then return #as > #bs end
  return as > bs
end
local last, read
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, id, n
  for j = 1, #g - 1, 2 do
    if g[j] == 'name' then name = g[j + 1] end
    if g[j] == 'last-delivered-id' then id = g[j + 1] end
    if g[j] == 'entries-read' then n = g[j + 1] end
  end
  if name == ARGV[1] then last, read = id, n end
end
if last == nil then
  return redis.error_reply('NOGROUP no such consumer group')
end
local k = tonumber(ARGV[4])
if last ~= ARGV[3] then
  local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[3], last, 'COUNT', ARGV[5])
  if #e >= tonumber(ARGV[5]) then return {0, last, 0, 0} end
  k = k + #e
end
local deleted = '0-0'
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for j = 1, #info - 1, 2 do
  if info[j] == 'max-deleted-entry-id' then deleted = info[j + 1] end
end
if read and read >= k and not after(deleted, ARGV[2]) then
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2], 'ENTRIESREAD', read - k)
  return {1, last, k, read - k}
end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])
return {1, last, k, -1}
`)

// after reports whether entry ID a comes after b; both are canonical.
func after(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) > len(bm)
	}
	if am != bm {
		return am > bm
	}
	if len(as) != len(bs) {
		return len(as) > len(bs)
	}
	return as > bs
}

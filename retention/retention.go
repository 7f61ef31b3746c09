// Package retention trims a stream up to what its consumer groups still
// need: never an entry a group has not been delivered, nor one delivered and
// not yet acknowledged, whatever the state of the group's consumers. The
// worker (WORKER_RETENTION) and streamctl trim both trim through Trim.
//
// # What is needed
//
// A group needs every entry after its last-delivered-id (not yet delivered
// to it) and every entry of its pending list (delivered, not acknowledged);
// the oldest of these is the lower of the successor of last-delivered-id and
// the first ID of its pending list (XPENDING's summary). The stream is
// trimmed with XTRIM MINID up to the oldest entry any group needs, or, with
// a retention, up to now minus the retention when that is older: entries
// newer than the retention are kept even when every group is done with
// them.
//
// The computation and the XTRIM run in one Lua script, so no group reads,
// acknowledges or is created between them. Reads and acknowledgements only
// ever move what a group needs forward, so a minimum computed at any moment
// stays safe afterwards; the one thing that moves it back is XGROUP SETID (or
// XGROUP CREATE at an old ID), a rewind: a rewind below what has been trimmed
// cannot bring the trimmed entries back, and the group reads on from the
// oldest entry left.
//
// A stream without groups needs nothing of its own: it is trimmed only by
// its retention, and left whole without one.
package retention

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// Why an entry bounds the trim: the reason of a Plan.
const (
	ReasonPending     = "pending"     // the oldest entry pending in Plan.Group
	ReasonUndelivered = "undelivered" // the first entry not yet delivered to Plan.Group
	ReasonRetention   = "retention"   // now minus the retention: newer entries are kept
	ReasonNoGroups    = "no groups"   // no group and no retention: nothing is trimmed
	ReasonNoStream    = "no stream"   // the stream does not exist
)

// Options says how Trim trims.
type Options struct {
	// Retention, when Keep is true, keeps entries newer than now minus
	// Retention (Redis's clock) even when no group needs them. Default:
	// no retention (Keep false): trim everything no group needs.
	Retention time.Duration
	Keep      bool
	// Exact trims exactly up to the bound (XTRIM MINID =). Default: false,
	// XTRIM MINID ~, which removes whole nodes of the stream only (Redis
	// keeps about 100 entries a node), leaves up to a node of entries
	// below the bound and costs less; it removes at most 10,000 entries a
	// call, and Trim calls again while that many went, up to MaxRounds.
	Exact bool
	// DryRun computes the bound and trims nothing.
	DryRun bool
	// Holder, when not empty, trims only while Holder holds the stream's
	// trim lease (wire.TrimLeaseKey), taking the lease when nobody holds
	// it and renewing it for LeaseTTL when Holder does. Default: "", no
	// lease.
	Holder   string
	LeaseTTL time.Duration
	// MaxRounds bounds the XTRIM MINID ~ calls of one Trim. Default: 100
	MaxRounds int
}

// Plan is what Trim found, and did.
type Plan struct {
	Stream string
	// MinID is the bound: entries with lower IDs are trimmed. Empty when
	// nothing may be trimmed (Reason says why).
	MinID string
	// Reason is one of the Reason* constants.
	Reason string
	// Group holds the oldest needed entry, when Reason is ReasonPending or
	// ReasonUndelivered.
	Group string
	// Trimmed is how many entries were trimmed; 0 in a dry run.
	Trimmed int64
	// HeldBy is the holder of the trim lease when it is not Options.Holder,
	// and nothing was trimmed; empty otherwise.
	HeldBy string
}

// approxLimit is how many entries XTRIM MINID ~ removes at most in one call
// (100 times the entries of a node, Redis's default).
const approxLimit = 10000

// trimScript takes or renews the trim lease, computes the oldest entry the
// stream's groups need, and trims up to it.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's trim lease (wire.TrimLeaseKey)
// ARGV[1] -> holder of the lease; "" takes no lease
// ARGV[2] -> lease TTL, ms
// ARGV[3] -> retention, ms; "-1" for none
// ARGV[4] -> "~" or "=": how XTRIM MINID trims
// ARGV[5] -> "1": dry run, trim nothing
// Returns {status ("ok", "held", "none"), minid, reason, group or holder, trimmed}.
//
// IDs are compared as strings of digits (length, then bytes), as Lua's
// numbers lose the precision of 64-bit parts; the successor of an ID whose
// sequence has 15 digits or more is the ID itself, which keeps one entry
// more and never one fewer.
var trimScript = redis.NewScript(`
if ARGV[1] ~= '' then
  local h = redis.call('GET', KEYS[2])
  if h == ARGV[1] then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  elseif h then
    return {'held', '', '', h, 0}
  else
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'none', '', '', '', 0} end
local function parts(id)
  local d = string.find(id, '-', 1, true)
  return string.sub(id, 1, d - 1), string.sub(id, d + 1)
end
local function numless(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function less(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if am ~= bm then return numless(am, bm) end
  return numless(as, bs)
end
local function succ(id)
  local m, s = parts(id)
  if #s < 15 then return m .. '-' .. string.format('%d', tonumber(s) + 1) end
  return id
end
local min, reason, group = nil, 'no groups', ''
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need, why = succ(f['last-delivered-id']), 'undelivered'
  if f['pending'] > 0 then
    local p = redis.call('XPENDING', KEYS[1], f['name'])
    if p[2] and less(p[2], need) then need, why = p[2], 'pending' end
  end
  if min == nil or less(need, min) then min, reason, group = need, why, f['name'] end
end
if ARGV[3] ~= '-1' then
  local t = redis.call('TIME')
  -- Entries newer than now minus the retention are kept: their IDs' time
  -- is at least one millisecond past it (one of that very millisecond is
  -- as old as the retention, not newer, and goes).
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3]) + 1
  if ms < 0 then ms = 0 end
  local cut = string.format('%d', ms) .. '-0'
  if min == nil or less(cut, min) then min, reason, group = cut, 'retention', '' end
end
if min == nil then return {'ok', '', reason, '', 0} end
if ARGV[5] == '1' then return {'ok', min, reason, group, 0} end
local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[4], min)
return {'ok', min, reason, group, n}
`)

// Trim trims stream up to the oldest entry its groups need (see the package
// doc), as o says, and returns what it found and did.
func Trim(ctx context.Context, c redis.Scripter, stream string, o Options) (Plan, error) {
	ret := "-1"
	if o.Keep {
		if o.Retention < 0 {
			return Plan{}, fmt.Errorf("retention %s: want 0 or more", o.Retention)
		}
		ret = strconv.FormatInt(o.Retention.Milliseconds(), 10)
	}
	how := "~"
	if o.Exact {
		how = "="
	}
	dry := "0"
	if o.DryRun {
		dry = "1"
	}
	ttl := o.LeaseTTL
	if o.Holder != "" && ttl <= 0 {
		return Plan{}, errors.New("a trim lease needs a TTL above 0")
	}
	rounds := o.MaxRounds
	if rounds <= 0 {
		rounds = 100
	}
	keys := []string{stream, wire.TrimLeaseKey(stream)}
	out := Plan{Stream: stream}
	for range rounds {
		res, err := trimScript.Run(ctx, c, keys, o.Holder, max(ttl.Milliseconds(), 1), ret, how, dry).Slice()
		if err != nil {
			return out, fmt.Errorf("trimming %s: %w", stream, err)
		}
		if len(res) != 5 {
			return out, fmt.Errorf("trimming %s: unexpected reply %v", stream, res)
		}
		status, _ := res[0].(string)
		who, _ := res[3].(string)
		switch status {
		case "held":
			out.HeldBy = who
			return out, nil
		case "none":
			out.Reason = ReasonNoStream
			return out, nil
		}
		out.MinID, _ = res[1].(string)
		out.Reason, _ = res[2].(string)
		out.Group = who
		n, _ := res[4].(int64)
		out.Trimmed += n
		if o.Exact || o.DryRun || n < approxLimit {
			return out, nil
		}
	}
	return out, nil
}

// Release gives up holder's trim lease on stream, if holder has it, so that
// another worker takes it at its next trim rather than after the TTL.
func Release(ctx context.Context, c redis.Scripter, stream, holder string) error {
	return releaseScript.Run(ctx, c, []string{wire.TrimLeaseKey(stream)}, holder).Err()
}

// releaseScript deletes the trim lease if its holder is ARGV[1].
//
// KEYS[1] -> the trim lease
// ARGV[1] -> holder
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

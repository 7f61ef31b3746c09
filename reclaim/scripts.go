package reclaim

import "github.com/redis/go-redis/v9"

// leaseScript renews this consumer's claim on entries it still owns: XCLAIM
// to itself resets the idle time (JUSTID leaves the delivery count alone).
// An entry owned by someone else is not taken back. An entry that is no
// longer pending at all was acknowledged elsewhere, or trimmed from the
// stream and dropped from the pending list by an XAUTOCLAIM (which does so
// whatever the idle time and owner): nobody runs it now but its handler
// here. XCLAIM itself drops an entry trimmed from the stream out of the
// pending list and does not return it.
//
// KEYS[1] -> the stream
// ARGV[1] -> group
// ARGV[2] -> this consumer
// ARGV[3..] -> entry IDs
// Returns {IDs another consumer owns, IDs this renewal found trimmed (and
// dropped), IDs no longer pending}.
var leaseScript = redis.NewScript(`
local lost, trimmed, gone = {}, {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 then
    gone[#gone + 1] = ARGV[i]
  elseif p[1][2] ~= ARGV[2] then
    lost[#lost + 1] = ARGV[i]
  else
    local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if #r == 0 then trimmed[#trimmed + 1] = ARGV[i] end
  end
end
return {lost, trimmed, gone}
`)

// removeConsumerScript deletes a consumer only if it sent no heartbeat
// lately and owns no pending entry, atomically: DELCONSUMER would drop a
// consumer's pending entries from the group for good.
//
// KEYS[1] -> the stream
// KEYS[2] -> the consumer's heartbeat key
// ARGV[1] -> group
// ARGV[2] -> consumer
// Returns 1 when the consumer was deleted.
var removeConsumerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// claimScript takes pending entries of this consumer as a new delivery
// (XCLAIM, which counts one and returns the entry) — except those that were
// delivered isolateAfter times or more without finishing: they are left as
// they are, uncounted, for the caller to run one at a time. Counting a
// delivery only when the entry is about to run keeps a crash from being
// charged to entries that were merely read beside the one that caused it.
// Entries idle less than min-idle (just taken by another path of this
// consumer), owned by another consumer or no longer pending are skipped; one
// trimmed from the stream is dropped from the pending list by XCLAIM and
// reported.
//
// KEYS[1] -> the stream
// ARGV[1] -> group
// ARGV[2] -> this consumer
// ARGV[3] -> min-idle, ms
// ARGV[4] -> isolateAfter: earlier deliveries from which an entry is only
// reported (0: claim every entry)
// ARGV[5..] -> entry IDs
// Returns {entries, delivery counts (this delivery included), isolated IDs,
// deleted IDs}.
var claimScript = redis.NewScript(`
local entries, counts, isolated, deleted = {}, {}, {}, {}
local minIdle, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] and p[1][3] >= minIdle then
    if limit > 0 and p[1][4] >= limit then
      isolated[#isolated + 1] = ARGV[i]
    else
      local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])
      if #r == 0 or not r[1] then
        deleted[#deleted + 1] = ARGV[i]
      else
        entries[#entries + 1] = r[1]
        counts[#counts + 1] = p[1][4] + 1
      end
    end
  end
end
return {entries, counts, isolated, deleted}
`)

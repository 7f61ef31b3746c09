package reclaim

import "github.com/redis/go-redis/v9"

// leaseScript renews this consumer's claim on entries it still owns: XCLAIM
// to itself resets the idle time (JUSTID leaves the delivery count alone).
// An entry owned by someone else is not taken back.
//
// KEYS[1] -> the stream
// ARGV[1] -> group
// ARGV[2] -> this consumer
// ARGV[3..] -> entry IDs
// Returns the IDs this consumer no longer owns.
var leaseScript = redis.NewScript(`
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
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

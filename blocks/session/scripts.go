package session

import "github.com/redis/go-redis/v9"

// Each script touches one key, the session's hash, so it runs on any
// Redis Cluster node that owns the session.

// updateScript sets fields of a session that exists, and refreshes its
// expiry to the idle timeout or the time left before its deadline,
// whichever is shorter. A session past its deadline is deleted instead.
// Returns 1 when updated, 0 when there is no such session.
//
// KEYS[1] -> the session hash
// ARGV[1] -> now, Unix ms (the clock deadlines are written with)
// ARGV[2] -> idle timeout, ms
// ARGV[3] -> the deadline field's name
// ARGV[4..] -> field, value, field, value, ...
var updateScript = redis.NewScript(`
local deadline = tonumber(redis.call('HGET', KEYS[1], ARGV[3]))
if not deadline then return 0 end
local left = deadline - tonumber(ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
-- In chunks: unpack is bounded by Lua's C stack (about 8000 values).
for i = 4, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[2]), left))
return 1
`)

// capScript shortens a session's expiry to the time left before its
// deadline, or deletes it when none is left, if the session still has the
// deadline the caller read.
//
// KEYS[1] -> the session hash
// ARGV[1] -> the deadline field's name
// ARGV[2] -> the deadline the caller read
// ARGV[3] -> ms left before it; 0 deletes
var capScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`)

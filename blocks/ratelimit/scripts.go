package ratelimit

import "github.com/redis/go-redis/v9"

// Both scripts read the clock with TIME on the server, so every process
// agrees on "now" whatever its own clock says. Redis 5+ replicates scripts
// by their effects, so calling TIME before a write is allowed. Times are
// integer microseconds since the epoch: about 1.7e15, exact in Lua's
// doubles (2^53 is 9e15), and formatted with %d where they are stored,
// because tostring would round them to 14 digits.
//
// Both reply {allowed (0/1), remaining, retry_after_us, reset_after_us}.

// slidingWindowScript checks and records requests in a sliding-window log:
// a sorted set with one member per allowed request, scored by the server
// time it was allowed at. Members are the call's unique prefix and an index,
// so two requests in one microsecond are two members, not one.
//
// KEYS[1] -> the log (sorted set, scores in µs)
// ARGV[1] -> limit: requests allowed in any window
// ARGV[2] -> window length (µs)
// ARGV[3] -> n: requests asked for at once; 0 only reports
// ARGV[4] -> member prefix, unique to this call
var slidingWindowScript = redis.NewScript(`
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- Requests at or before now-window have left the window.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
local count = redis.call('ZCARD', KEYS[1])

if count + n <= limit then
  if n > 0 then
    -- In chunks: unpack is bounded by Lua's C stack (about 8000 values).
    local ts = string.format('%d', now)
    for first = 1, n, 500 do
      local args = {}
      for i = first, math.min(first + 499, n) do
        args[#args + 1] = ts
        args[#args + 1] = ARGV[4] .. i
      end
      redis.call('ZADD', KEYS[1], unpack(args))
    end
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
    return {1, limit - count - n, 0, window}
  end
  local reset = 0
  if count > 0 then
    local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    reset = tonumber(newest[2]) + window - now
  end
  return {1, limit - count, 0, reset}
end

-- Rejected: nothing is added. The oldest count+n-limit requests must leave
-- the window before n more fit; the last of them leaves at its score+window.
local k = count + n - limit
local oldest = redis.call('ZRANGE', KEYS[1], k - 1, k - 1, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local remaining = limit - count
if remaining < 0 then remaining = 0 end
return {0, remaining, tonumber(oldest[2]) + window - now, tonumber(newest[2]) + window - now}
`)

// gcraScript is the generic cell rate algorithm: one key holds the
// theoretical arrival time (TAT), the moment the limiter would be empty
// again. A request of n is allowed when TAT + n*emission - burst*emission
// is not in the future; then TAT moves forward by n*emission.
//
// The key expires when its TAT is reached: a missing key is a full
// allowance.
//
// KEYS[1] -> the TAT (string, µs since the epoch by the server clock)
// ARGV[1] -> emission interval: Period/Rate (µs, an integer)
// ARGV[2] -> burst: requests allowed at once
// ARGV[3] -> n: requests asked for at once; 0 only reports
var gcraScript = redis.NewScript(`
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end

local new_tat = tat + n * emission
local allow_at = new_tat - burst * emission
local diff = now - allow_at

if diff < 0 then
  -- Rejected: nothing is written, so asking again does not push the
  -- caller's own retry time further out.
  local remaining = math.floor((now - tat + burst * emission) / emission)
  if remaining < 0 then remaining = 0 end
  return {0, remaining, -diff, tat - now}
end

if n > 0 then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
end
return {1, math.floor(diff / emission), 0, new_tat - now}
`)

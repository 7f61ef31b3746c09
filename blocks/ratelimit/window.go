package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// SlidingWindow allows at most Rate requests in any window of Period,
// keeping a log of the allowed requests in a sorted set. It is exact — no
// burst at a window boundary as with fixed windows — at the price of one
// sorted-set member per allowed request in the window; for large rates
// prefer GCRA, whose state is one small string.
//
// It is safe for concurrent use.
type SlidingWindow struct {
	rdb    redis.UniversalClient
	prefix string
	// id and seq make log members unique across processes and calls.
	id  string
	seq atomic.Uint64
}

// NewSlidingWindow returns a sliding-window limiter on rdb. opt may be nil.
func NewSlidingWindow(rdb redis.UniversalClient, opt *Options) *SlidingWindow {
	o := opt.withDefaults()
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return &SlidingWindow{rdb: rdb, prefix: o.Prefix, id: hex.EncodeToString(b[:])}
}

// Allow is AllowN(ctx, key, limit, 1).
func (l *SlidingWindow) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

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

// AllowN asks for n requests under key: all are allowed, and logged, if
// fewer than limit.Rate-n+1 were allowed in the last limit.Period; otherwise
// none is and nothing is written. limit.Burst is ignored.
func (l *SlidingWindow) AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	if limit.Rate <= 0 || limit.Period < time.Millisecond {
		return Result{}, fmt.Errorf("%w: %s (want a positive rate and a period of at least 1ms)", ErrInvalidLimit, limit)
	}
	if n < 0 || n > limit.Rate {
		return Result{}, fmt.Errorf("%w: %d requests at once against %s", ErrExceedsLimit, n, limit)
	}
	member := l.id + ":" + strconv.FormatUint(l.seq.Add(1), 36) + ":"
	v, err := slidingWindowScript.Run(ctx, l.rdb, []string{windowKey(l.prefix, key)},
		limit.Rate, limit.Period.Microseconds(), n, member).Result()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: sliding window %q: %w", key, err)
	}
	return result(limit, v)
}

// Reset forgets every request logged under key.
func (l *SlidingWindow) Reset(ctx context.Context, key string) error {
	return l.rdb.Del(ctx, windowKey(l.prefix, key)).Err()
}

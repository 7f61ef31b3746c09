package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// GCRA is the generic cell rate algorithm, as in go-redis/redis_rate: it
// lets Burst requests through at once and then one every Period/Rate, and
// keeps one small string per key whatever the rate. The emission interval
// Period/Rate is rounded to the microsecond.
//
// It is safe for concurrent use.
type GCRA struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewGCRA returns a GCRA limiter on rdb. opt may be nil.
func NewGCRA(rdb redis.UniversalClient, opt *Options) *GCRA {
	o := opt.withDefaults()
	return &GCRA{rdb: rdb, prefix: o.Prefix}
}

// Allow is AllowN(ctx, key, limit, 1).
func (l *GCRA) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

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

// AllowN asks for n requests under key: all are allowed if the burst has
// room for n now; otherwise none is and nothing is written.
func (l *GCRA) AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	emission := (limit.Period/time.Duration(max(limit.Rate, 1)) + time.Microsecond/2) / time.Microsecond
	if limit.Rate <= 0 || limit.Burst <= 0 || limit.Period <= 0 || emission < 1 {
		return Result{}, fmt.Errorf("%w: %s (want a positive rate, period and burst, at most one request per µs)", ErrInvalidLimit, limit)
	}
	if n < 0 || n > limit.Burst {
		return Result{}, fmt.Errorf("%w: %d requests at once against %s", ErrExceedsLimit, n, limit)
	}
	v, err := gcraScript.Run(ctx, l.rdb, []string{gcraKey(l.prefix, key)}, int64(emission), limit.Burst, n).Result()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: gcra %q: %w", key, err)
	}
	return result(limit, v)
}

// Reset gives key its full burst back.
func (l *GCRA) Reset(ctx context.Context, key string) error {
	return l.rdb.Del(ctx, gcraKey(l.prefix, key)).Err()
}

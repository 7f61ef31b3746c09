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

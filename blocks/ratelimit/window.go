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

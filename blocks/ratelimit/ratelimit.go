// Package ratelimit owns rate limits shared by every process that talks to
// one Redis: a sliding-window log (exactly Rate requests in any window of
// Period) and GCRA (a smooth rate with a burst, one small key per limit, like
// go-redis/redis_rate). Each check is one Lua script that reads the server's
// clock, so the limit holds across hosts whose clocks disagree.
//
// The traps it avoids: a check-then-act done from the client (GET, compare,
// SET) that lets concurrent callers all pass; log members made of timestamps,
// so two requests in one millisecond count as one; rejected requests that
// write to the limiter, so a caller that keeps hammering locks itself out for
// ever instead of being let through once its window has passed; keys without
// an expiry that outlive every limit.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is how many requests are allowed per period.
type Limit struct {
	// Rate is the number of requests allowed per Period.
	Rate int
	// Period is the length of the window.
	Period time.Duration
	// Burst is how many requests GCRA lets through at once; the sliding
	// window ignores it (it allows Rate in any window of Period). PerSecond
	// and its siblings set it to Rate.
	Burst int
}

// PerSecond allows rate requests per second, all at once if they come so.
func PerSecond(rate int) Limit { return Limit{Rate: rate, Period: time.Second, Burst: rate} }

// PerMinute allows rate requests per minute, all at once if they come so.
func PerMinute(rate int) Limit { return Limit{Rate: rate, Period: time.Minute, Burst: rate} }

// PerHour allows rate requests per hour, all at once if they come so.
func PerHour(rate int) Limit { return Limit{Rate: rate, Period: time.Hour, Burst: rate} }

// String describes the limit, e.g. "10 per 1s (burst 10)".
func (l Limit) String() string {
	return fmt.Sprintf("%d per %s (burst %d)", l.Rate, l.Period, l.Burst)
}

// Result is the answer to one check.
type Result struct {
	// Limit is the limit the request was checked against.
	Limit Limit
	// Allowed reports whether the request may go ahead. A rejected request
	// is not recorded: it does not count against the limit.
	Allowed bool
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is how long a rejected request must wait before the same
	// request would be allowed; 0 when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the limiter is back to its full
	// allowance if nothing else arrives.
	ResetAfter time.Duration
}

// Limiter is what SlidingWindow and GCRA have in common.
type Limiter interface {
	// AllowN asks for n requests under key at once: all of them are allowed
	// or none is. n == 0 reports the state without using any.
	AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error)
}

var (
	_ Limiter = (*SlidingWindow)(nil)
	_ Limiter = (*GCRA)(nil)
)

var (
	// ErrInvalidLimit is returned for a limit that cannot be enforced: a
	// Rate, Period or (for GCRA) Burst that is not positive, or a rate
	// faster than one request per microsecond.
	ErrInvalidLimit = errors.New("ratelimit: invalid limit")
	// ErrExceedsLimit is returned when n is larger than a limit could ever
	// allow at once (more than Rate, or for GCRA more than Burst).
	ErrExceedsLimit = errors.New("ratelimit: request exceeds the limit")
)

// Options configure a limiter.
type Options struct {
	// Prefix is prepended to every key the limiter writes. Put a hash tag
	// in the caller's key, not here, if keys must share a Cluster slot.
	// Default: "ratelimit:"
	Prefix string
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Prefix == "" {
		out.Prefix = "ratelimit:"
	}
	return out
}

// result builds a Result from a script reply {allowed, remaining,
// retry_after_us, reset_after_us}.
func result(limit Limit, v any) (Result, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
	}
	var n [4]int64
	for i := range a {
		x, ok := a[i].(int64)
		if !ok {
			return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
		}
		n[i] = x
	}
	return Result{
		Limit:      limit,
		Allowed:    n[0] == 1,
		Remaining:  int(n[1]),
		RetryAfter: time.Duration(n[2]) * time.Microsecond,
		ResetAfter: time.Duration(n[3]) * time.Microsecond,
	}, nil
}

// The scripts (window.go, gcra.go) read the clock with TIME on the server,
// so every process agrees on "now" whatever its own clock says. Redis 5+
// replicates scripts by their effects, so calling TIME before a write is
// allowed. Times are integer microseconds since the epoch: about 1.7e15,
// exact in Lua's doubles (2^53 is 9e15), and formatted with %d where they
// are stored, because tostring would round them to 14 digits.
//
// Both reply {allowed (0/1), remaining, retry_after_us, reset_after_us}.

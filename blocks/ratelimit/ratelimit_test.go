package ratelimit_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/internal/testredis"
)

// limiter is one algorithm under test, with the key it writes for a name.
type limiter struct {
	name string
	new  func(rdb redis.UniversalClient, prefix string) ratelimit.Limiter
	key  func(prefix, name string) string
}

var limiters = []limiter{
	{
		name: "SlidingWindow",
		new: func(rdb redis.UniversalClient, prefix string) ratelimit.Limiter {
			return ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: prefix})
		},
		key: func(prefix, name string) string { return prefix + "window:" + name },
	},
	{
		name: "GCRA",
		new: func(rdb redis.UniversalClient, prefix string) ratelimit.Limiter {
			return ratelimit.NewGCRA(rdb, &ratelimit.Options{Prefix: prefix})
		},
		key: func(prefix, name string) string { return prefix + "gcra:" + name },
	},
}

// A thousand callers racing for a limit of 100 get exactly 100, each with a
// different Remaining: the check and the write are one atomic step. A
// client-side GET/compare/SET, or log members that collide within a
// millisecond, let more through.
func TestConcurrentCallsAllowExactlyTheLimit(t *testing.T) {
	t.Parallel()
	for _, lt := range limiters {
		t.Run(lt.name, func(t *testing.T) {
			t.Parallel()
			rdb := testredis.Shared(t).Client(t)
			prefix := testredis.Prefix(t)
			l := lt.new(rdb, prefix)
			// An hour-long period: GCRA lets one more through every 36s, far
			// longer than the test takes.
			limit := ratelimit.PerHour(100)

			const callers = 1000
			var (
				start     = make(chan struct{})
				wg        sync.WaitGroup
				mu        sync.Mutex
				remaining []int
				errs      []error
			)
			for range callers {
				wg.Go(func() {
					<-start
					res, err := l.AllowN(context.Background(), "api", limit, 1)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
					} else if res.Allowed {
						remaining = append(remaining, res.Remaining)
					}
				})
			}
			close(start)
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
			}
			if len(remaining) != 100 {
				t.Fatalf("allowed %d of %d concurrent calls, want exactly 100", len(remaining), callers)
			}
			sort.Ints(remaining)
			for i, r := range remaining {
				if r != i {
					t.Fatalf("remaining values = %v, want each of 0..99 once", remaining)
				}
			}
			if lt.name == "SlidingWindow" {
				if n := rdb.ZCard(context.Background(), lt.key(prefix, "api")).Val(); n != 100 {
					t.Errorf("log has %d members, want 100", n)
				}
			}
		})
	}
}

// Requests asked for in one call share one server timestamp; each is still
// its own log member.
func TestRequestsAtTheSameInstantCountSeparately(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	prefix := testredis.Prefix(t)
	l := ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: prefix})
	ctx := context.Background()

	res, err := l.AllowN(ctx, "k", ratelimit.PerMinute(10), 7)
	if err != nil || !res.Allowed || res.Remaining != 3 {
		t.Fatalf("AllowN(7) = %+v, %v; want allowed with 3 remaining", res, err)
	}
	log := rdb.ZRangeWithScores(ctx, prefix+"window:k", 0, -1).Val()
	if len(log) != 7 {
		t.Fatalf("log has %d members, want 7: %v", len(log), log)
	}
	for _, z := range log[1:] {
		if z.Score != log[0].Score {
			t.Fatalf("members of one call have different scores: %v", log)
		}
	}
	res, err = l.AllowN(ctx, "k", ratelimit.PerMinute(10), 4)
	if err != nil || res.Allowed || res.Remaining != 3 {
		t.Fatalf("AllowN(4) after 7 of 10 = %+v, %v; want rejected with 3 remaining", res, err)
	}
}

// A rejected request leaves the limiter's key exactly as it was: same value,
// expiry not extended. Otherwise a caller that keeps asking keeps itself out.
func TestRejectedRequestsWriteNothing(t *testing.T) {
	t.Parallel()
	for _, lt := range limiters {
		t.Run(lt.name, func(t *testing.T) {
			t.Parallel()
			rdb := testredis.Shared(t).Client(t)
			prefix := testredis.Prefix(t)
			l := lt.new(rdb, prefix)
			ctx := context.Background()
			limit := ratelimit.PerMinute(5)
			key := lt.key(prefix, "k")

			for i := range 5 {
				if res, err := l.AllowN(ctx, "k", limit, 1); err != nil || !res.Allowed {
					t.Fatalf("call %d = %+v, %v; want allowed", i+1, res, err)
				}
			}
			before := dump(t, rdb, key)
			ttlBefore := rdb.PTTL(ctx, key).Val()
			for range 20 {
				res, err := l.AllowN(ctx, "k", limit, 1)
				if err != nil || res.Allowed {
					t.Fatalf("over the limit: %+v, %v; want rejected", res, err)
				}
				if res.RetryAfter <= 0 || res.RetryAfter > time.Minute {
					t.Fatalf("RetryAfter = %v, want in (0, 1m]", res.RetryAfter)
				}
			}
			if after := dump(t, rdb, key); after != before {
				t.Errorf("key changed by rejected requests:\nbefore %q\nafter  %q", before, after)
			}
			if ttl := rdb.PTTL(ctx, key).Val(); ttl > ttlBefore || ttl <= 0 {
				t.Errorf("PTTL after rejections = %v, want in (0, %v]", ttl, ttlBefore)
			}
		})
	}
}

// dump is the serialised value of key, to compare a key before and after.
func dump(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	v, err := rdb.Dump(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("DUMP %s: %v", key, err)
	}
	return v
}

// A caller that exhausts its limit and then keeps hammering is let through
// again once its allowance comes back — one window after its first request
// for the sliding window, one emission interval for GCRA — and not before.
// Naive versions that record rejected requests never let it through while
// it hammers.
func TestHammeringCallerIsAllowedAgainAfterOneWindow(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	tests := []struct {
		lt    limiter
		limit ratelimit.Limit
		// again is how long after the first request the next one fits.
		again time.Duration
	}{
		{limiters[0], ratelimit.Limit{Rate: 10, Period: window}, window},
		// One every 100ms, five at once.
		{limiters[1], ratelimit.Limit{Rate: 5, Period: 500 * time.Millisecond, Burst: 5}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.lt.name, func(t *testing.T) {
			t.Parallel()
			rdb := testredis.Shared(t).Client(t)
			l := tt.lt.new(rdb, testredis.Prefix(t))
			ctx := context.Background()

			full := tt.limit.Rate
			if tt.limit.Burst > 0 {
				full = tt.limit.Burst
			}
			start := time.Now()
			if res, err := l.AllowN(ctx, "k", tt.limit, full); err != nil || !res.Allowed {
				t.Fatalf("AllowN(%d) = %+v, %v; want allowed", full, res, err)
			}

			// Hammer without pause until let through again.
			const clockSlack = 2 * time.Millisecond // server TIME against the monotonic clock
			deadline := start.Add(tt.again + 10*time.Second)
			var (
				rejected    int
				first, last ratelimit.Result
				rejectStart time.Time
				lastStart   time.Time
				err         error
			)
			for {
				lastStart = time.Now()
				last, err = l.AllowN(ctx, "k", tt.limit, 1)
				if err != nil {
					t.Fatal(err)
				}
				if last.Allowed {
					break
				}
				if rejected == 0 {
					first, rejectStart = last, lastStart
				}
				rejected++
				if time.Now().After(deadline) {
					t.Fatalf("still rejected %v after the first request (%d rejections): rejected requests must not count", time.Since(start), rejected)
				}
			}
			againAt := time.Now()
			if d := againAt.Sub(start); d < tt.again-clockSlack {
				t.Errorf("allowed again %v after the first request, want at least %v", d, tt.again)
			}
			if rejected == 0 {
				t.Logf("no rejection seen: the machine stalled for %v", againAt.Sub(start))
			} else if d := againAt.Sub(rejectStart); d < first.RetryAfter-clockSlack {
				t.Errorf("allowed again %v after a rejection that said RetryAfter %v", d, first.RetryAfter)
			}
			t.Logf("allowed again after %v, %d rejections while hammering", againAt.Sub(start).Round(time.Millisecond), rejected)

			// The caller stops. Its whole allowance is back ResetAfter after
			// its last request (one window for the sliding window), not before.
			stoppedAt := againAt
			if tt.lt.name == "SlidingWindow" && last.ResetAfter != window {
				t.Errorf("ResetAfter right after an allowed request = %v, want the window %v", last.ResetAfter, window)
			}
			deadline = stoppedAt.Add(last.ResetAfter + 10*time.Second)
			for {
				peek, err := l.AllowN(ctx, "k", tt.limit, 0) // reports, writes nothing
				if err != nil {
					t.Fatal(err)
				}
				if peek.Remaining == full {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("allowance still %d of %d %v after the caller stopped", peek.Remaining, full, time.Since(stoppedAt))
				}
				time.Sleep(5 * time.Millisecond) // polling with a deadline
			}
			if d := time.Since(lastStart); d < last.ResetAfter-clockSlack {
				t.Errorf("full allowance back %v after the last request, before its ResetAfter %v", d, last.ResetAfter)
			}
			if res, err := l.AllowN(ctx, "k", tt.limit, full); err != nil || !res.Allowed {
				t.Fatalf("AllowN(%d) once the window has passed = %+v, %v; want allowed", full, res, err)
			}
		})
	}
}

func TestResults(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ctx := context.Background()

	t.Run("SlidingWindow", func(t *testing.T) {
		t.Parallel()
		prefix := testredis.Prefix(t)
		l := ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: prefix})
		limit := ratelimit.PerMinute(3)
		for want := 2; want >= 0; want-- {
			res, err := l.Allow(ctx, "k", limit)
			if err != nil || !res.Allowed || res.Remaining != want || res.RetryAfter != 0 || res.ResetAfter != time.Minute || res.Limit != limit {
				t.Fatalf("Allow = %+v, %v; want allowed, %d remaining, no retry, reset after 1m", res, err, want)
			}
		}
		res, err := l.Allow(ctx, "k", limit)
		if err != nil || res.Allowed || res.Remaining != 0 {
			t.Fatalf("4th Allow = %+v, %v; want rejected with 0 remaining", res, err)
		}
		// The first of the three leaves the window first.
		if res.RetryAfter <= 50*time.Second || res.RetryAfter > time.Minute || res.ResetAfter < res.RetryAfter || res.ResetAfter > time.Minute {
			t.Errorf("RetryAfter %v, ResetAfter %v; want RetryAfter just under 1m and RetryAfter <= ResetAfter <= 1m", res.RetryAfter, res.ResetAfter)
		}
		if ttl := rdb.PTTL(ctx, prefix+"window:k").Val(); ttl <= 50*time.Second || ttl > time.Minute {
			t.Errorf("PTTL = %v, want just under the window", ttl)
		}
		if err := l.Reset(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if res, _ := l.Allow(ctx, "k", limit); !res.Allowed || res.Remaining != 2 {
			t.Errorf("Allow after Reset = %+v, want allowed with 2 remaining", res)
		}
	})

	t.Run("GCRA", func(t *testing.T) {
		t.Parallel()
		prefix := testredis.Prefix(t)
		l := ratelimit.NewGCRA(rdb, &ratelimit.Options{Prefix: prefix})
		limit := ratelimit.Limit{Rate: 60, Period: time.Minute, Burst: 3} // one a second, three at once
		for want := 2; want >= 0; want-- {
			res, err := l.Allow(ctx, "k", limit)
			if err != nil || !res.Allowed || res.Remaining != want || res.RetryAfter != 0 {
				t.Fatalf("Allow = %+v, %v; want allowed with %d remaining", res, err, want)
			}
			if res.ResetAfter <= time.Duration(2-want)*time.Second || res.ResetAfter > time.Duration(3-want)*time.Second {
				t.Fatalf("ResetAfter = %v after %d requests, want about %ds", res.ResetAfter, 3-want, 3-want)
			}
		}
		res, err := l.Allow(ctx, "k", limit)
		if err != nil || res.Allowed || res.Remaining != 0 {
			t.Fatalf("4th Allow = %+v, %v; want rejected", res, err)
		}
		if res.RetryAfter <= 0 || res.RetryAfter > time.Second || res.ResetAfter <= 2*time.Second || res.ResetAfter > 3*time.Second {
			t.Errorf("RetryAfter %v, ResetAfter %v; want (0, 1s] and about 3s", res.RetryAfter, res.ResetAfter)
		}
		if ttl := rdb.PTTL(ctx, prefix+"gcra:k").Val(); ttl <= 2*time.Second || ttl > 3*time.Second {
			t.Errorf("PTTL = %v, want the time until the allowance is full again (about 3s)", ttl)
		}
		if err := l.Reset(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if res, _ := l.AllowN(ctx, "k", limit, 3); !res.Allowed || res.Remaining != 0 {
			t.Errorf("AllowN(3) after Reset = %+v, want allowed with 0 remaining", res)
		}
	})
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	tests := []struct {
		name  string
		limit ratelimit.Limit
		n     int
		want  error
	}{
		{"ZeroRate", ratelimit.Limit{Period: time.Second, Burst: 1}, 1, ratelimit.ErrInvalidLimit},
		{"ZeroPeriod", ratelimit.Limit{Rate: 1, Burst: 1}, 1, ratelimit.ErrInvalidLimit},
		{"NegativeN", ratelimit.PerSecond(5), -1, ratelimit.ErrExceedsLimit},
		{"MoreThanTheLimit", ratelimit.PerSecond(5), 6, ratelimit.ErrExceedsLimit},
	}
	for _, lt := range limiters {
		l := lt.new(rdb, testredis.Prefix(t))
		for _, tt := range tests {
			t.Run(lt.name+"/"+tt.name, func(t *testing.T) {
				if _, err := l.AllowN(context.Background(), "k", tt.limit, tt.n); !errors.Is(err, tt.want) {
					t.Errorf("AllowN(%+v, %d) = %v, want %v", tt.limit, tt.n, err, tt.want)
				}
			})
		}
	}
	g := ratelimit.NewGCRA(rdb, nil)
	for _, limit := range []ratelimit.Limit{
		{Rate: 5, Period: time.Second},                    // no burst
		{Rate: 10_000_000, Period: time.Second, Burst: 1}, // faster than 1/µs
	} {
		if _, err := g.Allow(context.Background(), "k", limit); !errors.Is(err, ratelimit.ErrInvalidLimit) {
			t.Errorf("GCRA Allow(%+v) = %v, want ErrInvalidLimit", limit, err)
		}
	}
}

// Package lock is a mutual-exclusion lease on Redis whose fencing token
// really fences: each grant increments a per-resource counter in the same
// Lua script that sets the lock, so the protected resource can refuse a
// holder that was paused (GC, swap, a slow disk) past its TTL and came back
// believing it still holds the lock — the trap of locks that only expire.
//
// A lock is the key itself, holding its holder's random token with a TTL
// (SET NX PX). Release and Refresh compare that token and act in one script
// and fail with ErrNotHeld when the lock is gone: neither ever re-acquires
// silently. Do runs a function under the lock, keeps it alive while the
// function runs, and cancels the function's context if the lock is lost.
//
// Keys: for a lock key K, K holds the token and keys.Sibling(K, "fence")
// the fence counter, in K's hash slot so the grant script works on Redis
// Cluster. The counter never expires: a counter that restarted would hand
// out tokens the resource already saw. Run Redis with a noeviction or
// volatile-* maxmemory policy so it is never evicted either. Fencing holds
// across pauses and expiry, not across a failover that loses acknowledged
// writes (Redis replication is asynchronous).
package lock

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
)

var (
	// ErrNotObtained is returned by Obtain when another holder has the lock
	// and the retry strategy or the wait ran out.
	ErrNotObtained = errors.New("lock: not obtained")
	// ErrNotHeld is returned by Release, Refresh and TTL when the lock is no
	// longer this holder's: it expired, or another holder has it now.
	ErrNotHeld = errors.New("lock: not held")
	// ErrLost is the cause with which Do cancels its function's context, and
	// is matched by Do's error, when the lock was lost while the function ran.
	ErrLost = errors.New("lock: lost while held")
)

// obtainScript grants the lock and the next fencing token in one step, so no
// holder ever has the lock without a token greater than every earlier one.
//
// KEYS[1] -> the lock key; holds the holder's token while held
// KEYS[2] -> the fence counter, keys.Sibling(KEYS[1], "fence"); never expires
// ARGV[1] -> the new holder's random token
// ARGV[2] -> the TTL in milliseconds
// Returns the fencing token (>= 1), or 0 if another holder has the lock.
var obtainScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
`)

// refreshScript extends the lock only if it is still the caller's; a lock
// that expired is not taken again.
//
// KEYS[1] -> the lock key
// ARGV[1] -> the holder's token
// ARGV[2] -> the new TTL in milliseconds
// Returns 1 if extended, 0 if the lock is not the caller's.
var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lock only if it is still the caller's, so a
// holder whose lock expired cannot delete the next holder's.
//
// KEYS[1] -> the lock key
// ARGV[1] -> the holder's token
// Returns 1 if released, 0 if the lock is not the caller's.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// ttlScript reads the remaining TTL only if the lock is still the caller's.
//
// KEYS[1] -> the lock key
// ARGV[1] -> the holder's token
// Returns the TTL in milliseconds, or -3 if the lock is not the caller's.
var ttlScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
`)

// Locker obtains locks on one Redis (a single node, Sentinel or Cluster).
type Locker struct {
	rdb redis.UniversalClient
}

// New returns a Locker on rdb.
func New(rdb redis.UniversalClient) *Locker { return &Locker{rdb: rdb} }

// Options tunes Obtain and Do. A nil *Options is one attempt, no retry.
type Options struct {
	// Retry says how long to wait after each failed attempt and when to
	// stop. Default: NoRetry, or ExponentialBackoff(10ms, 250ms) when Wait
	// is set.
	Retry RetryStrategy
	// Wait bounds how long Obtain keeps retrying, apart from ctx, so Do's
	// function can have a longer context than the wait for the lock.
	// Default: 0, bounded only by ctx and Retry.
	Wait time.Duration
}

func (o *Options) retry() RetryStrategy {
	switch {
	case o == nil:
		return NoRetry()
	case o.Retry != nil:
		return o.Retry
	case o.Wait > 0:
		return ExponentialBackoff(10*time.Millisecond, 250*time.Millisecond)
	default:
		return NoRetry()
	}
}

// Lock is one holding of a lock. Its methods may be called concurrently.
type Lock struct {
	rdb      redis.UniversalClient
	key      string
	token    string
	fence    int64
	deadline atomic.Int64 // Unix nanoseconds before which the lock surely holds
}

// Obtain takes the lock named key for ttl, retrying as opt says while
// another holder has it. It returns an error matching ErrNotObtained when
// the retries or the wait ran out, and also matching ctx's error when ctx
// ended the wait; any other error is Redis's. ttl is rounded to whole
// milliseconds and must be >= 1ms.
func (l *Locker) Obtain(ctx context.Context, key string, ttl time.Duration, opt *Options) (*Lock, error) {
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("lock: ttl %v is below 1ms", ttl)
	}
	retry := opt.retry()
	waitCtx := ctx
	if opt != nil && opt.Wait > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, opt.Wait)
		defer cancel()
	}
	token := newToken()
	fenceKey := keys.Sibling(key, "fence")
	for n := 1; ; n++ {
		start := time.Now()
		fence, err := obtainScript.Run(waitCtx, l.rdb, []string{key, fenceKey}, token, ttl.Milliseconds()).Int64()
		if err != nil {
			// The script may have run before the error: give back a lock
			// this token may hold rather than leave it to its TTL.
			l.releaseAbandoned(ctx, key, token, ttl)
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrNotObtained, key, cerr)
			}
			if waitCtx.Err() != nil {
				return nil, fmt.Errorf("%w: %q is held by another after waiting %v", ErrNotObtained, key, opt.Wait)
			}
			return nil, fmt.Errorf("lock: obtaining %q: %w", key, err)
		}
		if fence > 0 {
			lk := &Lock{rdb: l.rdb, key: key, token: token, fence: fence}
			lk.deadline.Store(start.Add(ttl).UnixNano())
			return lk, nil
		}
		wait, ok := retry(n)
		if !ok {
			return nil, fmt.Errorf("%w: %q is held by another after %d attempts", ErrNotObtained, key, n)
		}
		next := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && next.After(d) {
			// Sleeping into the deadline would only end in it: say so now.
			return nil, fmt.Errorf("%w: %q is held by another: %w", ErrNotObtained, key, context.DeadlineExceeded)
		}
		if d, ok := waitCtx.Deadline(); ok && next.After(d) {
			return nil, fmt.Errorf("%w: %q is held by another after waiting %v", ErrNotObtained, key, opt.Wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-waitCtx.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrNotObtained, key, err)
			}
			return nil, fmt.Errorf("%w: %q is held by another after waiting %v", ErrNotObtained, key, opt.Wait)
		case <-t.C:
		}
	}
}

func (l *Locker) releaseAbandoned(ctx context.Context, key, token string, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(ttl, time.Second))
	defer cancel()
	_ = releaseScript.Run(ctx, l.rdb, []string{key}, token).Err()
}

// Key is the lock's key.
func (lk *Lock) Key() string { return lk.key }

// Token is the random value that identifies this holding in Redis.
func (lk *Lock) Token() string { return lk.token }

// Fence is the fencing token of this holding: greater than that of every
// earlier holding of the same lock. Send it with every write to the
// protected resource, which must refuse a write carrying a fence lower than
// the highest it has seen (SetFenced does so for a Redis key).
func (lk *Lock) Fence() int64 { return lk.fence }

// Refresh extends the lock to ttl from now. It returns an error matching
// ErrNotHeld, and does not take the lock again, if the lock expired or has
// another holder.
func (lk *Lock) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("lock: ttl %v is below 1ms", ttl)
	}
	start := time.Now()
	n, err := refreshScript.Run(ctx, lk.rdb, []string{lk.key}, lk.token, ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("lock: refreshing %q: %w", lk.key, err)
	}
	if n == 0 {
		lk.deadline.Store(0)
		return fmt.Errorf("%w: refreshing %q (fence %d)", ErrNotHeld, lk.key, lk.fence)
	}
	lk.deadline.Store(start.Add(ttl).UnixNano())
	return nil
}

// Release gives the lock up. It returns an error matching ErrNotHeld if the
// lock had already expired or has another holder, which it leaves alone.
func (lk *Lock) Release(ctx context.Context) error {
	n, err := releaseScript.Run(ctx, lk.rdb, []string{lk.key}, lk.token).Int64()
	if err != nil {
		return fmt.Errorf("lock: releasing %q: %w", lk.key, err)
	}
	lk.deadline.Store(0)
	if n == 0 {
		return fmt.Errorf("%w: releasing %q (fence %d)", ErrNotHeld, lk.key, lk.fence)
	}
	return nil
}

// TTL returns how long the lock has left, or an error matching ErrNotHeld.
func (lk *Lock) TTL(ctx context.Context) (time.Duration, error) {
	ms, err := ttlScript.Run(ctx, lk.rdb, []string{lk.key}, lk.token).Int64()
	if err != nil {
		return 0, fmt.Errorf("lock: reading the ttl of %q: %w", lk.key, err)
	}
	if ms == -3 {
		return 0, fmt.Errorf("%w: %q (fence %d)", ErrNotHeld, lk.key, lk.fence)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// heldUntil is when the lock expires at the latest, as last confirmed by
// Redis; the zero time once it is known lost.
func (lk *Lock) heldUntil() time.Time {
	ns := lk.deadline.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func newToken() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// A RetryStrategy says how long Obtain waits after its n-th failed attempt
// (n = 1, 2, …) before the next one, and ok false to stop. It is a pure
// function of n, so one strategy may serve many Obtain calls at once.
type RetryStrategy func(n int) (wait time.Duration, ok bool)

// NoRetry makes one attempt.
func NoRetry() RetryStrategy {
	return func(int) (time.Duration, bool) { return 0, false }
}

// LinearBackoff retries every d until ctx or the wait ends.
func LinearBackoff(d time.Duration) RetryStrategy {
	return func(int) (time.Duration, bool) { return d, true }
}

// ExponentialBackoff retries after min, 2·min, 4·min, … up to max, each wait
// drawn at random from its upper half so waiters that failed together do
// not retry together.
func ExponentialBackoff(minWait, maxWait time.Duration) RetryStrategy {
	return func(n int) (time.Duration, bool) {
		d := maxWait
		if n < 32 && minWait<<(n-1) < maxWait {
			d = minWait << (n - 1)
		}
		if d <= 1 {
			return d, true
		}
		return d/2 + rand.N(d/2), true
	}
}

// LimitRetry stops s after max retries (max+1 attempts in all).
func LimitRetry(s RetryStrategy, maxRetries int) RetryStrategy {
	return func(n int) (time.Duration, bool) {
		if n > maxRetries {
			return 0, false
		}
		return s(n)
	}
}

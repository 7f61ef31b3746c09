package cache

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// A LoadFunc loads a value from the source of truth on a miss. It returns
// ErrNotFound, or an error wrapping it, when the value does not exist.
type LoadFunc func(ctx context.Context) ([]byte, error)

// Fetch returns the value cached at key, or loads it with load, caches it
// for ttl (jittered; it must be positive) and returns it. Concurrent misses
// of one key load it once in this process and, through a lock in Redis,
// once across processes; the others wait for that load and share its
// result. A caller whose ctx ends stops waiting without cancelling the load
// for the rest. An error from load is returned and not cached, except
// ErrNotFound, which is cached for NegativeTTL. A loaded value over
// MaxValueSize is returned as an error matching ErrTooLarge. When Redis
// fails, so does Fetch: it does not fall back to loading, which would send
// every reader to the source of truth at the moment the cache is down.
//
// The bytes returned are the caller's own.
func (c *Cache) Fetch(ctx context.Context, key string, ttl time.Duration, load LoadFunc) ([]byte, error) {
	if err := c.check(key, ttl, 0); err != nil {
		return nil, err
	}
	raw, err := c.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		e, err := decode(key, raw)
		if err != nil {
			return nil, err
		}
		if v, ok, err := c.serve(ctx, key, ttl, load, e); ok {
			return v, err
		}
	case !errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("cache: getting %q: %w", key, err)
	}
	return c.flight.do(ctx, "fill:"+key, func(ctx context.Context) ([]byte, error) {
		return c.fill(ctx, key, ttl, load)
	})
}

// serve decides what a hit returns; ok is false when the entry is too old
// to serve, which makes it a miss.
func (c *Cache) serve(ctx context.Context, key string, ttl time.Duration, load LoadFunc, e entry) (v []byte, ok bool, err error) {
	now := c.now()
	fresh := now.Before(e.expiry)
	switch {
	case e.notFound:
		if fresh {
			return nil, true, notFound(key)
		}
	case fresh:
		if c.refreshEarly(now, e) {
			v, err := c.refreshNow(ctx, key, ttl, load, e.value)
			return v, true, err
		}
		return e.value, true, nil
	case now.Before(e.expiry.Add(c.opt.Stale)):
		c.refreshInBackground(ctx, key, ttl, load)
		return e.value, true, nil
	}
	return nil, false, nil
}

// refreshEarly is XFetch's test: now - δ·β·ln(rand) >= expiry. ln(rand) is
// negative, so the slower the last load (δ) the earlier a refresh may come.
func (c *Cache) refreshEarly(now time.Time, e entry) bool {
	if c.opt.EarlyRefresh <= 0 || e.delta <= 0 {
		return false
	}
	gap := -float64(e.delta) * c.opt.EarlyRefresh * math.Log(1-mathrand.Float64()) // 1-rand is in (0, 1]
	return gap >= float64(e.expiry.Sub(now))
}

// getOrLockScript is one poll of a process waiting for a value: it returns
// the value if someone stored it, or else takes the load lock if it is free.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock, lockKey(KEYS[1])
// ARGV[1] -> the caller's lock token
// ARGV[2] -> the lock's TTL in milliseconds
// Returns the entry (a string), 1 if the caller now holds the lock, or 0 if
// another process does.
var getOrLockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
`)

// fill is the miss path, run once per key per process by the flight: poll
// Redis until another process's load stored the value, or take the lock and
// load it here. After LockWait it loads without the lock rather than wait
// for ever on a loader that is stuck.
func (c *Cache) fill(ctx context.Context, key string, ttl time.Duration, load LoadFunc) ([]byte, error) {
	token := newToken()
	giveUp := time.Now().Add(c.opt.LockWait)
	for n := 1; ; n++ {
		res, err := getOrLockScript.Run(ctx, c.rdb, []string{key, lockKey(key)}, token, c.opt.LockTTL.Milliseconds()).Result()
		if err != nil {
			return nil, fmt.Errorf("cache: loading %q: %w", key, err)
		}
		switch res := res.(type) {
		case string:
			e, err := decode(key, []byte(res))
			if err != nil {
				return nil, err
			}
			if e.notFound {
				return nil, notFound(key)
			}
			return e.value, nil
		case int64:
			if res == 1 {
				return c.loadLocked(ctx, key, token, ttl, load)
			}
		}
		wait := c.pollBackoff(n)
		if time.Now().Add(wait).After(giveUp) {
			c.log.WarnContext(ctx, "another process's load outlasted LockWait; loading without the lock",
				"key", key, "lock_wait", c.opt.LockWait)
			return c.loadAndStore(ctx, key, "", ttl, load)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// loadLocked loads key while holding its lock (token), keeping the lock
// alive for as long as the load runs, so that a load longer than LockTTL
// does not let another process start a second one.
func (c *Cache) loadLocked(ctx context.Context, key, token string, ttl time.Duration, load LoadFunc) ([]byte, error) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.keepLock(ctx, key, token, done)
	}()
	v, err := c.loadAndStore(ctx, key, token, ttl, func(ctx context.Context) ([]byte, error) {
		defer func() { close(done); <-stopped }()
		return load(ctx)
	})
	return v, err
}

// extendScript keeps a running load's lock alive, only if it is still the
// loader's.
//
// KEYS[1] -> the load lock
// ARGV[1] -> the loader's lock token
// ARGV[2] -> the lock's TTL in milliseconds
// Returns 1 if extended, 0 if the lock was no longer the loader's.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

func (c *Cache) keepLock(ctx context.Context, key, token string, done <-chan struct{}) {
	interval := c.opt.LockTTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ectx, cancel := context.WithTimeout(ctx, interval)
		n, err := extendScript.Run(ectx, c.rdb, []string{lockKey(key)}, token, c.opt.LockTTL.Milliseconds()).Int64()
		cancel()
		if err == nil && n == 0 {
			// Revoked by Delete or Set, or expired while this process
			// stalled: the store will be refused.
			c.log.DebugContext(ctx, "load lock lost while loading; the result will not be stored", "key", key)
			return
		}
	}
}

// unlockScript gives up a load lock after a failed load, only if it is
// still the loader's.
//
// KEYS[1] -> the load lock
// ARGV[1] -> the loader's lock token
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// loadAndStore runs load and caches its outcome: the value, or a "not
// found". With a token, it stores only while the lock is still the
// token's, and unlocks after a failure; without, it stores only where no
// value is, so as not to overwrite the lock holder's.
func (c *Cache) loadAndStore(ctx context.Context, key, token string, ttl time.Duration, load LoadFunc) ([]byte, error) {
	start := c.now()
	v, err := protect(ctx, load) // a panic must not leave the lock behind
	delta := c.now().Sub(start)

	// Store or unlock even if ctx ended meanwhile: a lock left behind
	// makes other processes wait for its TTL.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.LockTTL)
	defer cancel()
	switch {
	case errors.Is(err, ErrNotFound) && c.opt.NegativeTTL > 0:
		nttl := c.jitter(c.opt.NegativeTTL)
		c.store(sctx, key, token, entry{notFound: true, expiry: c.now().Add(nttl)}, nttl)
		return nil, err
	case err == nil:
		err = c.check(key, ttl, len(v))
	}
	if err != nil {
		if token != "" {
			_ = unlockScript.Run(sctx, c.rdb, []string{lockKey(key)}, token).Err()
		}
		return nil, err
	}
	ttl = c.jitter(ttl)
	c.store(sctx, key, token, entry{value: v, expiry: c.now().Add(ttl), delta: delta}, ttl+c.opt.Stale)
	return v, nil
}

// storeScript stores a loaded entry only while the loader still holds the
// lock: a Delete or Set since the lock was taken revoked it, and the load
// may have read data older than theirs.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock
// ARGV[1] -> the loader's lock token
// ARGV[2] -> the entry
// ARGV[3] -> the entry's TTL in milliseconds
// Returns 1 if stored, 0 if the lock was no longer the loader's.
var storeScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)

// store writes a loaded entry. A failure is logged, not returned: the load
// succeeded and its value is good for the callers waiting on it.
func (c *Cache) store(ctx context.Context, key, token string, e entry, ttl time.Duration) {
	raw := encode(e)
	var err error
	if token == "" {
		err = c.rdb.SetArgs(ctx, key, raw, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
		if errors.Is(err, redis.Nil) {
			err = nil // the lock holder stored first
		}
	} else {
		var n int64
		n, err = storeScript.Run(ctx, c.rdb, []string{key, lockKey(key)}, token, raw, ttl.Milliseconds()).Int64()
		if err == nil && n == 0 {
			c.log.DebugContext(ctx, "not storing a load whose lock was revoked by an invalidation", "key", key)
		}
	}
	if err != nil {
		c.log.WarnContext(ctx, "storing a loaded value failed", "key", key, "error", err)
	}
}

// refresh loads key again unless another process is loading it already;
// loaded is false then.
func (c *Cache) refresh(ctx context.Context, key string, ttl time.Duration, load LoadFunc) (v []byte, loaded bool, err error) {
	token := newToken()
	ok, err := c.rdb.SetNX(ctx, lockKey(key), token, c.opt.LockTTL).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	v, err = c.loadLocked(ctx, key, token, ttl, load)
	return v, true, err
}

// refreshNow is XFetch's early refresh: this caller (and those of this
// process that join it) reload and get the new value. If another process is
// refreshing already, or the load fails, the current value still is fresh.
func (c *Cache) refreshNow(ctx context.Context, key string, ttl time.Duration, load LoadFunc, current []byte) ([]byte, error) {
	return c.flight.do(ctx, "refresh:"+key, func(ctx context.Context) ([]byte, error) {
		v, loaded, err := c.refresh(ctx, key, ttl, load)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil, err // gone from the source of truth
		case err != nil:
			c.log.WarnContext(ctx, "early refresh failed; serving the current value", "key", key, "error", err)
			return current, nil
		case !loaded:
			return current, nil
		}
		return v, nil
	})
}

// refreshInBackground starts one background reload of a stale key in this
// process, unless one runs already.
func (c *Cache) refreshInBackground(ctx context.Context, key string, ttl time.Duration, load LoadFunc) {
	c.flight.start(ctx, "refresh:"+key, c.opt.LockWait, func(ctx context.Context) ([]byte, error) {
		_, _, err := c.refresh(ctx, key, ttl, load)
		if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			c.log.WarnContext(ctx, "background refresh failed; serving the stale value", "key", key, "error", err)
		}
		return nil, err
	})
}

// pollBackoff is the wait before poll n+1: MinPollBackoff doubled per poll
// up to MaxPollBackoff, drawn from the upper half so waiters spread out.
func (c *Cache) pollBackoff(n int) time.Duration {
	bound := c.opt.MaxPollBackoff
	if n < 32 && c.opt.MinPollBackoff<<(n-1) < bound {
		bound = c.opt.MinPollBackoff << (n - 1)
	}
	return bound/2 + mathrand.N(bound/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

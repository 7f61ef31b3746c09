// Package cache is cache-aside on Redis: Fetch reads a key and, on a miss,
// loads the value through the caller's function and stores it with a TTL.
//
// It owns the traps of the naive get-load-set. A cold or expired hot key
// makes every concurrent reader load it at once (a stampede): Fetch loads
// it once per key per process (a context-aware singleflight) and once per
// key across processes (a short Redis lock that its holder keeps alive while
// the load runs, so a load longer than the lock's TTL does not let others
// start theirs; waiters poll with backoff until a deadline). Keys written
// together expire together unless their TTLs are jittered (±10% by
// default), and a key nobody has is loaded on every read unless "not found"
// is cached too (NegativeTTL). A load that races a write can put the old
// value back after the write's invalidation: Delete revokes the in-flight
// loader's lock, and a loader stores only while it still holds it. Optional
// early refresh (XFetch) and stale-while-revalidate keep hot keys from
// expiring under load at all. Values over a size cap are refused: cache
// references, not blobs.
//
// Keys: the caller's key K holds the value behind a 13-byte header (kind,
// logical expiry, load time); keys.Sibling(K, "lock") is its load lock, in
// K's hash slot so the scripts that touch both work on Redis Cluster.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
)

var (
	// ErrMiss is returned by Get when the key holds no fresh value.
	ErrMiss = errors.New("cache: miss")
	// ErrNotFound is what a load function returns (or wraps) to say the
	// value does not exist; Fetch caches that answer for NegativeTTL and
	// returns an error matching ErrNotFound meanwhile, without loading.
	ErrNotFound = errors.New("cache: not found")
	// ErrTooLarge is returned for a value over Options.MaxValueSize.
	ErrTooLarge = errors.New("cache: value too large")
	// ErrClosed is returned by Fetch after Close.
	ErrClosed = errors.New("cache: closed")
)

// Options tunes a Cache. The zero value gives the defaults.
type Options struct {
	// MaxValueSize is the largest value stored, in bytes; Set and Fetch
	// refuse a larger one with ErrTooLarge. Cache a reference to a blob
	// (an object-store key), not the blob. Default: 512 KiB.
	MaxValueSize int
	// Jitter spreads every TTL uniformly over [TTL·(1-Jitter), TTL·(1+Jitter)],
	// so keys stored together do not expire together. At most 0.5; negative
	// for none. Default: 0.1 (±10%).
	Jitter float64
	// NegativeTTL is how long a load's ErrNotFound is cached; negative
	// disables negative caching. Jitter applies. Default: 10s.
	NegativeTTL time.Duration
	// LockTTL is the TTL of the lock that lets one process load a key while
	// the others wait. The loader refreshes it every LockTTL/3 while its
	// load runs, so loads may take longer: LockTTL only bounds how long
	// waiters wait when the loader dies. Default: 5s.
	LockTTL time.Duration
	// LockWait is how long a process waits for another's load before it
	// loads on its own (still once per process), so a stuck loader cannot
	// stall readers for ever. Keep it well above LockTTL, so that waiters
	// take over from a dead loader before they give up. Default: 15s.
	LockWait time.Duration
	// MinPollBackoff is the first wait of a process polling for another's
	// load; each further poll doubles it, up to MaxPollBackoff, each drawn
	// from the upper half of its bound. Default: 5ms.
	MinPollBackoff time.Duration
	// MaxPollBackoff caps the wait between polls. Default: 100ms.
	MaxPollBackoff time.Duration
	// EarlyRefresh is XFetch's β: on a hit, a reader reloads the value
	// before it expires when now - δ·β·ln(rand) >= expiry, δ being how long
	// the last load took, so a hot key is refreshed by one reader shortly
	// before expiry instead of by all readers just after. The chosen reader
	// reloads (once per process, and only if no other process is loading)
	// and gets the new value; a failed refresh serves the current one.
	// 1 is the paper's choice; larger refreshes earlier. Default: 0, off.
	EarlyRefresh float64
	// Stale is how long past its TTL a value is still served while one
	// background load refreshes it (stale-while-revalidate). Background
	// loads are bounded by LockWait; Close waits for them. Default: 0, off.
	Stale time.Duration
	// Logger receives what cannot be returned: a failed invalidation after
	// a successful write, a failed background refresh. Default: discard.
	Logger *slog.Logger
}

func (o *Options) init() {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = 512 << 10
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = 0.1
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter > 0.5:
		o.Jitter = 0.5
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 10 * time.Second
	}
	if o.LockTTL < 3*time.Millisecond {
		o.LockTTL = 5 * time.Second
	}
	if o.LockWait <= 0 {
		o.LockWait = 15 * time.Second
	}
	if o.MinPollBackoff <= 0 {
		o.MinPollBackoff = 5 * time.Millisecond
	}
	if o.MaxPollBackoff <= 0 {
		o.MaxPollBackoff = 100 * time.Millisecond
	}
	o.MaxPollBackoff = max(o.MaxPollBackoff, o.MinPollBackoff)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Cache is cache-aside on one Redis (a single node, Sentinel or Cluster).
// It is safe for concurrent use; Close it to wait for background refreshes.
type Cache struct {
	rdb    redis.UniversalClient
	opt    Options
	log    *slog.Logger
	flight *flight
	now    func() time.Time // the clock of logical expiry; tests replace it
}

// New returns a Cache on rdb; opt may be nil for the defaults.
func New(rdb redis.UniversalClient, opt *Options) *Cache {
	c := &Cache{rdb: rdb, now: time.Now}
	if opt != nil {
		c.opt = *opt
	}
	c.opt.init()
	c.log = c.opt.Logger.With("component", "cache")
	c.flight = newFlight()
	return c
}

// Close cancels in-flight loads and background refreshes and waits for
// them to end. Fetch returns ErrClosed afterwards; Close is safe to call
// more than once.
func (c *Cache) Close() error {
	c.flight.close()
	return nil
}

// Get returns the value cached at key while it is fresh; ErrMiss when there
// is none (or it is past its TTL); an error matching ErrNotFound when a
// "not found" is cached.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	raw, err := c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("cache: getting %q: %w", key, err)
	}
	e, err := decode(key, raw)
	if err != nil {
		return nil, err
	}
	if !c.now().Before(e.expiry) {
		return nil, ErrMiss
	}
	if e.notFound {
		return nil, notFound(key)
	}
	return e.value, nil
}

// setScript stores an entry written by Set and revokes any load in flight.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock
// ARGV[1] -> the entry
// ARGV[2] -> the entry's TTL in milliseconds
var setScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
`)

// Set caches value at key for ttl (jittered), which must be positive.
// It revokes the lock of a load in flight for key, whose older result then
// is not stored over value.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.check(key, ttl, len(value)); err != nil {
		return err
	}
	ttl = c.jitter(ttl)
	raw := encode(entry{value: value, expiry: c.now().Add(ttl)})
	if err := setScript.Run(ctx, c.rdb, []string{key, lockKey(key)}, raw, (ttl + c.opt.Stale).Milliseconds()).Err(); err != nil {
		return fmt.Errorf("cache: setting %q: %w", key, err)
	}
	return nil
}

// Delete invalidates keys: their values go, and so do the locks of loads in
// flight for them, so a load that read the data before a write cannot put
// the old value back after it (a loader stores only while it holds its
// lock). Keys may span hash slots.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k, lockKey(k)) // one slot: see lockKey
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: deleting %q: %w", keys, err)
	}
	return nil
}

// invalidateTimeout bounds Write's invalidation, which runs even when the
// caller's context ended right after the write committed.
const invalidateTimeout = 3 * time.Second

// Write runs write — a change to the source of truth, such as a database
// update — and then invalidates keys (write-then-delete: deleting first
// lets a reader cache the old value again before the write lands). An error
// from write is returned and the cache left alone. A failure to invalidate
// does not fail the write, which has happened: it is logged at warn level,
// and the stale value lasts at most until its TTL.
func (c *Cache) Write(ctx context.Context, write func(ctx context.Context) error, keys ...string) error {
	if err := write(ctx); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invalidateTimeout)
	defer cancel()
	if err := c.Delete(dctx, keys...); err != nil {
		c.log.WarnContext(ctx, "invalidation after a write failed; readers may see the old value until its TTL",
			"keys", keys, "error", err)
	}
	return nil
}

func (c *Cache) check(key string, ttl time.Duration, size int) error {
	if ttl <= 0 {
		return fmt.Errorf("cache: %q: a TTL is required, got %v", key, ttl)
	}
	if size > c.opt.MaxValueSize {
		return fmt.Errorf("%w: %q is %d bytes, over the %d-byte cap; cache a reference to it instead",
			ErrTooLarge, key, size, c.opt.MaxValueSize)
	}
	return nil
}

// jitter spreads ttl over ±Jitter, never below 1ms.
func (c *Cache) jitter(ttl time.Duration) time.Duration {
	if c.opt.Jitter > 0 {
		ttl = time.Duration(float64(ttl) * (1 + c.opt.Jitter*(2*rand.Float64()-1)))
	}
	return max(ttl, time.Millisecond)
}

func notFound(key string) error { return fmt.Errorf("%w: %q", ErrNotFound, key) }

// lockKey is the load lock of key: keys.Sibling puts it in key's hash slot,
// which the scripts and Delete's two-key DEL need on Redis Cluster.
func lockKey(key string) string { return keys.Sibling(key, "lock") }

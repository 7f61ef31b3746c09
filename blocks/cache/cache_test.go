package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func newCache(t testing.TB, rdb redis.UniversalClient, opt *Options) *Cache {
	t.Helper()
	c := New(rdb, opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func setup(t *testing.T, opt *Options) (*redis.Client, *Cache, string) {
	t.Helper()
	rdb := testredis.Shared(t).Client(t)
	return rdb, newCache(t, rdb, opt), testredis.Prefix(t)
}

// counter is a load function that counts its calls.
type counter struct {
	calls atomic.Int64
	fn    func(ctx context.Context, call int64) ([]byte, error)
}

func (l *counter) load(ctx context.Context) ([]byte, error) { return l.fn(ctx, l.calls.Add(1)) }

func constant(v string) *counter {
	return &counter{fn: func(context.Context, int64) ([]byte, error) { return []byte(v), nil }}
}

func TestFetchMissThenHit(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "user:1"
	l := constant("ann")
	for range 3 {
		v, err := c.Fetch(ctx, key, time.Minute, l.load)
		if err != nil || string(v) != "ann" {
			t.Fatalf("Fetch = %q, %v", v, err)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader ran %d times; want 1", n)
	}
	if v, err := c.Get(ctx, key); err != nil || string(v) != "ann" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := c.Get(ctx, p+"other"); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get of a missing key = %v; want ErrMiss", err)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 53*time.Second || ttl > 66*time.Second {
		t.Fatalf("PTTL = %v; want a minute ±10%%", ttl)
	}
	if n := rdb.Exists(ctx, lockKey(key)).Val(); n != 0 {
		t.Fatal("the load lock outlived the load")
	}
}

func TestTTLRequired(t *testing.T) {
	t.Parallel()
	_, c, p := setup(t, nil)
	ctx := t.Context()
	if _, err := c.Fetch(ctx, p+"k", 0, constant("v").load); err == nil || !strings.Contains(err.Error(), "TTL is required") {
		t.Fatalf("Fetch with no TTL = %v", err)
	}
	if err := c.Set(ctx, p+"k", []byte("v"), -time.Second); err == nil {
		t.Fatal("Set with a negative TTL: no error")
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	lo, hi := time.Hour, time.Duration(0)
	for i := range 200 {
		key := fmt.Sprint(p, i)
		if err := c.Set(ctx, key, []byte("v"), 100*time.Second); err != nil {
			t.Fatal(err)
		}
		ttl := rdb.PTTL(ctx, key).Val()
		lo, hi = min(lo, ttl), max(hi, ttl)
	}
	if lo < 89*time.Second || hi > 110*time.Second || hi-lo < 10*time.Second {
		t.Fatalf("TTLs span [%v, %v]; want spread over 100s ±10%%", lo, hi)
	}

	c = newCache(t, rdb, &Options{Jitter: -1})
	if err := c.Set(ctx, p+"exact", []byte("v"), 100*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, p+"exact").Val(); ttl < 99*time.Second || ttl > 100*time.Second {
		t.Fatalf("PTTL without jitter = %v; want 100s", ttl)
	}
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, &Options{NegativeTTL: time.Minute})
	ctx := t.Context()
	key := p + "user:404"
	l := &counter{fn: func(context.Context, int64) ([]byte, error) {
		return nil, fmt.Errorf("user 404: %w", ErrNotFound)
	}}
	for range 3 {
		if _, err := c.Fetch(ctx, key, time.Hour, l.load); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Fetch = %v; want ErrNotFound", err)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader ran %d times; want 1", n)
	}
	if _, err := c.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v; want ErrNotFound", err)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl > 66*time.Second {
		t.Fatalf("PTTL = %v; want NegativeTTL's minute, not the value TTL's hour", ttl)
	}

	c = newCache(t, rdb, &Options{NegativeTTL: -1})
	for range 2 {
		if _, err := c.Fetch(ctx, p+"other", time.Hour, l.load); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Fetch = %v; want ErrNotFound", err)
		}
	}
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loader ran %d times in all; want 3 (no negative caching)", n)
	}
}

func TestLoadErrorIsNotCached(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "k"
	boom := errors.New("database down")
	l := &counter{fn: func(context.Context, int64) ([]byte, error) { return nil, boom }}
	for range 2 {
		if _, err := c.Fetch(ctx, key, time.Minute, l.load); !errors.Is(err, boom) {
			t.Fatalf("Fetch = %v; want the load's error", err)
		}
	}
	if l.calls.Load() != 2 {
		t.Fatalf("loader ran %d times; want 2", l.calls.Load())
	}
	if rdb.Exists(ctx, key, lockKey(key)).Val() != 0 {
		t.Fatal("a failed load left a value or its lock")
	}
}

func TestPanicInLoad(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "k"
	_, err := c.Fetch(ctx, key, time.Minute, func(context.Context) ([]byte, error) { panic("bug") })
	if err == nil || !strings.Contains(err.Error(), "load panicked: bug") {
		t.Fatalf("Fetch = %v; want the panic as an error", err)
	}
	if rdb.Exists(ctx, lockKey(key)).Val() != 0 {
		t.Fatal("a panicking load left its lock")
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, &Options{MaxValueSize: 1024})
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 1025)
	if err := c.Set(ctx, p+"a", big, time.Minute); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Set = %v; want ErrTooLarge", err)
	}
	_, err := c.Fetch(ctx, p+"b", time.Minute, func(context.Context) ([]byte, error) { return big, nil })
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "cache a reference") {
		t.Fatalf("Fetch = %v; want ErrTooLarge", err)
	}
	if rdb.Exists(ctx, p+"a", p+"b", lockKey(p+"b")).Val() != 0 {
		t.Fatal("a refused value, or its lock, was stored")
	}
	if err := New(rdb, nil).Set(ctx, p+"c", big, time.Minute); err != nil {
		t.Fatalf("Set of 1 KiB under the default 512 KiB cap = %v", err)
	}
}

func TestForeignValue(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	rdb.Set(ctx, p+"k", "written by someone else", 0)
	if _, err := c.Fetch(ctx, p+"k", time.Minute, constant("v").load); err == nil || !strings.Contains(err.Error(), "did not write") {
		t.Fatalf("Fetch = %v", err)
	}
}

// db is a source of truth with one row, for the invalidation tests.
type db struct {
	mu    sync.Mutex
	value string
}

func (d *db) read() string   { d.mu.Lock(); defer d.mu.Unlock(); return d.value }
func (d *db) write(v string) { d.mu.Lock(); d.value = v; d.mu.Unlock() }

func TestWriteInvalidates(t *testing.T) {
	t.Parallel()
	_, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "user:1"
	src := &db{value: "v1"}
	load := func(context.Context) ([]byte, error) { return []byte(src.read()), nil }
	if v, _ := c.Fetch(ctx, key, time.Hour, load); string(v) != "v1" {
		t.Fatalf("Fetch = %q", v)
	}
	if err := c.Write(ctx, func(context.Context) error { src.write("v2"); return nil }, key); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Fetch(ctx, key, time.Hour, load); string(v) != "v2" {
		t.Fatalf("Fetch after Write = %q; want v2", v)
	}
	boom := errors.New("constraint violated")
	if err := c.Write(ctx, func(context.Context) error { return boom }, key); !errors.Is(err, boom) {
		t.Fatalf("Write = %v; want the write's error", err)
	}
	if _, err := c.Get(ctx, key); err != nil {
		t.Fatalf("a failed write invalidated the key: Get = %v", err)
	}
}

// The write committed; the cache is unreachable. Write reports the failed
// invalidation to the logger and does not fail (a retried write would run
// twice).
func TestWriteInvalidationFailureIsLogged(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	var logs bytes.Buffer
	c := newCache(t, rdb, &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	wrote := false
	err = c.Write(t.Context(), func(context.Context) error { wrote = true; return nil }, "user:1")
	if err != nil || !wrote {
		t.Fatalf("Write = %v (wrote: %v); want nil after the write", err, wrote)
	}
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "invalidation after a write failed") || !strings.Contains(got, "user:1") {
		t.Fatalf("log = %q; want a warning naming the key", got)
	}
}

// The race of write-then-delete: a load reads the old row, the write
// commits and invalidates, then the load tries to store what it read. The
// invalidation revoked its lock, so the old value is not stored.
func TestDeleteRevokesInFlightLoad(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "user:1"
	src := &db{value: "old"}
	read, proceed := make(chan struct{}), make(chan struct{})
	slow := func(context.Context) ([]byte, error) {
		v := src.read()
		close(read)
		<-proceed
		return []byte(v), nil
	}
	done := make(chan []byte)
	go func() {
		v, _ := c.Fetch(ctx, key, time.Hour, slow)
		done <- v
	}()
	<-read
	if err := c.Write(ctx, func(context.Context) error { src.write("new"); return nil }, key); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if v := <-done; string(v) != "old" {
		t.Fatalf("the racing Fetch = %q; want what its load read", v)
	}
	if rdb.Exists(ctx, key).Val() != 0 {
		t.Fatalf("the stale load was stored: %q", rdb.Get(ctx, key).Val())
	}
	v, err := c.Fetch(ctx, key, time.Hour, func(context.Context) ([]byte, error) { return []byte(src.read()), nil })
	if err != nil || string(v) != "new" {
		t.Fatalf("Fetch = %q, %v; want new", v, err)
	}
}

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func TestTyped(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	users := NewTyped[user](c, nil)
	calls := 0
	load := func(context.Context) (user, error) { calls++; return user{ID: "1", Name: "Ann"}, nil }
	for range 2 {
		u, err := users.Fetch(ctx, p+"user:1", time.Minute, load)
		if err != nil || u != (user{ID: "1", Name: "Ann"}) {
			t.Fatalf("Fetch = %+v, %v", u, err)
		}
	}
	if calls != 1 {
		t.Fatalf("loader ran %d times; want 1", calls)
	}
	if u, err := users.Get(ctx, p+"user:1"); err != nil || u.Name != "Ann" {
		t.Fatalf("Get = %+v, %v", u, err)
	}
	if err := users.Set(ctx, p+"user:2", user{ID: "2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err := users.Fetch(ctx, p+"user:404", time.Minute, func(context.Context) (user, error) { return user{}, ErrNotFound })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch of a missing user = %v; want ErrNotFound", err)
	}

	// An older version of the program cached ids as numbers: the value does
	// not decode into today's type, so it is loaded again, not an error.
	old := NewTyped[struct {
		ID int `json:"id"`
	}](c, JSON{})
	if err := old.Set(ctx, p+"user:3", struct {
		ID int `json:"id"`
	}{3}, time.Hour); err != nil {
		t.Fatal(err)
	}
	u, err := users.Fetch(ctx, p+"user:3", time.Minute, func(context.Context) (user, error) { return user{ID: "3"}, nil })
	if err != nil || u.ID != "3" {
		t.Fatalf("Fetch over an undecodable value = %+v, %v", u, err)
	}
	if got := rdb.Get(ctx, p+"user:3").Val(); !strings.Contains(got, `"id":"3"`) {
		t.Fatalf("stored = %q; want the reloaded value", got)
	}
}

// On Redis Cluster the scripts touch a key and its lock, and Delete deletes
// both: each pair must hash to one slot, whatever the key's shape.
func TestCluster(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := t.Context()
	c := newCache(t, cc, nil)
	p := testredis.Prefix(t)
	for _, key := range []string{p + "user:1", p + "user:{2}:profile", "}" + p} {
		l := slowLoad(20*time.Millisecond, "v")
		fetchAll(t, c, key, 20, l.load, "v")
		if err := c.Set(ctx, key, []byte("w"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, func(context.Context) error { return nil }, key, p+"elsewhere"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, key); !errors.Is(err, ErrMiss) {
			t.Fatalf("Get after Write = %v; want ErrMiss", err)
		}
		_, err := c.Fetch(ctx, key, time.Minute, func(context.Context) ([]byte, error) { return nil, ErrNotFound })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Fetch = %v", err)
		}
		if err := c.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}

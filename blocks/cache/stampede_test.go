package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// slowLoad is a load from a slow source: it takes d (the workload the
// stampede protection exists for), or ends with ctx.
func slowLoad(d time.Duration, v string) *counter {
	return &counter{fn: func(ctx context.Context, _ int64) ([]byte, error) {
		select {
		case <-time.After(d):
			return []byte(v), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
}

// fetchAll runs n concurrent Fetches of key and fails on any other result
// than want.
func fetchAll(t testing.TB, c *Cache, key string, n int, load LoadFunc, want string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			v, err := c.Fetch(context.Background(), key, time.Minute, load)
			if err != nil || string(v) != want {
				errs <- fmt.Errorf("Fetch = %q, %w; want %q", v, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// 500 concurrent misses of one cold key in one process load it once.
func TestConcurrentMissesLoadOnce(t *testing.T) {
	t.Parallel()
	_, c, p := setup(t, nil)
	l := slowLoad(100*time.Millisecond, "v")
	fetchAll(t, c, p+"cold", 500, l.load, "v")
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader ran %d times; want 1", n)
	}
}

// Ten caches stand for ten processes (the lock in Redis is all they share).
// The load takes three times the lock's TTL: a naive lock would expire
// twice during the load and let another process start a load each time.
// The loader keeps it alive, so there is one load.
func TestLockShorterThanLoad(t *testing.T) {
	t.Parallel()
	rdb, _, p := setup(t, nil)
	key := p + "cold"
	const lockTTL = time.Second // refreshed every 333ms: room for a stalled -race run
	l := slowLoad(3*lockTTL, "v")
	var logs syncBuffer
	var wg sync.WaitGroup
	for range 10 {
		c := newCache(t, rdb, &Options{
			LockTTL: lockTTL, MaxPollBackoff: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		wg.Go(func() { fetchAll(t, c, key, 30, l.load, "v") })
	}
	wg.Wait()
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader ran %d times; want 1\n%s", n, logs.String())
	}
}

// syncBuffer is a bytes.Buffer that many goroutines can log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// A loader that died leaves its lock to expire: a waiter then takes over.
func TestCrashedLoaderLockExpires(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "k"
	if err := rdb.Set(ctx, lockKey(key), "dead-process", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	l := constant("v")
	if v, err := c.Fetch(ctx, key, time.Minute, l.load); err != nil || string(v) != "v" {
		t.Fatalf("Fetch = %q, %v", v, err)
	}
	if l.calls.Load() != 1 {
		t.Fatal("the waiter did not load")
	}
}

// A loader that is alive but stuck keeps its lock: after LockWait a waiter
// loads on its own, and does not overwrite what the holder may store.
func TestLockWaitBounded(t *testing.T) {
	t.Parallel()
	rdb, c, p := setup(t, &Options{LockWait: 100 * time.Millisecond})
	ctx := t.Context()
	key := p + "k"
	if err := rdb.Set(ctx, lockKey(key), "stuck-process", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Fetch(ctx, key, time.Minute, constant("v").load); err != nil || string(v) != "v" {
		t.Fatalf("Fetch = %q, %v", v, err)
	}
	if v, err := c.Get(ctx, key); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v; the fallback load was not stored", v, err)
	}
	if got := rdb.Get(ctx, lockKey(key)).Val(); got != "stuck-process" {
		t.Fatal("the fallback load touched another process's lock")
	}
}

// A caller that gives up stops waiting at once; the load goes on for the
// callers still waiting, and ends when the last one leaves.
func TestCallerCancellation(t *testing.T) {
	t.Parallel()
	_, c, p := setup(t, nil)
	ctx := t.Context()
	key := p + "k"
	started, release := make(chan struct{}), make(chan struct{})
	l := &counter{fn: func(ctx context.Context, call int64) ([]byte, error) {
		if call == 1 {
			close(started)
		}
		select {
		case <-release:
			return []byte("v"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	impatient, cancel := context.WithCancel(ctx)
	errImpatient := make(chan error)
	go func() {
		_, err := c.Fetch(impatient, key, time.Minute, l.load)
		errImpatient <- err
	}()
	<-started
	patient := make(chan string)
	go func() {
		v, _ := c.Fetch(ctx, key, time.Minute, l.load)
		patient <- string(v)
	}()
	// The patient caller joins the flight before the impatient one leaves:
	// poll until it waits too.
	waitFor(t, func() bool { return c.flight.waiters("fill:"+key) == 2 })
	cancel()
	if err := <-errImpatient; !errors.Is(err, context.Canceled) {
		t.Fatalf("impatient Fetch = %v; want context.Canceled", err)
	}
	close(release)
	if v := <-patient; v != "v" {
		t.Fatalf("patient Fetch = %q; the load was cancelled under it", v)
	}
	if l.calls.Load() != 1 {
		t.Fatalf("loader ran %d times; want 1", l.calls.Load())
	}

	// Alone, the caller that leaves cancels the load.
	lonely, cancel := context.WithCancel(ctx)
	started = make(chan struct{})
	cancelled := make(chan struct{})
	blocked := &counter{fn: func(ctx context.Context, _ int64) ([]byte, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}}
	go func() { <-started; cancel() }()
	if _, err := c.Fetch(lonely, p+"other", time.Minute, blocked.load); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v; want context.Canceled", err)
	}
	<-cancelled // the load saw its context end
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond) // polling, with a deadline
	}
}

package lock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
	"github.com/streamworker/streamworker/blocks/lock"
	"github.com/streamworker/streamworker/internal/testredis"
)

func setup(t *testing.T) (*redis.Client, *lock.Locker, string) {
	t.Helper()
	rdb := testredis.Shared(t).Client(t)
	return rdb, lock.New(rdb), testredis.Prefix(t)
}

func TestObtainReleaseRefresh(t *testing.T) {
	t.Parallel()
	rdb, l, p := setup(t)
	ctx := t.Context()
	key := p + "lock"

	lk, err := l.Obtain(ctx, key, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lk.Key() != key || lk.Fence() != 1 || lk.Token() == "" {
		t.Fatalf("lock = key %q fence %d token %q", lk.Key(), lk.Fence(), lk.Token())
	}
	if got := rdb.Get(ctx, key).Val(); got != lk.Token() {
		t.Fatalf("lock key holds %q; want the token %q", got, lk.Token())
	}
	if _, err := l.Obtain(ctx, key, time.Minute, nil); !errors.Is(err, lock.ErrNotObtained) {
		t.Fatalf("second Obtain = %v; want ErrNotObtained", err)
	}
	if err := lk.Refresh(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl, err := lk.TTL(ctx); err != nil || ttl <= time.Minute {
		t.Fatalf("TTL after Refresh = %v, %v; want over a minute", ttl, err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("second Release = %v; want ErrNotHeld", err)
	}
	// A refresh of a released lock must not take it again.
	if err := lk.Refresh(ctx, time.Minute); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Refresh after Release = %v; want ErrNotHeld", err)
	}
	if _, err := lk.TTL(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("TTL after Release = %v; want ErrNotHeld", err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("Refresh of a released lock re-created it")
	}
	lk2, err := l.Obtain(ctx, key, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lk2.Fence() != 2 {
		t.Fatalf("second holding's fence = %d; want 2", lk2.Fence())
	}
	if err := lk2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestObtainRefusesTinyTTL(t *testing.T) {
	t.Parallel()
	_, l, p := setup(t)
	if _, err := l.Obtain(t.Context(), p+"lock", time.Microsecond, nil); err == nil {
		t.Fatal("Obtain with a 1µs ttl: no error")
	}
}

// 200 goroutines contend for one lock: no two ever hold it at once, each
// holder's fence is greater than every earlier holder's, and the fenced
// resource accepts every write.
func TestMutualExclusionAndFencing(t *testing.T) {
	t.Parallel()
	rdb, l, p := setup(t)
	ctx := t.Context()
	key, resource := p+"lock", p+"resource"
	opt := &lock.Options{Retry: lock.ExponentialBackoff(time.Millisecond, 20*time.Millisecond), Wait: time.Minute}

	const n = 200
	var (
		holders   atomic.Int32
		lastFence atomic.Int64
		overlaps  atomic.Int32
		backwards atomic.Int32
		wg        sync.WaitGroup
		errs      = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			lk, err := l.Obtain(ctx, key, 10*time.Second, opt)
			if err != nil {
				errs <- err
				return
			}
			if holders.Add(1) != 1 {
				overlaps.Add(1)
			}
			if f := lk.Fence(); f <= lastFence.Load() {
				backwards.Add(1)
			} else {
				lastFence.Store(f)
			}
			if err := lock.SetFenced(ctx, rdb, resource, i, lk.Fence()); err != nil {
				errs <- err
			}
			holders.Add(-1)
			if err := lk.Release(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if overlaps.Load() != 0 || backwards.Load() != 0 {
		t.Fatalf("%d overlapping holdings, %d fences not above the previous holder's", overlaps.Load(), backwards.Load())
	}
	if got := lastFence.Load(); got != n {
		t.Fatalf("last fence = %d; want %d (one per grant)", got, n)
	}
}

// A holder paused past its TTL comes back believing it holds the lock. The
// next holder has written meanwhile: the fencing check refuses the stale
// write, and the stale holder's Release leaves the new holder's lock alone.
func TestPausedHolderIsFenced(t *testing.T) {
	t.Parallel()
	rdb, l, p := setup(t)
	ctx := t.Context()
	key, resource := p+"lock", p+"resource"

	stale, err := l.Obtain(ctx, key, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.SetFenced(ctx, rdb, resource, "first write by A", stale.Fence()); err != nil {
		t.Fatal(err)
	}

	// A pauses here. B waits for A's lock to expire, takes it and writes.
	current, err := l.Obtain(ctx, key, time.Minute, &lock.Options{Retry: lock.LinearBackoff(5 * time.Millisecond), Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if current.Fence() <= stale.Fence() {
		t.Fatalf("new holder's fence %d is not above the stale one's %d", current.Fence(), stale.Fence())
	}
	if err := lock.SetFenced(ctx, rdb, resource, "B", current.Fence()); err != nil {
		t.Fatal(err)
	}

	// A resumes and writes as if it still held the lock.
	err = lock.SetFenced(ctx, rdb, resource, "A", stale.Fence())
	if !errors.Is(err, lock.ErrStaleFence) {
		t.Fatalf("stale write = %v; want ErrStaleFence", err)
	}
	if got := rdb.Get(ctx, resource).Val(); got != "B" {
		t.Fatalf("resource = %q after the stale write; want B", got)
	}
	if err := stale.Refresh(ctx, time.Minute); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("stale Refresh = %v; want ErrNotHeld", err)
	}
	if err := stale.Release(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("stale Release = %v; want ErrNotHeld", err)
	}
	if got := rdb.Get(ctx, key).Val(); got != current.Token() {
		t.Fatal("the stale holder's Release or Refresh touched the new holder's lock")
	}
	// The current holder may write again with the same token.
	if err := lock.SetFenced(ctx, rdb, resource, "B again", current.Fence()); err != nil {
		t.Fatal(err)
	}
	if err := current.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetFencedRefusesBadToken(t *testing.T) {
	t.Parallel()
	rdb, _, p := setup(t)
	if err := lock.SetFenced(t.Context(), rdb, p+"r", "v", 0); err == nil {
		t.Fatal("SetFenced with token 0: no error")
	}
}

func TestRetryStrategies(t *testing.T) {
	t.Parallel()
	_, l, p := setup(t)
	ctx := t.Context()
	key := p + "lock"
	held, err := l.Obtain(ctx, key, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Release(context.WithoutCancel(ctx)) }()

	t.Run("LimitRetry", func(t *testing.T) {
		_, err := l.Obtain(ctx, key, time.Minute, &lock.Options{Retry: lock.LimitRetry(lock.LinearBackoff(time.Millisecond), 3)})
		if !errors.Is(err, lock.ErrNotObtained) || !strings.Contains(err.Error(), "after 4 attempts") {
			t.Fatalf("Obtain = %v; want ErrNotObtained after 4 attempts", err)
		}
	})
	t.Run("Wait", func(t *testing.T) {
		_, err := l.Obtain(ctx, key, time.Minute, &lock.Options{Wait: 50 * time.Millisecond})
		if !errors.Is(err, lock.ErrNotObtained) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Obtain = %v; want ErrNotObtained, not the context's error", err)
		}
	})
	t.Run("ContextDeadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := l.Obtain(ctx, key, time.Minute, &lock.Options{Retry: lock.LinearBackoff(10 * time.Millisecond)})
		if !errors.Is(err, lock.ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Obtain = %v; want ErrNotObtained and DeadlineExceeded", err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		go cancel()
		_, err := l.Obtain(ctx, key, time.Minute, &lock.Options{Retry: lock.LinearBackoff(time.Millisecond)})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Obtain = %v; want context.Canceled", err)
		}
	})
}

func TestExponentialBackoff(t *testing.T) {
	t.Parallel()
	s := lock.ExponentialBackoff(10*time.Millisecond, 80*time.Millisecond)
	ms := time.Millisecond
	for n, upper := range map[int]time.Duration{1: 10 * ms, 2: 20 * ms, 3: 40 * ms, 4: 80 * ms, 5: 80 * ms, 60: 80 * ms} {
		for range 100 {
			d, ok := s(n)
			if !ok || d < upper/2 || d > upper {
				t.Fatalf("attempt %d: wait %v, %v; want in [%v, %v]", n, d, ok, upper/2, upper)
			}
		}
	}
}

// Do keeps the lock alive for a function that runs several TTLs long.
func TestDoRefreshes(t *testing.T) {
	t.Parallel()
	_, l, p := setup(t)
	ctx := t.Context()
	key := p + "lock"
	const ttl = 300 * time.Millisecond // refreshes every 100ms: room for a stalled -race run
	err := l.Do(ctx, key, ttl, nil, func(ctx context.Context, lk *lock.Lock) error {
		// Workload that outlives the TTL several times over.
		select {
		case <-time.After(4 * ttl):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if _, err := l.Obtain(ctx, key, ttl, nil); !errors.Is(err, lock.ErrNotObtained) {
			t.Errorf("Obtain while Do's function runs past the TTL = %v; want ErrNotObtained", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.Obtain(ctx, key, ttl, nil)
	if err != nil {
		t.Fatalf("Obtain after Do returned = %v; Do did not release", err)
	}
	_ = lk.Release(ctx)
}

// When another holder takes the lock, Do cancels its function's context
// with ErrLost, reports the loss, and leaves the new holder's lock alone.
func TestDoCancelsOnLoss(t *testing.T) {
	t.Parallel()
	rdb, l, p := setup(t)
	ctx := t.Context()
	key := p + "lock"
	var thief *lock.Lock
	err := l.Do(ctx, key, 150*time.Millisecond, nil, func(fctx context.Context, lk *lock.Lock) error {
		// Simulate the lock expiring under a paused holder and another
		// process taking it.
		if err := rdb.Del(ctx, key).Err(); err != nil {
			return err
		}
		var err error
		if thief, err = l.Obtain(ctx, key, time.Minute, nil); err != nil {
			return err
		}
		select {
		case <-fctx.Done():
			if cause := context.Cause(fctx); !errors.Is(cause, lock.ErrLost) {
				t.Errorf("cause = %v; want ErrLost", cause)
			}
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the function's context was not cancelled")
		}
	})
	if !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Do = %v; want ErrLost", err)
	}
	if thief == nil {
		t.Fatal("no thief")
	}
	if got := rdb.Get(ctx, key).Val(); got != thief.Token() {
		t.Fatal("Do released the new holder's lock")
	}
}

func TestDoReturnsFunctionError(t *testing.T) {
	t.Parallel()
	_, l, p := setup(t)
	ctx := t.Context()
	key := p + "lock"
	boom := errors.New("boom")
	if err := l.Do(ctx, key, time.Minute, nil, func(context.Context, *lock.Lock) error { return boom }); !errors.Is(err, boom) || errors.Is(err, lock.ErrLost) {
		t.Fatalf("Do = %v; want boom alone", err)
	}
	lk, err := l.Obtain(ctx, key, time.Minute, nil)
	if err != nil {
		t.Fatalf("Obtain after a failed Do = %v; the lock was not released", err)
	}
	_ = lk.Release(ctx)
	held, _ := l.Obtain(ctx, key, time.Minute, nil)
	defer func() { _ = held.Release(context.WithoutCancel(ctx)) }()
	called := false
	err = l.Do(ctx, key, time.Minute, nil, func(context.Context, *lock.Lock) error { called = true; return nil })
	if !errors.Is(err, lock.ErrNotObtained) || called {
		t.Fatalf("Do on a held lock = %v, ran %v; want ErrNotObtained without running", err, called)
	}
}

// On Redis Cluster the grant script touches the lock and its fence counter,
// and SetFenced the resource and its last-seen fence: each pair must hash to
// one slot, whatever shape of key the caller chose.
func TestCluster(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := t.Context()
	l := lock.New(cc)
	p := testredis.Prefix(t)
	for _, key := range []string{p + "report:7", p + "account:{42}", "}" + p} {
		lk, err := l.Obtain(ctx, key, time.Minute, nil)
		if err != nil {
			t.Fatalf("Obtain(%q) = %v", key, err)
		}
		if err := lk.Refresh(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		resource := keys.Sibling(key, "data")
		if err := lock.SetFenced(ctx, cc, resource, "v", lk.Fence()); err != nil {
			t.Fatalf("SetFenced(%q) = %v", resource, err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err := l.Do(ctx, p+"job", time.Second, nil, func(context.Context, *lock.Lock) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkObtainRelease(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	l := lock.New(rdb)
	key := testredis.Prefix(b) + "lock"
	ctx := b.Context()
	for b.Loop() {
		lk, err := l.Obtain(ctx, key, time.Minute, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// Parallel holders of distinct locks: the throughput of the scripts.
func BenchmarkObtainReleaseParallel(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	l := lock.New(rdb)
	p := testredis.Prefix(b)
	ctx := b.Context()
	var id atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		key := p + "lock:" + string(rune('a'+id.Add(1)))
		for pb.Next() {
			lk, err := l.Obtain(ctx, key, time.Minute, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if err := lk.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSetFenced(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	key := testredis.Prefix(b) + "resource"
	ctx := b.Context()
	for b.Loop() {
		if err := lock.SetFenced(ctx, rdb, key, "v", 1); err != nil {
			b.Fatal(err)
		}
	}
}

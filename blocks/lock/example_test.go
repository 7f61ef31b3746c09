package lock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/lock"
	"github.com/streamworker/streamworker/internal/testredis"
)

// Obtain takes a lock; each holding's fencing token is greater than every
// earlier one's. Release and Refresh fail with ErrNotHeld, and change
// nothing, once the lock is no longer the caller's.
func ExampleLocker_Obtain() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	ctx := context.Background()
	locker := lock.New(rdb)
	key := "example:" + testredis.RandomID() + ":lock:report"

	lk, err := locker.Obtain(ctx, key, 10*time.Second, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("fence:", lk.Fence())

	_, err = locker.Obtain(ctx, key, 10*time.Second, &lock.Options{Wait: 30 * time.Millisecond})
	fmt.Println("second holder:", errors.Is(err, lock.ErrNotObtained))

	fmt.Println("release:", lk.Release(ctx))
	fmt.Println("release again:", errors.Is(lk.Release(ctx), lock.ErrNotHeld))

	lk, _ = locker.Obtain(ctx, key, 10*time.Second, nil)
	fmt.Println("next fence:", lk.Fence())
	_ = lk.Release(ctx)
	// Output:
	// fence: 1
	// second holder: true
	// release: <nil>
	// release again: true
	// next fence: 2
}

// Do runs a function under the lock and keeps the lock alive while it runs.
// The function writes to the protected resource with its fencing token, so
// a write from a holder that lost the lock is refused.
func ExampleLocker_Do() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	ctx := context.Background()
	locker := lock.New(rdb)
	p := "example:" + testredis.RandomID() + ":"

	var fence int64
	err := locker.Do(ctx, p+"lock:nightly", 5*time.Second, nil, func(ctx context.Context, lk *lock.Lock) error {
		fence = lk.Fence()
		return lock.SetFenced(ctx, rdb, p+"report:nightly", "built by holder 1", lk.Fence())
	})
	fmt.Println("first run:", err)
	err = locker.Do(ctx, p+"lock:nightly", 5*time.Second, nil, func(ctx context.Context, lk *lock.Lock) error {
		return lock.SetFenced(ctx, rdb, p+"report:nightly", "built by holder 2", lk.Fence())
	})
	fmt.Println("second run:", err)

	// The first holder, paused all along, wakes up and writes.
	err = lock.SetFenced(ctx, rdb, p+"report:nightly", "stale", fence)
	fmt.Println("stale write refused:", errors.Is(err, lock.ErrStaleFence))
	fmt.Println(rdb.Get(ctx, p+"report:nightly").Val())
	// Output:
	// first run: <nil>
	// second run: <nil>
	// stale write refused: true
	// built by holder 2
}

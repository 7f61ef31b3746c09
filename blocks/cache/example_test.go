package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/cache"
	"github.com/streamworker/streamworker/internal/testredis"
)

// redisAddr is the address of the Redis the Examples use: the package's
// shared test server. In your code it is your Redis's address.
func redisAddr() string { return testredis.MustShared().Addr }

// Fetch is cache-aside: a hit costs one GET; concurrent misses of one key
// share one load, here and in every other process using the same Redis.
func ExampleCache_Fetch() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	c := cache.New(rdb, nil)
	defer c.Close()
	ctx := context.Background()
	key := "example:" + testredis.RandomID() + ":user:42"

	var loads atomic.Int32
	loadUser := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		time.Sleep(50 * time.Millisecond) // a slow database query
		return []byte(`{"id":42,"name":"Ann"}`), nil
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := c.Fetch(ctx, key, 10*time.Minute, loadUser); err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait()
	v, _ := c.Fetch(ctx, key, 10*time.Minute, loadUser)
	fmt.Println(string(v))
	fmt.Println("loads:", loads.Load())
	// Output:
	// {"id":42,"name":"Ann"}
	// loads: 1
}

// A load returns cache.ErrNotFound for a row that does not exist. That
// answer is cached too, for NegativeTTL, so a key nobody has does not reach
// the database on every read.
func ExampleCache_Fetch_notFound() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	c := cache.New(rdb, &cache.Options{NegativeTTL: 30 * time.Second})
	defer c.Close()
	ctx := context.Background()
	key := "example:" + testredis.RandomID() + ":user:404"

	loads := 0
	loadUser := func(ctx context.Context) ([]byte, error) {
		loads++
		return nil, fmt.Errorf("user 404: %w", cache.ErrNotFound)
	}
	for range 3 {
		_, err := c.Fetch(ctx, key, 10*time.Minute, loadUser)
		fmt.Println(errors.Is(err, cache.ErrNotFound))
	}
	fmt.Println("loads:", loads)
	// Output:
	// true
	// true
	// true
	// loads: 1
}

// Write changes the source of truth, then invalidates the cached copy. A
// failed invalidation is logged, not returned: the write happened, and the
// stale copy expires with its TTL.
func ExampleCache_Write() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	c := cache.New(rdb, nil)
	defer c.Close()
	ctx := context.Background()
	key := "example:" + testredis.RandomID() + ":user:42:name"

	name := "Ann" // stands for a database row
	load := func(ctx context.Context) ([]byte, error) { return []byte(name), nil }

	v, _ := c.Fetch(ctx, key, time.Hour, load)
	fmt.Println(string(v))
	err := c.Write(ctx, func(ctx context.Context) error {
		name = "Anna" // UPDATE users SET name = 'Anna' WHERE id = 42
		return nil
	}, key)
	fmt.Println(err)
	v, _ = c.Fetch(ctx, key, time.Hour, load)
	fmt.Println(string(v))
	// Output:
	// Ann
	// <nil>
	// Anna
}

type product struct {
	SKU   string `json:"sku"`
	Price int    `json:"price_cents"`
	// Big content is stored elsewhere; the cache holds its reference.
	ImageKey string `json:"image_key"`
}

// Typed caches Go values through a codec, JSON by default.
func ExampleTyped() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	c := cache.New(rdb, nil)
	defer c.Close()
	products := cache.NewTyped[product](c, nil)
	ctx := context.Background()
	key := "example:" + testredis.RandomID() + ":product:A-1"

	p, err := products.Fetch(ctx, key, time.Hour, func(ctx context.Context) (product, error) {
		return product{SKU: "A-1", Price: 1999, ImageKey: "s3://images/A-1.png"}, nil
	})
	fmt.Printf("%+v %v\n", p, err)
	p, err = products.Get(ctx, key)
	fmt.Println(p.Price, err)
	// Output:
	// {SKU:A-1 Price:1999 ImageKey:s3://images/A-1.png} <nil>
	// 1999 <nil>
}

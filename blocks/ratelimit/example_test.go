package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/internal/testredis"
)

// A sliding window allows at most Rate requests in any window of Period. A
// rejected request writes nothing and says how long to wait.
func ExampleSlidingWindow() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	limiter := ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: testredis.RandomID() + ":"})
	ctx := context.Background()

	for range 4 {
		res, err := limiter.Allow(ctx, "user:42", ratelimit.PerMinute(3))
		if err != nil {
			panic(err)
		}
		fmt.Printf("allowed=%t remaining=%d wait=%t\n", res.Allowed, res.Remaining, res.RetryAfter > 0)
	}
	// Output:
	// allowed=true remaining=2 wait=false
	// allowed=true remaining=1 wait=false
	// allowed=true remaining=0 wait=false
	// allowed=false remaining=0 wait=true
}

// GCRA lets Burst requests through at once, then one every Period/Rate.
func ExampleGCRA() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	limiter := ratelimit.NewGCRA(rdb, &ratelimit.Options{Prefix: testredis.RandomID() + ":"})
	ctx := context.Background()

	limit := ratelimit.PerSecond(10) // burst 10, then one every 100ms
	res, _ := limiter.AllowN(ctx, "tenant:7", limit, 10)
	fmt.Println("burst of 10:", res.Allowed, "remaining", res.Remaining)

	res, _ = limiter.Allow(ctx, "tenant:7", limit)
	fmt.Println("11th:", res.Allowed, "retry within 100ms:", res.RetryAfter > 0 && res.RetryAfter <= limit.Period/10)
	// Output:
	// burst of 10: true remaining 0
	// 11th: false retry within 100ms: true
}

package ratelimitmw_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/handlers/ratelimitmw"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/worker"
)

// Two emails a minute per recipient domain: the third message is not
// failed but delayed until the limit has room, at the same attempt. Under
// worker.Run it waits in the worker (within WORKER_RETRY_IN_PLACE_MAX) or
// as a copy in the stream's :delayed set.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	limiter := ratelimit.NewSlidingWindow(rdb, &ratelimit.Options{Prefix: testredis.RandomID() + ":"})

	mux := worker.NewMux()
	mux.Use(ratelimitmw.New(limiter, ratelimit.PerMinute(2), &ratelimitmw.Options{
		Key: func(m *worker.Message) string { return "email:" + m.Metadata["domain"] },
	}))
	mux.HandleFunc("email.send", func(ctx context.Context, m *worker.Message) error {
		fmt.Println("sending", string(m.Data))
		return nil
	})

	ctx := context.Background()
	for _, to := range []string{"ann@example.com", "bo@example.com", "cy@example.com"} {
		err := mux.HandleMessage(ctx, &worker.Message{
			Type: "email.send", Data: []byte(to), Attempt: 1, Metadata: map[string]string{"domain": "example.com"},
		})
		var delay *worker.DelayError
		if errors.As(err, &delay) {
			fmt.Printf("%s delayed (%t), not failed (permanent: %t)\n", to, delay.After > 50*time.Second, worker.IsPermanent(err))
		}
	}
	// Output:
	// sending ann@example.com
	// sending bo@example.com
	// cy@example.com delayed (true), not failed (permanent: false)
}

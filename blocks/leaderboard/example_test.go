package leaderboard_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/leaderboard"
	"github.com/streamworker/streamworker/internal/testredis"
)

func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx := context.Background()
	board := leaderboard.New(rdb, testredis.RandomID()+":leaderboard:global")

	_ = board.Set(ctx, "carol", 300)
	_ = board.Set(ctx, "bob", 250)
	_ = board.Set(ctx, "alice", 250) // ties rank by name: alice above bob
	_ = board.Set(ctx, "dave", 100)
	score, _ := board.Incr(ctx, "dave", 200) // dave climbs to 300

	fmt.Println("dave now has", score)
	top, _ := board.Top(ctx, 3)
	for _, e := range top {
		fmt.Printf("#%d %s %.0f\n", e.Rank, e.Member, e.Score)
	}
	me, _ := board.Rank(ctx, "bob")
	fmt.Printf("bob: #%d with %.0f\n", me.Rank, me.Score)
	near, _ := board.Around(ctx, "alice", 1)
	fmt.Println("around alice:", near)
	// Output:
	// dave now has 300
	// #1 carol 300
	// #2 dave 300
	// #3 alice 250
	// bob: #4 with 250
	// around alice: [{2 dave 300} {3 alice 250} {4 bob 250}]
}

// A periodic board lives under a key named for its period and expires a
// while after the period ends, with no clean-up job.
func ExampleNewPeriodic() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()

	day := time.Date(2026, 11, 25, 18, 30, 0, 0, time.UTC)
	daily := leaderboard.NewPeriodic(rdb, "leaderboard", leaderboard.Daily, day, 7*24*time.Hour)
	weekly := leaderboard.NewPeriodic(rdb, "leaderboard", leaderboard.Weekly, day, 30*24*time.Hour)
	fmt.Println(daily.Key(), "expires", daily.ExpireAt().Format(time.DateOnly))
	fmt.Println(weekly.Key(), "expires", weekly.ExpireAt().Format(time.DateOnly))
	// Output:
	// leaderboard:daily:2026-11-25 expires 2026-12-03
	// leaderboard:weekly:2026-W48 expires 2026-12-30
}

// A score for a period whose board has gone (an event replayed late) is
// refused with ErrExpired and written nowhere, so the caller can
// dead-letter or count it instead of reporting a success that vanished.
func ExampleErrExpired() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx := context.Background()

	tenDaysAgo := time.Now().AddDate(0, 0, -10)
	daily := leaderboard.NewPeriodic(rdb, testredis.RandomID()+":leaderboard", leaderboard.Daily, tenDaysAgo, 7*24*time.Hour)
	_, err := daily.Incr(ctx, "alice", 10)
	fmt.Println("expired:", errors.Is(err, leaderboard.ErrExpired))
	n, _ := daily.Len(ctx)
	fmt.Println("members on the board:", n)
	// Output:
	// expired: true
	// members on the board: 0
}

package leaderboard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/redis/go-redis/v9"
)

// BenchmarkBoard measures the hot operations on a board of 100,000
// members; each is one round trip.
func BenchmarkBoard(b *testing.B) {
	board, rdb := newBoard(b)
	ctx := context.Background()
	const members = 100_000
	for i := 0; i < members; i += 10_000 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			zs := make([]redis.Z, 0, 10_000)
			for j := i; j < i+10_000; j++ {
				zs = append(zs, redis.Z{Score: -float64(rand.IntN(1_000_000)), Member: fmt.Sprintf("player:%d", j)})
			}
			p.ZAdd(ctx, board.Key(), zs...)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	member := func() string { return fmt.Sprintf("player:%d", rand.IntN(members)) }

	b.Run("Rank", func(b *testing.B) {
		for b.Loop() {
			if _, err := board.Rank(ctx, member()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Rank/Parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := board.Rank(ctx, member()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Incr", func(b *testing.B) {
		for b.Loop() {
			if _, err := board.Incr(ctx, member(), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Top10", func(b *testing.B) {
		for b.Loop() {
			if _, err := board.Top(ctx, 10); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Around5", func(b *testing.B) {
		for b.Loop() {
			if _, err := board.Around(ctx, member(), 5); err != nil {
				b.Fatal(err)
			}
		}
	})
}

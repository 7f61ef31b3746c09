package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/internal/testredis"
)

// BenchmarkAllow measures one check (one script call, one round trip) for
// each algorithm, on one key, allowed and rejected, sequential and from
// parallel callers.
func BenchmarkAllow(b *testing.B) {
	rdb := testredis.Shared(b).Client(b)
	ctx := context.Background()
	// Allowed: a limit the benchmark never reaches (a million a second); the
	// sliding log holds the last second of calls, as a busy real key does.
	allowed := ratelimit.PerSecond(1_000_000)
	rejected := ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 1}
	for _, lt := range limiters {
		for _, c := range []struct {
			name  string
			limit ratelimit.Limit
		}{{"Allowed", allowed}, {"Rejected", rejected}} {
			l := lt.new(rdb, testredis.Prefix(b))
			b.Run(lt.name+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := l.AllowN(ctx, "k", c.limit, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
			l = lt.new(rdb, testredis.Prefix(b))
			b.Run(lt.name+"/"+c.name+"/Parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := l.AllowN(ctx, "k", c.limit, 1); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

package ratelimit_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/ratelimit"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestOnCluster(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := context.Background()
	for _, lt := range limiters {
		l := lt.new(cc, "rl:")
		for _, key := range []string{"a", "b", "{tenant:7}:api"} {
			allowed := 0
			for range 5 {
				res, err := l.AllowN(ctx, key, ratelimit.PerHour(3), 1)
				if err != nil {
					t.Fatalf("%s %q: %v", lt.name, key, err)
				}
				if res.Allowed {
					allowed++
				}
			}
			if allowed != 3 {
				t.Errorf("%s %q: allowed %d of 5 against 3 an hour, want 3", lt.name, key, allowed)
			}
		}
	}
}

// startCluster is a one-node Redis Cluster for the cluster-mode tests.
func startCluster(t *testing.T) *redis.ClusterClient { _, cc := testredis.OneNodeCluster(t); return cc }

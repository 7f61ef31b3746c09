package ratelimit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/handlers/ratelimit"

	"github.com/streamworker/streamworker/internal/testredis"
)

// startCluster starts a one-node Redis Cluster owning all 16384 slots, to
// run the package through a ClusterClient: its scripts and transactions
// must name their keys so that Cluster routes them.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	srv := testredis.Start(t, "--cluster-enabled", "yes")
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok: %s", admin.ClusterInfo(ctx).Val())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

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

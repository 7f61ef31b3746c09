package leaderboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/leaderboard"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestOnCluster(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := context.Background()
	b := leaderboard.NewPeriodic(cc, "leaderboard", leaderboard.Daily, time.Now().UTC(), time.Hour)
	for m, s := range map[string]float64{"alice": 3, "bob": 2, "carol": 1} {
		if _, err := b.Incr(ctx, m, s); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := b.Rank(ctx, "bob"); err != nil || e.Rank != 2 || e.Score != 2 {
		t.Errorf("Rank(bob) = %+v, %v; want #2 with 2", e, err)
	}
	if near, err := b.Around(ctx, "bob", 1); err != nil || len(near) != 3 {
		t.Errorf("Around(bob, 1) = %v, %v; want 3 entries", near, err)
	}
	if top, err := b.Top(ctx, 1); err != nil || len(top) != 1 || top[0].Member != "alice" {
		t.Errorf("Top(1) = %v, %v; want alice", top, err)
	}
	if ttl := cc.PTTL(ctx, b.Key()).Val(); ttl <= 0 {
		t.Errorf("PTTL = %v, want an expiry", ttl)
	}
}

// startCluster is a one-node Redis Cluster for the cluster-mode tests.
func startCluster(t *testing.T) *redis.ClusterClient { _, cc := testredis.OneNodeCluster(t); return cc }

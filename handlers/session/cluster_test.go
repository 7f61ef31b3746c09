package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/handlers/session"

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
	s := session.New(cc, &session.Options{IdleTimeout: time.Minute})
	ctx := context.Background()
	id := session.NewID()
	if err := s.Save(ctx, id, map[string]any{"user_id": 42}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, id, map[string]any{"role": "admin"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, id); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, id, "role"); err != nil || v != "admin" {
		t.Errorf(`Get("role") = %q, %v; want "admin"`, v, err)
	}
	if all, err := s.GetAll(ctx, id); err != nil || len(all) != 2 {
		t.Errorf("GetAll = %v, %v; want 2 fields", all, err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, id, map[string]any{"role": "x"}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Update after Delete = %v, want ErrNotFound", err)
	}
}

package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/session"

	"github.com/streamworker/streamworker/internal/testredis"
)

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

// startCluster is a one-node Redis Cluster for the cluster-mode tests.
func startCluster(t *testing.T) *redis.ClusterClient { _, cc := testredis.OneNodeCluster(t); return cc }

package keys_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// startCluster is a one-node Redis Cluster for the cluster-mode tests.
func startCluster(t *testing.T) *redis.ClusterClient { _, cc := testredis.OneNodeCluster(t); return cc }

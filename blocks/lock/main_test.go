package lock_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// redisAddr is the address of the Redis the Examples use: the package's
// shared test server. In your code it is your Redis's address.
func redisAddr() string { return testredis.MustShared().Addr }

// startCluster is a one-node Redis Cluster for the cluster-mode tests.
func startCluster(t *testing.T) *redis.ClusterClient { _, cc := testredis.OneNodeCluster(t); return cc }

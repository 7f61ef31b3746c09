package lock_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// startCluster starts a one-node Redis Cluster that owns every slot. The
// server refuses a command whose keys span slots (CROSSSLOT) exactly as a
// real cluster does, and answers CLUSTER KEYSLOT, which a plain server does
// not.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("a cluster node needs redis-server on PATH")
	}
	srv := testredis.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-announce-ip", "127.0.0.1")
	c := srv.Client(t)
	ctx := t.Context()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assigning slots: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not become ok: %v %s", err, info)
		}
		time.Sleep(10 * time.Millisecond) // polling the cluster state, with a deadline
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	if err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatalf("cluster client: %v", err)
	}
	return cc
}

// exampleTB lets Examples, which take no *testing.T, get the package's
// shared server from testredis; it fails by panicking.
type exampleTB struct{ testing.TB }

func (exampleTB) Helper() {}

func (exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// redisAddr is the address of the Redis the Examples use: the package's
// shared test server. In your code it is your Redis's address.
func redisAddr() string { return testredis.Shared(exampleTB{}).Addr }

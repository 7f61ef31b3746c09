package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of redis-server processes on loopback
// ports: three primaries, each with one replica.
type Cluster struct {
	// Nodes are every node, primaries first as created.
	Nodes []*Server
}

// StartCluster starts a 3-primary, 3-replica cluster (redis-cli --cluster
// create) and waits until every node reports cluster_state:ok. It is stopped
// when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t)
}

// StartClusterWith is StartCluster with more redis-server arguments for
// every node, e.g. "--cluster-require-full-coverage", "no".
func StartClusterWith(t testing.TB, args ...string) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is needed to create a cluster (apt-get install redis-tools)")
	}
	c := &Cluster{}
	for i := range 6 {
		dir := filepath.Join(t.TempDir(), "node"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := startWith(dir, append([]string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
		}, args...), clusterPortFree)
		if err != nil {
			t.Fatalf("starting cluster node %d: %v", i, err)
		}
		t.Cleanup(s.stop)
		c.Nodes = append(c.Nodes, s)
	}
	create := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		create = append(create, n.Addr)
	}
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t)
	return c
}

// Addrs are the nodes' host:port, the seed list for a cluster client.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a cluster client closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitHealthy waits until every live node reports cluster_state:ok and
// every slot is served by a live primary.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if last = c.unhealthy(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a converging cluster, with a deadline
	}
	t.Fatalf("cluster never became healthy: %s", last)
}

func (c *Cluster) unhealthy() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.alive() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = cl.ClusterSlots(ctx).Result() //nolint:staticcheck // the slot map as a client sees it; CLUSTER SHARDS says the same at more length
		}
		_ = cl.Close()
		if err != nil {
			return n.Addr + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + " reports cluster_state not ok"
		}
		covered := 0
		for _, s := range slots {
			if len(s.Nodes) == 0 || !c.nodeAlive(s.Nodes[0].Addr) {
				return fmt.Sprintf("%s: slots %d-%d served by a dead primary", n.Addr, s.Start, s.End)
			}
			covered += s.End - s.Start + 1
		}
		if covered != 16384 {
			return fmt.Sprintf("%s: %d of 16384 slots covered", n.Addr, covered)
		}
	}
	return ""
}

func (c *Cluster) nodeAlive(addr string) bool {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n.alive()
		}
	}
	return false
}

// PrimaryFor returns the node serving key's slot now.
func (c *Cluster) PrimaryFor(t testing.TB, key string) *Server {
	t.Helper()
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := cc.ClusterSlots(ctx).Result() //nolint:staticcheck // see unhealthy
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			for _, n := range c.Nodes {
				if n.Addr == s.Nodes[0].Addr {
					return n
				}
			}
		}
	}
	t.Fatalf("no primary serves slot %d of %q", slot, key)
	return nil
}

// clusterPortFree reports whether port and its cluster bus port (+10000)
// are both free.
func clusterPortFree(port int) bool {
	if port+10000 > 65535 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// Sentinel is a primary with one replica watched by three Sentinels (quorum
// two), all redis-server processes on loopback ports.
type Sentinel struct {
	// Master is the name the Sentinels monitor.
	Master    string
	Primary   *Server
	Replica   *Server
	Sentinels []*Server
}

// StartSentinel starts the set-up and waits until the Sentinels know the
// replica. It is stopped when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	st := &Sentinel{Master: "mymaster"}
	st.Primary = Start(t)
	_, pport, _ := net.SplitHostPort(st.Primary.Addr)
	st.Replica = Start(t, "--replicaof", "127.0.0.1", pport)
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), "sentinel"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			st.Master, pport, st.Master, st.Master, st.Master)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := startWith(dir, []string{conf, "--sentinel"}, nil)
		if err != nil {
			t.Fatalf("starting sentinel %d: %v", i, err)
		}
		t.Cleanup(s.stop)
		st.Sentinels = append(st.Sentinels, s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st.replicasKnown() {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinels never saw the replica")
		}
		time.Sleep(50 * time.Millisecond) // polling sentinels converging, with a deadline
	}
}

// SentinelAddrs are the Sentinels' host:port.
func (st *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(st.Sentinels))
	for i, s := range st.Sentinels {
		out[i] = s.Addr
	}
	return out
}

func (st *Sentinel) replicasKnown() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range st.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		reps, err := sc.Replicas(ctx, st.Master).Result()
		_ = sc.Close()
		if err != nil || len(reps) == 0 {
			return false
		}
	}
	return true
}

// OneNodeCluster starts one redis-server in cluster mode that owns every
// slot: quick to start, and it refuses a command whose keys span slots
// (CROSSSLOT) exactly as a real cluster does. It returns the server and a
// cluster client, both stopped when the test ends.
func OneNodeCluster(t testing.TB) (*Server, *redis.ClusterClient) {
	t.Helper()
	srv := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-announce-ip", "127.0.0.1")
	c := srv.Client(t)
	ctx := context.Background()
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
	return srv, cc
}

// MoveSlot migrates the slot of key, with every key in it, from the primary
// serving it to another primary, the way redis-cli --cluster reshard does:
// the slot is marked IMPORTING and MIGRATING, its keys are moved with
// MIGRATE in batches, then every primary is told the slot's new node. While
// it runs, clients get ASK redirects (and TRYAGAIN for a script whose keys
// are split between the two nodes); after it, MOVED. It returns the two
// primaries.
func (c *Cluster) MoveSlot(t testing.TB, key string) (from, to *Server) {
	t.Helper()
	ctx := context.Background()
	from = c.PrimaryFor(t, key)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := cc.ClusterSlots(ctx).Result() //nolint:staticcheck // see unhealthy
	if err != nil {
		t.Fatal(err)
	}
	var primaries []*Server
	for _, s := range slots {
		for _, n := range c.Nodes {
			if n.Addr == s.Nodes[0].Addr && !containsServer(primaries, n) {
				primaries = append(primaries, n)
			}
		}
	}
	for _, p := range primaries {
		if p != from {
			to = p
			break
		}
	}
	if to == nil {
		t.Fatal("no other primary to move the slot to")
	}
	node := func(s *Server) *redis.Client { return redis.NewClient(&redis.Options{Addr: s.Addr}) }
	src, dst := node(from), node(to)
	defer src.Close()
	defer dst.Close()
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	must := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", args, c.Options().Addr, err)
		}
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	host, port, _ := net.SplitHostPort(to.Addr)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src, args...)
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	must(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for _, p := range primaries {
		if p != from && p != to {
			cl := node(p)
			must(cl, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
			_ = cl.Close()
		}
	}
	c.WaitHealthy(t)
	return from, to
}

func containsServer(list []*Server, s *Server) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

var (
	clusterMsgsFlag       = flag.Int("cluster-msgs", 200_000, "messages per target and operation of BenchmarkConsumeCluster")
	clusterWorkersFlag    = flag.Int("cluster-workers", 3, "runtimes (one per simulated worker process) of BenchmarkConsumeCluster")
	clusterPartitionsFlag = flag.Int("cluster-partitions", 16, "WORKER_PARTITIONS of BenchmarkConsumeCluster")
)

// BenchmarkConsumeCluster consumes the same partitioned stream (16
// partitions, 1,000 keys, a no-op handler) with the same number of runtimes
// against one redis-server and against a Redis Cluster of three primaries,
// one after the other in one run, and reports both throughputs and their
// ratio. Each runtime has a client of its own, as a worker process would.
// The messages are loaded before the runtimes start (not timed); the time
// runs from their start until every message is acknowledged, the first
// balancing of the partitions among them included (a 1s partition lease
// keeps that short). redis-cpu-us/msg sums the CPU of every redis-server of
// the target.
//
//	go test -run '^$' -bench ConsumeCluster -benchtime 1x -cluster-msgs 200000
func BenchmarkConsumeCluster(b *testing.B) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server is not on PATH")
	}
	single := startBenchRedis(b, false)
	nodes := startBenchCluster(b)
	n := *clusterMsgsFlag
	var singleCost, clusterCost clusterRun
	b.ResetTimer()
	for range b.N {
		singleCost = singleCost.add(runPartitioned(b, n, []*benchRedis{single}, func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: single.addr, Protocol: *protocolFlag})
		}))
		clusterCost = clusterCost.add(runPartitioned(b, n, nodes, func() redis.UniversalClient {
			addrs := make([]string, len(nodes))
			for i, nd := range nodes {
				addrs[i] = nd.addr
			}
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: *protocolFlag})
		}))
	}
	b.StopTimer()
	total := float64(n * b.N)
	s, c := total/singleCost.wall.Seconds(), total/clusterCost.wall.Seconds()
	b.ReportMetric(s, "single-msgs/s")
	b.ReportMetric(c, "cluster-msgs/s")
	b.ReportMetric(c/s, "cluster/single")
	b.ReportMetric(float64(singleCost.redisCPU.Microseconds())/total, "single-redis-cpu-us/msg")
	b.ReportMetric(float64(clusterCost.redisCPU.Microseconds())/total, "cluster-redis-cpu-us/msg")
}

// clusterRun is what consuming cost on one target.
type clusterRun struct {
	wall, redisCPU time.Duration
}

func (r clusterRun) add(o clusterRun) clusterRun {
	return clusterRun{wall: r.wall + o.wall, redisCPU: r.redisCPU + o.redisCPU}
}

// runPartitioned loads n keyed messages into a fresh partitioned stream on
// the target, then times -cluster-workers runtimes consuming them all.
func runPartitioned(b *testing.B, n int, servers []*benchRedis, newClient func() redis.UniversalClient) clusterRun {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	parts := *clusterPartitionsFlag
	stream := "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	admin := newClient()
	defer admin.Close()
	pipe := admin.Pipeline()
	for i := range n {
		key := "k" + strconv.Itoa(i%1000)
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: wire.PartitionStream(stream, wire.PartitionFor(key, parts)),
			Values: []any{wire.FieldType, msgType, wire.FieldKey, key, wire.FieldData, payload},
		})
		if pipe.Len() == 1000 || i == n-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatalf("loading: %v", err)
			}
		}
	}

	cfg := config.Default()
	cfg.Streams = []string{stream}
	cfg.Partitions = parts
	cfg.PartitionLease = time.Second
	cfg.Block = 250 * time.Millisecond
	cfg.Group = "bench"
	cfg.Concurrency = *concurrencyFlag
	cfg.FetchCount = *fetchFlag
	cfg.HTTPAddr = "off"
	cfg.LogLevel = "warn"
	mux := worker.NewMux()
	mux.HandleFunc(msgType, func(context.Context, *worker.Message) error { return nil })

	cpu0 := redisCPU(servers)
	b.StartTimer()
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, *clusterWorkersFlag)
	for i := range *clusterWorkersFlag {
		c := cfg
		c.Consumer = "w" + strconv.Itoa(i)
		client := newClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer client.Close()
			errs <- worker.Run(runCtx, c, mux, worker.WithRedis(client),
				worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
		}()
	}
	err := waitConsumed(ctx, admin, stream, parts, n)
	wall := time.Since(start)
	b.StopTimer()
	cpu := redisCPU(servers) - cpu0
	stop()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err != nil {
		b.Fatal(err)
	}
	dpipe := admin.Pipeline()
	for _, s := range wire.PartitionStreams(stream, parts) {
		dpipe.Unlink(ctx, s)
	}
	_, _ = dpipe.Exec(ctx)
	b.StartTimer()
	return clusterRun{wall: wall, redisCPU: cpu}
}

// waitConsumed polls the group until all n messages are delivered and
// acknowledged in every partition.
func waitConsumed(ctx context.Context, c redis.UniversalClient, stream string, parts, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pipe := c.Pipeline()
		cmds := make([]*redis.XInfoGroupsCmd, parts)
		for i := range parts {
			cmds[i] = pipe.XInfoGroups(ctx, wire.PartitionStream(stream, i))
		}
		_, _ = pipe.Exec(ctx)
		var read, pending int64
		ready := 0
		for _, cmd := range cmds {
			gs, err := cmd.Result()
			if err != nil || len(gs) == 0 {
				continue // the group is not there yet
			}
			ready++
			read += gs[0].EntriesRead
			pending += gs[0].Pending
		}
		if ready == parts && read >= int64(n) && pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 5m: %d of %d read, %d pending", read, n, pending)
		}
		time.Sleep(5 * time.Millisecond) // polling the group, with a deadline
	}
}

// benchRedis is one redis-server process of this file's own.
type benchRedis struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startBenchRedis starts a redis-server without persistence on a free
// loopback port (one whose cluster bus port is free too), in cluster mode
// or not, killed when b ends.
func startBenchRedis(b *testing.B, cluster bool) *benchRedis {
	b.Helper()
	dir := b.TempDir()
	for range 20 {
		port, err := freeClusterPort()
		if err != nil {
			b.Fatal(err)
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"), "--daemonize", "no",
		}
		if cluster {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(port)+".conf")
		}
		cmd := exec.Command("redis-server", args...)
		if err := cmd.Start(); err != nil {
			b.Fatalf("redis-server: %v", err)
		}
		r := &benchRedis{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(r.done) }()
		if err := r.waitReady(); err != nil {
			_ = cmd.Process.Kill()
			<-r.done
			continue // the port was taken meanwhile
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); <-r.done })
		return r
	}
	b.Fatal("could not start redis-server")
	return nil
}

func (r *benchRedis) waitReady() error {
	c := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-r.done:
			return errors.New("exited")
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond) // polling a starting process, with a deadline
	}
	return errors.New("not answering")
}

// startBenchCluster starts three primaries without replicas, a third of
// the slots each, and waits until every node sees the cluster ok.
func startBenchCluster(b *testing.B) []*benchRedis {
	b.Helper()
	ctx := context.Background()
	nodes := make([]*benchRedis, 3)
	clients := make([]*redis.Client, 3)
	for i := range nodes {
		nodes[i] = startBenchRedis(b, true)
		clients[i] = redis.NewClient(&redis.Options{Addr: nodes[i].addr})
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for i, c := range clients {
		if i > 0 {
			host, port, _ := net.SplitHostPort(nodes[i].addr)
			if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
				b.Fatalf("CLUSTER MEET: %v", err)
			}
		}
		lo, hi := i*16384/3, (i+1)*16384/3-1
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			b.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ok := true
		for _, c := range clients {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ok = false
			}
		}
		if ok {
			return nodes
		}
		if time.Now().After(deadline) {
			b.Fatal("the cluster never became ok")
		}
		time.Sleep(20 * time.Millisecond) // polling a converging cluster, with a deadline
	}
}

// freeClusterPort returns a loopback port free a moment ago, with its
// cluster bus port (+10000) free too.
func freeClusterPort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		_ = bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair")
}

// redisCPU sums the user and system CPU time of the servers' processes so
// far (Linux /proc; 0 elsewhere).
func redisCPU(servers []*benchRedis) time.Duration {
	var total time.Duration
	for _, s := range servers {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (in parentheses): utime and stime
		// are the 12th and 13th.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / 100 // clock ticks: USER_HZ is 100 on Linux
	}
	return total
}

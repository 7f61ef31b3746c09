package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/streamworker/streamworker/bench/internal/redisserver"
	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/bench/internal/usage"
)

var (
	msgsFlag           = flag.Int("msgs", 200_000, "messages per benchmark operation (ProduceSingle uses a quarter)")
	concurrencyFlag    = flag.Int("concurrency", 64, "WORKER_CONCURRENCY of BenchmarkConsumeRuntime")
	fetchFlag          = flag.Int("fetch", 256, "WORKER_FETCH_COUNT of BenchmarkConsumeRuntime")
	readCountFlag      = flag.Int("read-count", 100, "XREADGROUP COUNT of BenchmarkConsumeBareLoop")
	protocolFlag       = flag.Int("protocol", 0, "RESP version of every client under test, 2 or 3 (0: go-redis's default, 3)")
	partitionsFlag     = flag.Int("partitions", 0, "WORKER_PARTITIONS of BenchmarkConsumeRuntime (the order phase's workload, with -keys)")
	keysFlag           = flag.Int("keys", 0, "partition keys of BenchmarkConsumeRuntime's events, each key's order checked (with -partitions)")
	failEveryFlag      = flag.Int("fail-every", 0, "BenchmarkConsumeRuntime: every Nth message fails its first attempt and is retried, in place at the defaults (the failures phase's workload; 0: none)")
	retryBaseFlag      = flag.Duration("retry-base", time.Millisecond, "WORKER_RETRY_BASE and WORKER_RETRY_MAX of BenchmarkConsumeRuntime, with -fail-every")
	delayedRetriesFlag = flag.Bool("delayed-retries", false, "BenchmarkConsumeRuntime, with -fail-every: every retry through S:delayed (WORKER_RETRY_IN_PLACE_MAX=0) instead of in place")
	promoteFlag        = flag.Duration("promote-interval", 50*time.Millisecond, "WORKER_PROMOTE_INTERVAL of BenchmarkConsumeRuntime, with -fail-every")
)

// One redis-server for the whole run, so that every benchmark's numbers are
// comparable. It starts on first use: plain `go test` without -bench and
// without the Redis tests needs none.
var (
	serverOnce sync.Once
	server     *redisserver.Server
	errServer  error // why the server could not start
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if server != nil {
		server.Stop()
	}
	if code == 0 {
		// Watermill's subscriber leaves its readers asleep for up to half a
		// second after Close (redisstream v1.4.5, subscriber.go:350); they
		// end by themselves. Anything else still running is ours.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sharedServer(tb testing.TB) *redisserver.Server {
	tb.Helper()
	serverOnce.Do(func() { server, errServer = redisserver.Start(tb.Context()) })
	if errServer != nil {
		tb.Fatalf("starting redis: %v", errServer)
	}
	return server
}

// clientURL is the URL the clients under test connect with.
func clientURL(s *redisserver.Server) string {
	if *protocolFlag != 0 {
		return s.URL() + "?protocol=" + strconv.Itoa(*protocolFlag)
	}
	return s.URL()
}

// newClient returns a plain client, for the harness and the bare loop.
func newClient(tb testing.TB, s *redisserver.Server) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: *protocolFlag})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// streamName returns a fresh stream key with its own hash tag.
func streamName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "bench:{" + hex.EncodeToString(b[:]) + "}"
}

// payload is the data field of every benchmark message: 100 bytes of JSON.
var payload = systems.Payload(100)

const msgType = systems.MsgType

// report adds the per-message metrics of n messages that cost c.
func report(b *testing.B, n int, c usage.Cost) {
	b.Helper()
	b.ReportMetric(float64(n)/c.Wall.Seconds(), "msgs/s")
	b.ReportMetric(float64(c.CPU.Microseconds())/float64(n), "cpu-us/msg")
	if c.RedisCPU >= 0 {
		b.ReportMetric(float64(c.RedisCPU.Microseconds())/float64(n), "redis-cpu-us/msg")
	}
	b.ReportMetric(float64(c.Mallocs)/float64(n), "allocs/msg")
	b.ReportMetric(float64(c.Bytes)/float64(n), "B/msg")
	if l := usage.LoadAverage(); l >= 0 {
		// Not a result: the machine's load when the run ended. On 2 cores a
		// value above ~2.5 means other work competed and the run is suspect.
		b.ReportMetric(l, "loadavg")
	}
}

// commandCalls returns the calls per command since the server started, from
// INFO commandstats, keyed by lower-case command name ("xreadgroup").
func commandCalls(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_xreadgroup:calls=123,usec=456,...
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		if v, err := strconv.ParseInt(n, 10, 64); err == nil {
			calls[name] = v
		}
	}
	return calls, nil
}

// reportCalls adds how many messages one call of each hot command moved, and
// how many Redis commands the harness did not send were spent per message.
func reportCalls(b *testing.B, n int, before, after map[string]int64) {
	b.Helper()
	var total int64
	for cmd, v := range after {
		d := v - before[cmd]
		switch cmd {
		case "xinfo|groups", "info": // the harness's own polling
			continue
		case "xreadgroup":
			if d > 0 {
				b.ReportMetric(float64(n)/float64(d), "msgs/read")
			}
		case "xack":
			if d > 0 {
				b.ReportMetric(float64(n)/float64(d), "msgs/xack")
			}
		}
		total += d
	}
	b.ReportMetric(float64(total)/float64(n), "redis-cmds/msg")
}

func cleanupKeys(ctx context.Context, c *redis.Client, stream string) {
	_ = c.Unlink(ctx, stream, stream+":delayed", stream+":dlq").Err()
}

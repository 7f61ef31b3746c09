// Command partitionworker is a worker binary for the partitioned-stream
// tests in test/: its handler records, for every message it runs, the
// message's key and sequence number in a Redis of its own (TEST_REPORT_URL),
// not in the stream Redis, so that the record survives whatever happens to
// the stream Redis (a primary killed mid-run) and the test can check each
// key's order:
//
//	seen:<stream>:<key>  list of the key's seq, one per run, in run order
//	handled:<stream>     counter of runs
//	at:<partition>       list of "<unix ms> <key> <seq>", one per run, per partition stream
//
// It connects to the stream Redis as the daemon does (REDIS_URL, or
// REDIS_CLUSTER_ADDRS for a Redis Cluster).
//
// A message's key is its key field; its data is its seq.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/worker"
)

func main() {
	report, err := redis.ParseURL(os.Getenv("TEST_REPORT_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "partitionworker: TEST_REPORT_URL:", err)
		os.Exit(2)
	}
	rc := redis.NewClient(report)
	mux := worker.NewMux()
	mux.HandleFunc("ordered", func(ctx context.Context, m *worker.Message) error {
		logical := strings.TrimSuffix(strings.TrimPrefix(m.Stream, "{"), "}")
		if i := strings.LastIndexByte(logical, ':'); i >= 0 {
			logical = logical[:i]
		}
		pipe := rc.Pipeline()
		pipe.RPush(ctx, "seen:"+logical+":"+m.Key, m.Data)
		pipe.Incr(ctx, "handled:"+logical)
		pipe.RPush(ctx, "at:"+m.Stream, fmt.Sprintf("%d %s %s", time.Now().UnixMilli(), m.Key, m.Data))
		_, err := pipe.Exec(ctx)
		return err
	})
	// worker.Main exits the process; the client goes with it.
	worker.Main(mux)
}

package test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
)

// TestRedisOutOfMemory fills a Redis with maxmemory-policy noeviction up to
// its maxmemory, so that it refuses every write that adds data (XADD, ZADD,
// SET, XGROUP CREATE and the handlers' own writes), and starts a worker
// then. The worker becomes ready (its group exists: it does not ask Redis
// to create it again), reads every entry and runs it; the handlers fail on
// the refused writes, and their retries are held back rather than added:
// the stream and the delayed set do not grow. /readyz and
// streamworker_redis_out_of_memory say why work is slowed. Once maxmemory
// is raised, everything is processed exactly as produced. Once on a plain
// Redis, once on the primary of a Sentinel set-up.
func TestRedisOutOfMemory(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/faultworker", "faultworker", raceEnabled)
	t.Run("Standalone", func(t *testing.T) {
		t.Parallel()
		srv := testredis.Start(t, "--maxmemory-policy", "noeviction")
		testOutOfMemory(t, bin, srv, srv.URL(), nil)
	})
	t.Run("Sentinel", func(t *testing.T) {
		t.Parallel()
		st := testredis.StartSentinel(t)
		if err := st.Primary.Client(t).ConfigSet(context.Background(), "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
		testOutOfMemory(t, bin, st.Primary, "redis:///0", map[string]string{
			"REDIS_SENTINEL_ADDRS":  strings.Join(st.SentinelAddrs(), ","),
			"REDIS_SENTINEL_MASTER": st.Master,
		})
	})
}

func testOutOfMemory(t *testing.T, bin string, srv *testredis.Server, url string, extra map[string]string) {
	ctx := context.Background()
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}

	// Fill to the limit: maxmemory just above what is used, then events
	// until Redis refuses one.
	used := usedMemory(t, c)
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+256<<10, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 200)
	total := 0
	for ; ; total++ {
		err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{
			"type", "ok", "data", fmt.Sprintf(`{"seq":%d,"pad":%q}`, total+1, pad),
		}}).Err()
		if redis.HasErrorPrefix(err, "OOM") {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if total > 100000 {
			t.Fatal("redis never refused a write: maxmemory is not in force")
		}
	}
	t.Logf("redis out of memory after %d events (maxmemory %d bytes)", total, used+256<<10)

	addr := freeAddr(t)
	env := faultEnv(url, stream, "w1", map[string]string{
		"WORKER_HTTP_ADDR": addr,
		// Held-back retries run again when reclaimed, each delivery an
		// attempt: enough of them that none is dead-lettered meanwhile.
		"WORKER_MAX_ATTEMPTS": "1000",
	})
	for k, v := range extra {
		env[k] = v
	}
	w := startWorker(t, bin, "worker", env)
	waitReady(t, w, addr)
	waitFor(t, 60*time.Second, w, "every entry read, the refusals seen and reported", func() (bool, string) {
		g := readGroup(t, c, stream)
		_, body, _ := httpGet("http://" + addr + "/readyz")
		oom := metricSum(t, addr, "streamworker_redis_out_of_memory")
		return g.lag == 0 && oom == 1 && strings.Contains(body, "out of memory") && w.logged("WARN", "retry held back"),
			fmt.Sprintf("%s oom=%v readyz=%q", g, oom, strings.TrimSpace(body))
	})
	// Nothing was added meanwhile: no retry copy in the delayed set, none
	// promoted into the stream.
	if n := c.XLen(ctx, stream).Val(); n != int64(total) {
		t.Errorf("stream has %d entries under OOM, want the %d produced", n, total)
	}
	if n := c.ZCard(ctx, stream+":delayed").Val(); n != 0 {
		t.Errorf("%d retry copies were added under OOM", n)
	}
	if after := usedMemory(t, c); after > used+256<<10+64<<10 {
		t.Logf("used memory %d bytes, %d over maxmemory (client buffers)", after, after-(used+256<<10))
	}

	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, w, "every event processed once memory is raised", func() (bool, string) {
		n := c.HLen(ctx, stream+":processed").Val()
		g := readGroup(t, c, stream)
		return n == int64(total) && g.pending == 0 && g.delayed == 0, fmt.Sprintf("processed=%d %s", n, g)
	})
	waitFor(t, 60*time.Second, w, "the out-of-memory state cleared", func() (bool, string) {
		_, body, _ := httpGet("http://" + addr + "/readyz")
		oom := metricSum(t, addr, "streamworker_redis_out_of_memory")
		return oom == 0 && body == "ready\n", fmt.Sprintf("oom=%v readyz=%q", oom, body)
	})
	if g := readGroup(t, c, stream); g.dead != 0 {
		t.Errorf("%d events dead-lettered", g.dead)
	}
	w.stop(30 * time.Second)
}

func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

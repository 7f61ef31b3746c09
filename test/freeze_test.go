package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
)

// freezeFor is how long the tests freeze Redis: longer than the readiness
// bound (2s without a PING answered, docs/operations.md) and far shorter
// than a blocking read's timeout (WORKER_BLOCK plus the client's read
// timeout), which alone would never show it.
const freezeFor = 3 * time.Second

// TestRedisFrozen freezes the worker's Redis (SIGSTOP: connections stay
// open, nothing is answered or refused, as with DEBUG SLEEP) for 3s and
// checks that /readyz turns 503 while it is frozen, saying why, and 200
// again after; then that work goes on. Once on a plain Redis, once on the
// primary of a Sentinel set-up (where the Sentinels may fail over meanwhile:
// readiness comes back either way).
func TestRedisFrozen(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/faultworker", "faultworker", raceEnabled)
	t.Run("Standalone", func(t *testing.T) {
		t.Parallel()
		srv := testredis.Start(t)
		testFrozen(t, bin, srv, srv.URL(), nil)
	})
	t.Run("Sentinel", func(t *testing.T) {
		t.Parallel()
		st := testredis.StartSentinel(t)
		testFrozen(t, bin, st.Primary, "redis:///0", map[string]string{
			"REDIS_SENTINEL_ADDRS":  strings.Join(st.SentinelAddrs(), ","),
			"REDIS_SENTINEL_MASTER": st.Master,
		})
	})
}

func testFrozen(t *testing.T, bin string, srv *testredis.Server, url string, extra map[string]string) {
	stream := testredis.Prefix(t) + "events"
	addr := freeAddr(t)
	env := faultEnv(url, stream, "w1", map[string]string{"WORKER_HTTP_ADDR": addr, "WORKER_BLOCK": "2s"})
	for k, v := range extra {
		env[k] = v
	}
	w := startWorker(t, bin, "worker", env)
	waitReady(t, w, addr)

	srv.Pause(t)
	frozen := time.Now()
	var seen time.Duration
	var body string
	tick := time.NewTicker(20 * time.Millisecond)
	for time.Since(frozen) < freezeFor {
		code, b, _ := httpGet("http://" + addr + "/readyz")
		if code == 503 {
			seen, body = time.Since(frozen), b
			break
		}
		<-tick.C
	}
	tick.Stop()
	srv.Resume(t)
	if seen == 0 {
		t.Fatalf("/readyz never answered 503 during a %s freeze of Redis", freezeFor)
	}
	t.Logf("/readyz answered 503 %s into the freeze: %s", seen.Round(10*time.Millisecond), strings.TrimSpace(body))
	if !strings.Contains(body, "has not answered a PING") {
		t.Errorf("/readyz body %q does not say that Redis does not answer", body)
	}
	waitReady(t, w, addr)

	// Work goes on after the freeze.
	var c redis.UniversalClient = srv.Client(t)
	if extra != nil {
		fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: extra["REDIS_SENTINEL_MASTER"], SentinelAddrs: strings.Split(extra["REDIS_SENTINEL_ADDRS"], ",")})
		t.Cleanup(func() { _ = fc.Close() })
		c = fc
	}
	for seq := 1; seq <= 20; seq++ {
		err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, Values: []string{"type", "ok", "data", fmt.Sprintf(`{"seq":%d}`, seq)}}).Err()
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, w, "20 messages processed after the freeze", func() (bool, string) {
		n := c.HLen(t.Context(), stream+":processed").Val()
		return n == 20, fmt.Sprintf("processed=%d", n)
	})
}

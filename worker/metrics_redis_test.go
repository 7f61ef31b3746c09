package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// gauge reads the value of one series of name from g: the one whose labels
// include every pair of labels. ok is false when there is none.
func gauge(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// An entry delivered to a consumer that never finished it: the oldest
// pending idle gauge reports at least its idle time, and 0 once it is
// acknowledged.
func TestOldestPendingIdleGauge(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	stream, group := testredis.Prefix(t)+"events", "g"
	if err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStreamCollector(c, []string{stream}, group, false))
	labels := map[string]string{"stream": stream, "group": group}
	const name = "streamworker_group_oldest_pending_idle_seconds"
	if v, ok := gauge(t, reg, name, labels); !ok || v != 0 {
		t.Errorf("nothing pending: %s = %v (reported %t), want 0", name, v, ok)
	}

	first := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}}).Val()
	c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}})
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "gone", Streams: []string{stream, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	// The consumer went away 90s ago: XCLAIM … IDLE sets the idle time
	// Redis keeps, as if that much time had passed.
	const idle = 90 * time.Second
	if err := c.Do(ctx, "XCLAIM", stream, group, "gone", 0, first, "IDLE", idle.Milliseconds()).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := gauge(t, reg, name, labels); v < idle.Seconds() || v > idle.Seconds()+60 {
		t.Errorf("an entry pending and idle %s: %s = %v, want at least %v", idle, name, v, idle.Seconds())
	}

	if err := c.XAck(ctx, stream, group, first).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := gauge(t, reg, name, labels); v >= idle.Seconds() {
		t.Errorf("the idle entry acknowledged: %s = %v, want the idle time of the next one, under %v", name, v, idle.Seconds())
	}
}

// The group's consumers and, for partitions, each partition's owner, read
// from Redis at scrape time.
func TestConsumersAndPartitionOwnerGauges(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	base, group := testredis.Prefix(t)+"orders", "g"
	parts := wire.PartitionStreams(base, 2)
	for _, p := range parts {
		if err := c.XGroupCreateMkStream(ctx, p, group, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"w1", "w2"} {
		if err := c.XGroupCreateConsumer(ctx, parts[0], group, name).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, wire.PartitionOwnerKey(parts[0], group), "w1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStreamCollector(c, parts, group, true))
	if v, ok := gauge(t, reg, "streamworker_group_consumers", map[string]string{"stream": parts[0], "group": group}); !ok || v != 2 {
		t.Errorf("consumers of %s = %v (reported %t), want 2", parts[0], v, ok)
	}
	if v, ok := gauge(t, reg, "streamworker_partition_owner", map[string]string{"stream": parts[0], "group": group, "consumer": "w1"}); !ok || v != 1 {
		t.Errorf("owner of %s: w1 = %v (reported %t), want 1", parts[0], v, ok)
	}
	if _, ok := gauge(t, reg, "streamworker_partition_owner", map[string]string{"stream": parts[1], "group": group}); ok {
		t.Errorf("%s has no owner, yet an owner series", parts[1])
	}
	// A forged owner too long for a consumer name is no label value.
	if err := c.Set(ctx, wire.PartitionOwnerKey(parts[1], group), strings.Repeat("x", maxOwnerLabel+1), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := gauge(t, reg, "streamworker_partition_owner", map[string]string{"stream": parts[1], "group": group}); ok {
		t.Errorf("%s: a %d-byte owner became a label value", parts[1], maxOwnerLabel+1)
	}
}

// Redis goes away: reads fail and are counted as fetch errors, the ready
// gauge drops to 0 with /readyz, and comes back to 1 with Redis.
func TestRedisOutageCountsFetchErrorsAndReadyGauge(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	cfg := testConfig(t, srv)
	l := listenHTTP(t)
	h := startWorker(t, srv, cfg, NewMux(), WithListener(l))
	base := "http://" + l.Addr().String()
	ready := func() float64 { v, _ := gauge(t, h.reg, "streamworker_ready", nil); return v }
	fetchErrors := func() float64 {
		v, _ := gauge(t, h.reg, "streamworker_redis_errors_total", map[string]string{"op": OpFetch})
		return v
	}
	eventually(t, "ready", func() bool { return get(base+"/readyz") == 200 && ready() == 1 })
	if n := fetchErrors(); n != 0 {
		t.Errorf("redis errors of op fetch = %v while Redis answers, want 0", n)
	}
	for _, op := range redisOps {
		if _, ok := gauge(t, h.reg, "streamworker_redis_errors_total", map[string]string{"op": op}); !ok {
			t.Errorf("no series of streamworker_redis_errors_total{op=%q} before any error", op)
		}
	}

	srv.Kill(t)
	eventually(t, "fetch errors counted", func() bool { return fetchErrors() > 0 })
	eventually(t, "ready gauge 0 with /readyz failing", func() bool { return ready() == 0 && get(base+"/readyz") == 503 })

	srv.Restart(t)
	eventually(t, "ready again", func() bool { return get(base+"/readyz") == 200 && ready() == 1 })
}

// The ready gauge is the condition of /readyz: an engine whose groups do not
// exist yet is not ready, and reports 0.
func TestReadyGaugeIsReadyz(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	reg := prometheus.NewRegistry()
	rt := newEngine(testConfig(t, srv), srv.Client(t), NewMux(), testLogger(t), NewMetrics(reg))
	v, ok := gauge(t, reg, "streamworker_ready", nil)
	if err := rt.Ready(); err == nil || !ok || v != 0 {
		t.Errorf("before Run: Ready() = %v, streamworker_ready = %v (reported %t); want an error and 0", err, v, ok)
	}
}

package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
)

// feeder publishes seqs while the workers run, a small batch at a time, and
// keeps trying a batch that fails until it is written: after a lost reply
// its seqs may be in the stream twice, which a comparison of sets allows.
type feeder struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	produced int // the highest seq written
	failures int
}

// startFeeder publishes seqs 1..total to stream on url, batch at a time
// every pace, with typ and sleep_ms per seq. It stops when the test ends.
func startFeeder(t *testing.T, url, stream string, total, batch int, pace time.Duration, typ func(int) string, sleepMS func(int) int) *feeder {
	t.Helper()
	client, err := producer.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	prod := producer.New(client, producer.Options{})
	f := &feeder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer client.Close()
		tick := time.NewTicker(pace) // the rate of production, and the pause after a failed write
		defer tick.Stop()
		for seq := 1; seq <= total; {
			events := make([]producer.Event, 0, batch)
			for s := seq; s < seq+batch && s <= total; s++ {
				events = append(events, producer.Event{Type: typ(s), Data: payload(s, sleepMS(s))})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := prod.PublishBatch(ctx, stream, events)
			cancel()
			f.mu.Lock()
			if err != nil {
				f.failures++
			} else {
				seq += len(events)
				f.produced = seq - 1
			}
			f.mu.Unlock()
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-f.stop:
		default:
			close(f.stop)
		}
		<-f.done
	})
	return f
}

func (f *feeder) state() (produced, failures int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.produced, f.failures
}

func (f *feeder) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// checkProcessedSet requires every seq from 1 to total processed and
// nothing pending, delayed or dead, and reports the duplicates.
func checkProcessedSet(t *testing.T, processed map[int]int, total int) {
	t.Helper()
	if m := missing(processed, total); len(m) > 0 {
		t.Errorf("%d produced messages never processed, e.g. %v", len(m), firstN(m, 10))
	}
	for _, seq := range sortedSeqs(processed) {
		if seq < 1 || seq > total {
			t.Errorf("seq %d processed but never produced", seq)
		}
	}
	extra, dupSeqs := duplicates(processed)
	t.Logf("processed set == produced set (%d messages); duplicates: %d extra handlings over %d messages", total, extra, dupSeqs)
}

// testRedisRestart kills the stream Redis (appendonly, appendfsync always)
// while three workers consume and a producer writes, and starts it again on
// the same port and data: the workers notice (readiness fails), recover by
// themselves, and the set of processed messages equals the set produced.
func testRedisRestart(t *testing.T, bin string) {
	t.Parallel()
	const total = 3000
	ctx := context.Background()
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	names := []string{"a", "b", "c"}
	workers := make([]*workerProc, len(names))
	addrs := make([]string, len(names))
	for i, name := range names {
		addrs[i] = freeAddr(t)
		workers[i] = startWorker(t, bin, "worker "+name, faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY":  "8",
			"WORKER_MAX_ATTEMPTS": "5",
			"WORKER_HTTP_ADDR":    addrs[i],
		}))
	}
	for i, w := range workers {
		waitReady(t, w, addrs[i])
	}
	f := startFeeder(t, srv.URL(), stream, total, 10, 10*time.Millisecond, always("ok"), always(5))
	processedKey := stream + ":processed"
	waitFor(t, 30*time.Second, nil, "work under way", func() (bool, string) {
		n := c.HLen(ctx, processedKey).Val()
		return n >= total/4, fmt.Sprintf("processed=%d", n)
	})

	srv.Kill(t)
	killed := time.Now()
	waitFor(t, 30*time.Second, nil, "every worker to notice Redis is gone", func() (bool, string) {
		var state []string
		ok := true
		for i, w := range workers {
			code, body, _ := httpGet("http://" + addrs[i] + "/readyz")
			ok = ok && code == 503
			state = append(state, fmt.Sprintf("%s: %d %s", w.name, code, strings.TrimSpace(body)))
		}
		return ok, strings.Join(state, "; ")
	})
	srv.Restart(t)
	t.Logf("redis down for %s", time.Since(killed).Round(time.Millisecond))
	for i, w := range workers {
		waitReady(t, w, addrs[i])
	}
	waitFor(t, 60*time.Second, nil, "every message processed after the restart", func() (bool, string) {
		produced, failures := f.state()
		n := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return f.finished() && n == total && g.pending == 0 && g.lag == 0 && g.delayed == 0,
			fmt.Sprintf("produced=%d (failed writes %d) processed=%d %s", produced, failures, n, g)
	})
	for _, w := range workers {
		w.stop(30 * time.Second)
	}
	_, failures := f.state()
	t.Logf("the producer's writes failed %d times during the outage, each retried", failures)
	if g := readGroup(t, c, stream); g.dead != 0 {
		t.Errorf("%d messages dead-lettered", g.dead)
	}
	checkProcessedSet(t, counts(t, c, processedKey), total)
}

// faultProxy is a toxiproxy proxy in front of a Redis, run in-process.
type faultProxy struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

func startFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "redis", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("starting toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &faultProxy{t: t, proxy: p}
}

// url is the proxy's redis:// URL.
func (p *faultProxy) url() string { return "redis://" + p.proxy.Listen + "/0" }

// add adds a toxic of typ on stream ("upstream": worker to Redis,
// "downstream": Redis to worker) with attributes as JSON.
func (p *faultProxy) add(name, typ, stream, attributes string) {
	p.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attributes)
	if _, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		p.t.Fatalf("adding toxic %s: %v", name, err)
	}
}

func (p *faultProxy) remove(name string) {
	p.t.Helper()
	if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		p.t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// testNetworkFaults puts toxiproxy between worker a and Redis (worker b
// talks to Redis directly) and injects, one after the other while messages
// flow: latency above the read timeout, connection resets and a blackhole
// longer than the min-idle. Worker a recovers by itself after each (ready
// again, processing again), what it could not finish is claimed by b, and
// the set of processed messages equals the set produced.
func testNetworkFaults(t *testing.T, bin string) {
	t.Parallel()
	const total = 2500
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	proxy := startFaultProxy(t, srv.Addr)
	stream := testredis.Prefix(t) + "events"
	aAddr, bAddr := freeAddr(t), freeAddr(t)
	// A min-idle of 2s, not 1s: a worker cut off from Redis cancels a
	// handler a quarter of the min-idle before others may claim its entry,
	// a margin a loaded machine running the race detector needs.
	const minIdle = 2 * time.Second
	env := map[string]string{
		"WORKER_CONCURRENCY": "8", "WORKER_MAX_ATTEMPTS": "5", "WORKER_HANDLER_TIMEOUT": "1m",
		"WORKER_RECLAIM_MIN_IDLE": minIdle.String(),
	}
	with := func(addr string) map[string]string {
		e := map[string]string{"WORKER_HTTP_ADDR": addr}
		for k, v := range env {
			e[k] = v
		}
		return e
	}
	a := startWorker(t, bin, "worker a (through toxiproxy)", faultEnv(proxy.url(), stream, "a", with(aAddr)))
	b := startWorker(t, bin, "worker b", faultEnv(srv.URL(), stream, "b", with(bAddr)))
	waitReady(t, a, aAddr)
	waitReady(t, b, bAddr)
	// Mostly short handlers; every 25th runs longer than the min-idle, so
	// that a fault catches some mid-run with a lease to keep.
	typ := func(seq int) string {
		if seq%25 == 0 {
			return "slow"
		}
		return "ok"
	}
	sleep := func(seq int) int {
		if seq%25 == 0 {
			return int(minIdle.Milliseconds()) * 3 / 2
		}
		return 20
	}
	f := startFeeder(t, srv.URL(), stream, total, 10, 40*time.Millisecond, typ, sleep)

	// aProcessedSince counts the messages worker a finished after at.
	aProcessedSince := func(at time.Time) int {
		n := 0
		for _, r := range runs(t, c, stream) {
			if r.consumer == "a" && r.at.After(at) {
				n++
			}
		}
		return n
	}
	// noticed waits until worker a logs a warning or an error after since:
	// a slow Redis does not always fail reads (a blocking read may wait
	// BLOCK + 10s), so readiness is not the only sign.
	noticed := func(what string, since time.Time) {
		t.Helper()
		waitFor(t, 30*time.Second, a, "worker a to notice "+what, func() (bool, string) {
			for _, rec := range a.logLines() {
				at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
				if (rec["level"] == "WARN" || rec["level"] == "ERROR") && at.After(since) {
					return true, ""
				}
			}
			return false, "no warning yet"
		})
	}
	recovered := func(what string) {
		t.Helper()
		healed := time.Now()
		waitReady(t, a, aAddr)
		waitFor(t, 60*time.Second, a, "worker a to process messages again after "+what, func() (bool, string) {
			n := aProcessedSince(healed)
			return n > 0, fmt.Sprintf("%d processed by a since", n)
		})
		t.Logf("worker a recovered from %s by itself in %s", what, time.Since(healed).Round(time.Millisecond))
	}
	// hold keeps a fault in place for d: the fault's duration, part of
	// the scenario.
	hold := func(d time.Duration) { <-time.After(d) }

	waitFor(t, 30*time.Second, a, "worker a to process messages", func() (bool, string) {
		n := aProcessedSince(time.Time{})
		return n >= 50, fmt.Sprintf("%d processed by a", n)
	})

	// Replies 6s late: past go-redis's 5s read timeout.
	start := time.Now()
	proxy.add("latency", "latency", "downstream", `{"latency":6000}`)
	noticed("latency above the read timeout", start)
	hold(3 * time.Second)
	proxy.remove("latency")
	recovered("latency above the read timeout")

	// Every connection reset by the peer as soon as it carries data.
	start = time.Now()
	proxy.add("reset", "reset_peer", "upstream", `{"timeout":0}`)
	noticed("connection resets", start)
	hold(time.Second)
	proxy.remove("reset")
	recovered("connection resets")

	// A blackhole: data vanishes, connections stay open, for longer than
	// the min-idle, so that worker a's leases lapse.
	start = time.Now()
	proxy.add("blackhole", "timeout", "upstream", `{"timeout":0}`)
	noticed("a blackhole", start)
	hold(2 * minIdle)
	proxy.remove("blackhole")
	recovered("a blackhole")

	processedKey := stream + ":processed"
	waitFor(t, 60*time.Second, nil, "every message processed", func() (bool, string) {
		produced, failures := f.state()
		n := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return f.finished() && n == total && g.pending == 0 && g.lag == 0 && g.delayed == 0,
			fmt.Sprintf("produced=%d (failed writes %d) processed=%d %s", produced, failures, n, g)
	})
	a.stop(30 * time.Second)
	b.stop(30 * time.Second)
	b.requireNoErrorLog()
	if a.logged("WARN", "lease lost") {
		t.Log("worker a cancelled handlers whose lease it could not keep")
	}
	if g := readGroup(t, c, stream); g.dead != 0 {
		t.Errorf("%d messages dead-lettered", g.dead)
	}
	checkProcessedSet(t, counts(t, c, processedKey), total)
	// The handlers' own account of when they ran, from the process logs
	// (the Redis markers of a worker cut off from Redis cannot be trusted).
	runs := slowRuns(a, b)
	if len(runs) == 0 {
		t.Error("no slow handler ran")
	}
	if both := concurrentRuns(runs); len(both) > 0 {
		t.Errorf("slow messages ran on two consumers at once: %v", both)
	}
}

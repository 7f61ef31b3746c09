package test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/producer"
)

// Reclaim settings of the fault tests: the smallest min-idle the
// configuration allows and a short interval, so that recovery from a crash
// takes about a second and a half.
const (
	faultMinIdle  = time.Second
	faultInterval = 100 * time.Millisecond
)

// TestFaults kills, restarts and cuts off worker processes (testdata/
// faultworker) and their Redis, and checks that crash recovery through
// reclaim is fast, bounded and safe: nothing is lost, nothing stays pending,
// a message that kills every worker ends in the dead-letter stream, and a
// live handler's message never runs twice at once. The binary is built once;
// the subtests run in parallel, each with its own redis-server.
func TestFaults(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "./testdata/faultworker", "faultworker", raceEnabled)
	t.Run("SIGKILLMidBatch", func(t *testing.T) { testSIGKILLMidBatch(t, bin) })
	t.Run("PoisonMessageKillsEveryWorker", func(t *testing.T) { testPoisonMessage(t, bin) })
	t.Run("SlowHandlerKeepsItsLease", func(t *testing.T) { testSlowHandlerLease(t, bin) })
	t.Run("TrimWhilePending", func(t *testing.T) { testTrimWhilePending(t, bin) })
	t.Run("ScaleDownFiveToOne", func(t *testing.T) { testScaleDown(t, bin) })
	t.Run("RedisRestart", func(t *testing.T) { testRedisRestart(t, bin) })
	t.Run("NetworkFaults", func(t *testing.T) { testNetworkFaults(t, bin) })
	t.Run("StressRandomKills", func(t *testing.T) { testStressRandomKills(t, bin) })
}

// faultEnv is workerEnv with the fault tests' reclaim settings.
func faultEnv(redisURL, stream, consumer string, extra map[string]string) map[string]string {
	env := map[string]string{
		"WORKER_RECLAIM_MIN_IDLE": faultMinIdle.String(),
		"WORKER_RECLAIM_INTERVAL": faultInterval.String(),
		"WORKER_BLOCK":            "200ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	return workerEnv(redisURL, stream, consumer, env)
}

// publishRange publishes one event per seq from..to, of the type and with
// the sleep_ms typ and sleep give it, in batches.
func publishRange(t *testing.T, prod *producer.Producer, stream string, from, to int, typ func(seq int) string, sleepMS func(seq int) int) {
	t.Helper()
	var events []producer.Event
	flush := func() {
		if len(events) == 0 {
			return
		}
		if _, err := prod.PublishBatch(context.Background(), stream, events); err != nil {
			t.Fatalf("publishing: %v", err)
		}
		events = events[:0]
	}
	for seq := from; seq <= to; seq++ {
		events = append(events, producer.Event{Type: typ(seq), Data: payload(seq, sleepMS(seq))})
		if len(events) == 1000 {
			flush()
		}
	}
	flush()
}

func always[T any](v T) func(int) T { return func(int) T { return v } }

// run is one successful handling the faultworker logged.
type run struct {
	seq      int
	consumer string
	at       time.Time
	attempt  int
}

// runs reads the faultworker's log of successful handlings.
func runs(t *testing.T, c *redis.Client, stream string) []run {
	t.Helper()
	lines, err := c.LRange(context.Background(), stream+":log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]run, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("malformed log line %q", l)
		}
		seq, _ := strconv.Atoi(f[0])
		ms, _ := strconv.ParseInt(f[2], 10, 64)
		attempt, _ := strconv.Atoi(f[3])
		out = append(out, run{seq: seq, consumer: f[1], at: time.UnixMilli(ms), attempt: attempt})
	}
	return out
}

// missing returns the seqs from 1 to n that processed does not hold.
func missing(processed map[int]int, n int) []int {
	var out []int
	for seq := 1; seq <= n; seq++ {
		if processed[seq] == 0 {
			out = append(out, seq)
		}
	}
	return out
}

// duplicates sums the extra handlings over all seqs.
func duplicates(processed map[int]int) (extra, seqs int) {
	for _, n := range processed {
		if n > 1 {
			extra += n - 1
			seqs++
		}
	}
	return extra, seqs
}

// pendingOf returns the IDs consumer owns in the group's pending list.
func pendingOf(t *testing.T, c *redis.Client, stream, consumer string) []redis.XPendingExt {
	t.Helper()
	p, err := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: stream, Group: group, Start: "-", End: "+", Count: 100000, Consumer: consumer,
	}).Result()
	if err != nil && !strings.HasPrefix(err.Error(), "NOGROUP") {
		t.Fatalf("XPENDING %s %s: %v", stream, consumer, err)
	}
	return p
}

// consumers returns the group's consumers by name.
func consumers(t *testing.T, c *redis.Client, stream string) map[string]redis.XInfoConsumer {
	t.Helper()
	cs, err := c.XInfoConsumers(context.Background(), stream, group).Result()
	if err != nil && (strings.Contains(err.Error(), "no such key") || strings.HasPrefix(err.Error(), "NOGROUP")) {
		return map[string]redis.XInfoConsumer{}
	}
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s: %v", stream, err)
	}
	out := make(map[string]redis.XInfoConsumer, len(cs))
	for _, x := range cs {
		out[x.Name] = x
	}
	return out
}

// kill SIGKILLs p and waits for it to be gone.
func (p *workerProc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	if code := p.wait(10 * time.Second); code != -1 {
		p.t.Fatalf("%s exited with code %d after SIGKILL, want a kill", p.name, code)
	}
}

// metricSum scrapes addr's /metrics and sums every series of a counter;
// it returns -1 while the worker does not answer.
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	code, body, err := httpGet("http://" + addr + "/metrics")
	if err != nil || code != 200 {
		return -1
	}
	var sum float64
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// waitReady waits until w answers /readyz on addr with 200.
func waitReady(t *testing.T, w *workerProc, addr string) {
	t.Helper()
	waitFor(t, 30*time.Second, w, w.name+" to be ready", func() (bool, string) {
		code, body, err := httpGet("http://" + addr + "/readyz")
		return code == 200, fmt.Sprintf("%d %q %v", code, body, err)
	})
}

// logged reports whether p logged a record at level whose msg contains
// text.
func (p *workerProc) logged(level, text string) bool {
	for _, rec := range p.logLines() {
		if msg, _ := rec["msg"].(string); rec["level"] == level && strings.Contains(msg, text) {
			return true
		}
	}
	return false
}

// requireNoErrorLog fails on any ERROR record in p's log.
func (p *workerProc) requireNoErrorLog() {
	p.t.Helper()
	for _, rec := range p.logLines() {
		if rec["level"] == "ERROR" {
			p.t.Errorf("%s logged an error: %v", p.name, rec)
		}
	}
}

// firstN returns at most n of s, for failure messages.
func firstN[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// sortedSeqs returns the keys of m, sorted.
func sortedSeqs(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// slowRun is one run of a slow handler, as the worker logged it.
type slowRun struct {
	seq        int
	consumer   string
	start, end time.Time
	err        string
}

// slowRuns collects the slow handler runs from the logs of procs.
func slowRuns(procs ...*workerProc) []slowRun {
	var out []slowRun
	for _, p := range procs {
		for _, rec := range p.logLines() {
			if rec["msg"] != "slow run" {
				continue
			}
			num := func(k string) int64 { f, _ := rec[k].(float64); return int64(f) }
			consumer, _ := rec["consumer"].(string)
			errText, _ := rec["error"].(string)
			out = append(out, slowRun{
				seq: int(num("seq")), consumer: consumer, err: errText,
				start: time.Unix(0, num("start_ns")), end: time.Unix(0, num("end_ns")),
			})
		}
	}
	return out
}

// concurrentRuns describes the runs of one message on two consumers whose
// times overlap.
func concurrentRuns(runs []slowRun) []string {
	bySeq := map[int][]slowRun{}
	for _, r := range runs {
		bySeq[r.seq] = append(bySeq[r.seq], r)
	}
	var out []string
	for _, seq := range slices.Sorted(maps.Keys(bySeq)) {
		rs := bySeq[seq]
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.consumer != b.consumer && a.start.Before(b.end) && b.start.Before(a.end) {
					out = append(out, fmt.Sprintf("seq %d on %s [%s, %s] (%s) and %s [%s, %s] (%s)", seq,
						a.consumer, a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"), a.err,
						b.consumer, b.start.Format("15:04:05.000"), b.end.Format("15:04:05.000"), b.err))
				}
			}
		}
	}
	return out
}

package compare

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// TestHarness runs the whole harness with tiny counts for every system and
// phase, so that `make bench` keeps working: every child must consume and
// acknowledge everything it is given, or the run fails.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and about thirty child processes")
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := Main(t.Context(), []string{
		"-out", dir, "-command", "make bench (test)",
		"-msgs", "600", "-runs", "1", "-producers", "8",
		"-latency-rate", "1000", "-latency-duration", "300ms", "-latency-senders", "2",
		"-sweep-msgs", "500", "-sweep-concurrency", "1,32", "-sweep-payload", "100,1024,65536", "-sweep-mib", "1",
		"-sweep-backlog", "300,2000,5000", "-max-backlog", "2000",
		"-memory-events", "3000", "-memory-maxlen", "500",
		"-io-msgs", "400", "-io-peer-msgs", "200", "-io-concurrency", "50", "-io-sleep", "5ms",
		"-order-keys", "40", "-cli-events", "3000", "-fail-peer-msgs", "200", "-profile-msgs", "500",
		"-child-timeout", "1m",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}

	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Errorf("failures: %q", res.Failures)
	}
	var got []string
	for _, tp := range res.Throughput {
		got = append(got, tp.System)
		if len(tp.Produce) != 1 || len(tp.Consume) != 1 {
			t.Errorf("%s: %d produce and %d consume runs, want 1 and 1", tp.System, len(tp.Produce), len(tp.Consume))
			continue
		}
		for _, m := range []Measurement{tp.Produce[0], tp.Consume[0]} {
			if m.N != 600 || m.Wall <= 0 || m.CPU <= 0 || m.PeakRSS <= 0 {
				t.Errorf("%s: implausible measurement %+v", tp.System, m)
			}
		}
		if tp.StoredBytes[0] <= 0 {
			t.Errorf("%s: %v Redis bytes per stored message", tp.System, tp.StoredBytes[0])
		}
	}
	if diff := cmp.Diff(entryNames, got); diff != "" {
		t.Errorf("throughput entries (-want +got):\n%s", diff)
	}
	if len(res.Latency) != len(entryNames) {
		t.Errorf("latency of %d entries, want %d", len(res.Latency), len(entryNames))
	}
	wantWorkloads := map[string][]string{
		PhaseIO:       {systems.Ours, systems.Asynq, systems.Watermill},
		PhaseFailures: {failNone, failOnce, failOnceDelayed, failDead, failAsynqNone, failAsynqOnce, failAsynqDead},
		PhaseOrder:    {orderNone, orderKeys},
		PhaseCLI:      {cliPipe, cliOurs},
	}
	gotWorkloads := map[string][]string{}
	for _, w := range res.Workloads {
		gotWorkloads[w.Phase] = append(gotWorkloads[w.Phase], w.Name)
		if len(w.Runs) != 1 || w.Runs[0].Wall <= 0 || w.Runs[0].N <= 0 {
			t.Errorf("%s %s: runs %+v", w.Phase, w.Name, w.Runs)
		}
	}
	if diff := cmp.Diff(wantWorkloads, gotWorkloads); diff != "" {
		t.Errorf("workload variants (-want +got):\n%s", diff)
	}
	for _, name := range []string{failNone, failOnceDelayed} {
		if w := findWorkload(res.Workloads, PhaseFailures, name); w == nil || commandMedian(*w, "xreadgroup") <= 0 {
			t.Errorf("failures %s: no Redis time in XREADGROUP: %+v", name, w)
		}
	}
	if w := findWorkload(res.Workloads, PhaseFailures, failOnceDelayed); w != nil && commandMedian(*w, "evalsha") <= 0 {
		t.Errorf("failures %s: no Redis time in scripts: %+v", failOnceDelayed, w.Runs[0].RedisCommands)
	}
	for _, l := range res.Latency {
		if len(l.Quantiles) == 0 {
			t.Errorf("%s: no latency quantiles", l.System)
			continue
		}
		p10, most := l.Quantiles[0].Latency, l.Quantiles[len(l.Quantiles)-1].Latency
		if l.Count != 300 || p10 <= 0 || most > time.Minute {
			t.Errorf("%s: %d latencies, p10 %s, max %s", l.System, l.Count, p10, most)
		}
		if len(l.Runs) != 1 || l.Runs[0].P99 <= 0 || l.Runs[0].Max != most || l.Runs[0].Consumer.N != 300 {
			t.Errorf("%s: latency runs %+v, want one of 300 messages with its own percentiles", l.System, l.Runs)
		}
	}
	g := res.Growth
	if len(g.Concurrency) != 2 || len(g.Payload) != 3 || len(g.Backlog) != 2 {
		t.Errorf("growth rows: %d concurrency, %d payload, %d backlog; want 2, 3 and 2", len(g.Concurrency), len(g.Payload), len(g.Backlog))
	}
	if diff := cmp.Diff([]int{5000}, g.BacklogSkipped); diff != "" {
		t.Errorf("skipped backlogs (-want +got):\n%s", diff)
	}
	if len(g.Payload) == 3 && g.Payload[2].Consume.N != 16 { // 1 MiB of 64 KiB messages
		t.Errorf("the 64 KiB payload run had %d messages, want 16", g.Payload[2].Consume.N)
	}
	if len(res.Memory) != 2 {
		t.Fatalf("%d memory rows, want 2", len(res.Memory))
	}
	if whole, trimmed := res.Memory[0], res.Memory[1]; whole.Entries != 3000 || trimmed.Entries >= 3000 || trimmed.Entries < 500 || trimmed.MemoryUsage >= whole.MemoryUsage {
		t.Errorf("MAXLEN ~ 500 kept %d entries in %d bytes; without, %d in %d", trimmed.Entries, trimmed.MemoryUsage, whole.Entries, whole.MemoryUsage)
	}

	if res.Profile == nil || len(res.Profile.Groups) != len(profileGroups) || res.Profile.Consume.N != 500 {
		t.Errorf("profile: %+v", res.Profile)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu-defaults.pprof")); err != nil {
		t.Error(err)
	}

	report, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"make bench (test)", "## Goals", "## Throughput", "## Latency", "### Backlog", "MAXLEN ~ 500", "![latency distribution](latency.png)",
		"## I/O-bound handler", "## Failures", "## Per-key order", "## The producer CLI", "![the workload phases](workloads.png)",
		"ours ÷ the better bare loop", "p99 XADD→handler", "÷ the ideal", "failing once", "dead-lettering", "asynq archiving", "in order ÷ one unordered stream",
		"64 KiB ÷ 1 KiB", "64 KiB ÷ 100 B", "÷ `redis-cli --pipe`", "Where Redis's time went over each of streamworker's consumes",
		"## Where streamworker's CPU goes", "readXMessageSlice",
	} {
		if !strings.Contains(string(report), want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if stdout.String() != string(report) {
		t.Error("stdout is not the report")
	}
	for _, png := range []string{"throughput.png", "latency.png", "workloads.png"} {
		b, err := os.ReadFile(filepath.Join(dir, png))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s: not a PNG (%v)", png, err)
		}
	}
}

func TestStamp(t *testing.T) {
	p := stamped(100)
	if len(p) != 100 {
		t.Fatalf("stamped payload of %d bytes, want 100", len(p))
	}
	if !json.Valid(p) {
		t.Fatalf("not JSON: %s", p)
	}
	at := time.Unix(1_700_000_000, 123_456_789)
	stamp(p, at)
	got, ok := stampOf(p)
	if !ok || got != at.UnixNano() {
		t.Errorf("stampOf = %d, %v; want %d", got, ok, at.UnixNano())
	}
	if _, ok := stampOf(systems.Payload(100)); ok {
		t.Error("stampOf found a stamp in an unstamped payload")
	}
}

func TestPercentile(t *testing.T) {
	sorted := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.001, 1}, {0.5, 5}, {0.9, 9}, {0.99, 10}, {1, 10}} {
		if got := percentile(sorted, tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := summarize([]float64{3, 1, 2, 10}); got != (summary{Median: 2.5, Min: 1, Max: 10}) {
		t.Errorf("summarize = %+v", got)
	}
}

func TestParseFlags(t *testing.T) {
	t.Run("Quick", func(t *testing.T) {
		o, err := ParseFlags([]string{"-quick", "-msgs", "5000"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if o.Msgs != 5000 || o.SweepMsgs != 20000 || o.MaxBacklog != 100000 || o.Runs != 3 {
			t.Errorf("-quick -msgs 5000 gave msgs %d, sweep-msgs %d, max-backlog %d, runs %d", o.Msgs, o.SweepMsgs, o.MaxBacklog, o.Runs)
		}
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-systems", "ours,kafka"}, `unknown "kafka"`},
		{[]string{"-sweep-backlog", "10,x"}, `"x" is not a positive number`},
		{[]string{"-payload", "10"}, "at least 100 bytes"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := ParseFlags(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFlags(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtInt(1234567.4), "1,234,567"},
		{fmtInt(999), "999"},
		{fmtCount(5_000_000), "5M"},
		{fmtCount(10_000), "10k"},
		{fmtCount(1234), "1,234"},
		{fmtDuration(1500 * time.Microsecond), "1.50 ms"},
		{fmtDuration(999_700 * time.Nanosecond), "1000 µs"},
		{fmtDuration(2 * time.Second), "2.00 s"},
		{shortCount(128_400), "128k"},
		{shortCount(7_900), "7.9k"},
		{fmtRange(summary{Median: 2000, Min: 1500, Max: 3000}), "**2,000** (1,500–3,000)"},
		{fmtSpread(summary{Median: 1.5e6, Min: 1.5e6, Max: 1.5e6}, fmtNanos), "**1.50 ms**"},
		{fmtSpread(summary{Median: math.NaN()}, fmtMicros), "–"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The latency goals compare the medians of each system's runs: one noisy
// run moves neither the CPU nor the p99 ratio.
func TestLatencyGoalsTakeTheMedianRun(t *testing.T) {
	run := func(cpuPerMsg, p99 time.Duration) LatencyRun {
		return LatencyRun{Consumer: Measurement{N: 1000, CPU: cpuPerMsg * 1000}, P99: p99}
	}
	res := &Results{Latency: []Latency{
		{System: systems.Ours, Runs: []LatencyRun{run(50_000, time.Millisecond), run(900_000, 90*time.Millisecond), run(40_000, 2*time.Millisecond)}},
		{System: systems.Bare, Runs: []LatencyRun{run(45_000, 2*time.Millisecond), run(40_000, time.Millisecond), run(1_000, 4*time.Millisecond)}},
	}}
	want := map[string]float64{
		"consumer CPU per message, " + label(systems.Ours): 50.0 / 40, // medians 50 and 40 µs
		"p99 XADD→handler, " + label(systems.Ours):         2.0 / 2,   // medians 2 ms and 2 ms
	}
	found := 0
	for _, g := range goals(res) {
		for what, r := range want {
			if strings.Contains(g.what, what) {
				found++
				if math.Abs(g.measured-r) > 1e-9 {
					t.Errorf("%s: %v, want %v", g.what, g.measured, r)
				}
				if strings.Contains(what, "CPU") && !strings.Contains(g.why, "What would reach it on a loaded machine too") {
					t.Errorf("%s: its line says nothing of what would reach it: %s", g.what, g.why)
				}
			}
		}
	}
	if found != len(want) {
		t.Errorf("found %d of the %d latency goals", found, len(want))
	}
}

func TestParseCommandStats(t *testing.T) {
	before := parseCommandStats("# Commandstats\r\ncmdstat_xack:calls=10,usec=30,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=2,usec=100,usec_per_call=50.00\r\nnot a stat\r\ncmdstat_zadd:calls=900,usec=800\r\n")
	after := parseCommandStats("# Commandstats\r\ncmdstat_xack:calls=15,usec=45,usec_per_call=3.00\r\n" +
		"cmdstat_info:calls=2,usec=100\r\ncmdstat_evalsha:calls=4,usec=2000,usec_per_call=500.00\r\ncmdstat_memory|usage:calls=1,usec=29\r\n" +
		"cmdstat_zadd:calls=50,usec=40\r\n") // zadd: reset in between
	want := []CommandStat{{"evalsha", 4, 2000}, {"zadd", 50, 40}, {"memory|usage", 1, 29}, {"xack", 5, 15}}
	if diff := cmp.Diff(want, commandDelta(before, after)); diff != "" {
		t.Errorf("commands called between (-want +got):\n%s", diff)
	}
}

// TestUnmetGoalsSayWhy checks the lines under the goals table: each target
// not met says, from the run's numbers, what held it back.
func TestUnmetGoalsSayWhy(t *testing.T) {
	run := func(rate float64, redisCPU time.Duration, xread, evalsha int64) Measurement {
		const n = 100_000
		return Measurement{N: n, Wall: time.Duration(float64(n) / rate * float64(time.Second)), CPU: 150 * time.Millisecond, RedisCPU: redisCPU,
			RedisCommands: []CommandStat{{"xreadgroup", 1000, xread}, {"evalsha", 100, evalsha}}}
	}
	dearer := func(m Measurement, cpu time.Duration) Measurement { m.CPU = cpu; return m }
	consume := func(rates ...float64) []Measurement {
		var ms []Measurement
		for _, r := range rates {
			ms = append(ms, run(r, 140*time.Millisecond, 0, 0))
		}
		return ms
	}
	failures := func(inPlace float64, redisCPU time.Duration) []Workload {
		return []Workload{
			{Phase: PhaseFailures, Name: failNone, System: systems.Ours, Runs: []Measurement{run(400_000, 140*time.Millisecond, 100_000, 0)}},
			{Phase: PhaseFailures, Name: failOnce, System: systems.Ours, Runs: []Measurement{run(inPlace, 150*time.Millisecond, 100_000, 0)}},
			{Phase: PhaseFailures, Name: failOnceDelayed, System: systems.Ours, Runs: []Measurement{dearer(run(300_000, redisCPU, 110_000, 70_000), 190*time.Millisecond)}},
		}
	}
	report := func(res *Results) string {
		var b strings.Builder
		renderGoals(&b, res)
		renderWorkloads(&b, res, false)
		return b.String()
	}
	for _, c := range []struct {
		name    string
		res     *Results
		want    []string
		wantNot []string
	}{
		{"consume and failures", &Results{Options: Options{FailEvery: 10, Runs: 3, OursConcurrency: 256}, Throughput: []Throughput{
			{System: systems.Ours, Consume: consume(300_000, 320_000, 390_000)},
			{System: systems.BarePipelined, Consume: consume(290_000, 300_000, 310_000)},
		}, Workloads: failures(360_000, 230*time.Millisecond)}, []string{
			"### Where a target is not met",
			"retried through S:delayed, ÷ all succeeding: 0.75×.**",
			"from 1.40 µs all succeeding to 2.30 µs, 9.00 µs per failure at 1 in 10; of each failure, `INFO commandstats` puts 7.00 µs in the two scripts",
			"and 1.00 µs in reading the retry again",
			"the likely reason the rate fell to 0.75× of all succeeding: its CPU per message rose 1.64×",
			"What would reach it: a retry that is not a copy (its entry left pending, the delayed set holding a reference to it), run and acknowledged as cheaply as a first delivery;",
			"At the defaults a retry due soon is not copied at all: it waits in the worker, its entry pending, and runs again there (`WORKER_RETRY_IN_PLACE_MAX`); the same workload ran at 0.90× of all succeeding, at or above the target.",
			"Ours' consume with 1 in 10 failing once was **300,000** msgs/s, the all-succeed run's **400,000** msgs/s (median, min–max of the runs): the runs of each side did not differ",
			"All succeeding took 2.90 µs of CPU per message, the worker's and Redis's together; for 0.80× of its rate at the same overlap, a failure may cost 7.25 µs (1 in 10), and it cost 13.0 (the worker 4.00, Redis 9.00).",
			"A retry made as a copy cannot do without its second delivery (about a message's 2.90 µs) and the copy's commands (about 1.90 µs of Redis, [docs/bench.md](../../docs/bench.md)), 4.80 µs before any Lua",
			"| evalsha | 0.00 | 0.00 | 0.70 |", "| Redis CPU | 1.40 | 1.50 | 2.30 |",
			"ours ÷ the better bare loop (bare go-redis loop, pipelined): 1.07×.**",
			"Ours' consume was **320,000** (300,000–390,000) msgs/s, the bare go-redis loop, pipelined's **300,000** (290,000–310,000) msgs/s (median, min–max of the runs): ours' best run ÷ its worst = 1.34×, ours' worst ÷ its best = 0.97×, so the runs alone span the target: this run cannot tell met from not met.",
		}, []string{"worker CPU per message consuming"}}, // met: 1.00×, no line
		{"the retries' reads do not show", &Results{Options: Options{FailEvery: 10, Runs: 1}, Workloads: []Workload{
			{Phase: PhaseFailures, Name: failNone, System: systems.Ours, Runs: []Measurement{run(400_000, 140*time.Millisecond, 100_000, 0)}},
			{Phase: PhaseFailures, Name: failOnceDelayed, System: systems.Ours, Runs: []Measurement{run(300_000, 230*time.Millisecond, 95_000, 70_000)}},
		}}, []string{"and nothing that shows in reading the retry again: `XREADGROUP`'s time per message did not rise"}, []string{"– µs in reading"}},
		{"one in three failing", &Results{Options: Options{FailEvery: 3, Runs: 1}, Workloads: failures(360_000, 230*time.Millisecond)}, []string{
			"At 1 in 3 failing, even a retry as cheap as a first delivery leaves 0.75× of all succeeding's rate, below the target: nothing in the retry path reaches it.",
		}, []string{"What would reach it: a retry that is not a copy"}},
		{"in place short too, Redis CPU unknown", &Results{Options: Options{FailEvery: 10, Runs: 1}, Workloads: failures(300_000, -1)}, []string{
			"What would reach it: a retry that is not a copy", "the same workload ran at 0.75× of all succeeding, short of the target too, in this run.",
		}, []string{"at or above the target", "Redis's CPU per message went", "likely reason"}},
		{"order", &Results{Options: Options{Runs: 2, OrderPartitions: 16, OrderKeys: 1000, Payload: 100}, Workloads: []Workload{
			{Phase: PhaseOrder, Name: orderNone, System: systems.Ours, Runs: []Measurement{run(280_000, 240*time.Millisecond, 0, 0), run(300_000, 240*time.Millisecond, 0, 0)}},
			{Phase: PhaseOrder, Name: orderKeys, System: systems.Ours, Runs: []Measurement{
				{N: 100_000, Wall: time.Second / 2, CPU: 420 * time.Millisecond, RedisCPU: 310 * time.Millisecond},
				{N: 100_000, Wall: time.Second / 2, CPU: 420 * time.Millisecond, RedisCPU: 310 * time.Millisecond},
			}},
		}}, []string{
			"16 partitions with 1,000 keys in order ÷ one unordered stream: 0.69×.**",
			"Ours' consume over 16 partitions was **200,000** msgs/s, the unordered stream's **290,000** (280,000–300,000) msgs/s",
			"so every pair of runs misses the target",
			"Per message, the worker took 4.20 µs of CPU against the unordered stream's 1.50, and Redis 3.10 µs against 2.40.",
			"Both run their batches of 100-byte entries on their fetchers",
			"and 16 fetchers, each a read and an `XACK` of its own per batch, share the handler slots",
			"Not built yet, the likely way to reach it: one read, and one `XACK`, for all the partitions a worker owns on one Redis",
		}, nil},
		{"producer CLI held back by its one P", cliResults(250, Machine{CPUs: 2}), []string{
			"`producer send --file` ÷ `redis-cli --pipe`, 1,000,000 events: 0.73×.**",
			"Ours' rate was **400,000** events/s, the `redis-cli --pipe`'s **550,000** (500,000–600,000) events/s (median, min–max of the runs)",
			"ours' best run ÷ its worst = 0.80×, ours' worst ÷ its best = 0.67×, so the runs alone span the target",
			"Per event the producer took 2.50 µs of CPU against `redis-cli`'s 0.80",
			"It runs on one P (`GOMAXPROCS`=1): at its median CPU per event that allows about 400,000 events/s, below the 440,000 events/s of 0.80× of `redis-cli`'s median rate.",
			"Redis took 1.70 µs per event against 1.60; at 440,000 events/s the producer and Redis would keep 1.85 cores busy, of this machine's 2.",
			"What would reach it: less CPU per event in the producer, at most 2.27 µs at 440,000 events/s",
		}, []string{"Its phase's table below has the runs", "or more cores", "Neither", "; and "}},
		{"producer CLI, its one P not the limit", cliResults(190, Machine{CPUs: 2}), []string{
			"that allows about 526,316 events/s, above the 440,000 events/s",
			"would keep 1.58 cores busy, of this machine's 2.",
			"Neither the producer's CPU on its one P nor the cores hold it back in these numbers;",
		}, []string{"What would reach it"}},
		{"producer CLI with GOMAXPROCS=1 set", cliResults(250, Machine{CPUs: 2, GOMAXPROCS: "1"}), []string{
			"It runs on one P (`GOMAXPROCS`=1)", "What would reach it: less CPU per event in the producer, at most 2.27 µs",
		}, []string{"Neither"}},
		{"producer CLI held back by its P and the cores", cliResults(250, Machine{CPUs: 1}), []string{
			"would keep 1.85 cores busy, of this machine's 1.",
			"What would reach it: less CPU per event in the producer, at most 2.27 µs at 440,000 events/s (its JSON decoding, go-redis's work per command); and less CPU per event, the producer's and Redis's together, or more cores;",
		}, []string{"Neither"}},
		{"producer CLI, Redis CPU unknown", cliRedisUnknown(cliResults(190, Machine{CPUs: 2})), []string{
			"that allows about 526,316 events/s, above the 440,000 events/s", "These numbers do not say what held it back;",
		}, []string{"Neither", "What would reach it", "cores busy"}},
		{"producer CLI with GOMAXPROCS set, short of cores", cliResults(190, Machine{CPUs: 1, GOMAXPROCS: "4"}), []string{
			"would keep 1.58 cores busy, of this machine's 1.",
			"What would reach it: less CPU per event, the producer's and Redis's together, or more cores;",
		}, []string{"one P", "Neither"}},
		{"one run each", &Results{Options: Options{Runs: 1, OursConcurrency: 256}, Throughput: []Throughput{
			{System: systems.Ours, Consume: consume(300_000)},
			{System: systems.BarePipelined, Consume: consume(300_000)},
		}}, []string{"the runs of each side did not differ (one run each?), so this run does not measure the noise."}, []string{"span the target", "misses the target"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := report(c.res)
			for _, want := range c.want {
				if !strings.Contains(got, want) {
					t.Errorf("report lacks %q:\n%s", want, got)
				}
			}
			_, why, _ := strings.Cut(got, "### Where a target is not met")
			for _, not := range c.wantNot {
				if strings.Contains(why, not) {
					t.Errorf("the lines on targets not met hold %q:\n%s", not, why)
				}
			}
		})
	}
}

// TestLowLoadP99Line checks what a low-load p99 not met says: a quieter
// machine would tell when its runs span the target; when every pair
// misses, ours' consumer CPU as the likely reason when it was higher than
// the loop's, and no reason when it was not.
func TestLowLoadP99Line(t *testing.T) {
	run := func(cpu time.Duration, p99 time.Duration) LatencyRun {
		return LatencyRun{Consumer: Measurement{N: 1000, CPU: cpu}, P99: p99}
	}
	ms := func(ds ...int) []time.Duration {
		var out []time.Duration
		for _, d := range ds {
			out = append(out, time.Duration(d)*time.Millisecond)
		}
		return out
	}
	const tell, likely, reach = "a quieter machine would tell met from not met", "the likely reason its tail is longer", "What would reach it"
	for _, c := range []struct {
		name          string
		oursCPU       time.Duration // per 1,000 messages; the loop's is 40 ms
		ours, bare    []time.Duration
		want, wantNot []string
	}{
		{"the runs span the target", 40 * time.Millisecond, ms(1, 3, 4), ms(2, 2, 3), []string{tell}, []string{likely, reach}},
		{"every pair misses, ours dearer", 50 * time.Millisecond, ms(9, 10), ms(1, 2), []string{
			"Ours also took 50.0 µs of consumer CPU per message against the loop's 40.0", likely,
			"What would reach it: what would cut that CPU, fewer hand-offs between goroutines and threads around each round trip.",
		}, []string{tell}},
		{"every pair misses, ours no dearer", 40 * time.Millisecond, ms(9, 10), ms(1, 2), []string{"Ours took 40.0 µs of consumer CPU per message against the loop's 40.0, its runs not all dearer than the loop's: the CPU does not explain the tail in this run;"}, []string{tell, likely, reach}},
		{"one run each", 40 * time.Millisecond, ms(3), ms(2), nil, []string{tell, likely, reach, "no more"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := &Results{Latency: []Latency{{System: systems.Ours}, {System: systems.Bare}}}
			for _, d := range c.ours {
				res.Latency[0].Runs = append(res.Latency[0].Runs, run(c.oursCPU, d))
			}
			for _, d := range c.bare {
				res.Latency[1].Runs = append(res.Latency[1].Runs, run(40*time.Millisecond, d))
			}
			found := false
			for _, g := range goals(res) {
				if !strings.Contains(g.what, "p99") {
					continue
				}
				found = true
				if g.met {
					t.Fatalf("%s: met (%v); the case wants it not met", g.what, g.measured)
				}
				for _, w := range c.want {
					if !strings.Contains(g.why, w) {
						t.Errorf("line lacks %q: %s", w, g.why)
					}
				}
				for _, w := range c.wantNot {
					if strings.Contains(g.why, w) {
						t.Errorf("line holds %q: %s", w, g.why)
					}
				}
			}
			if !found {
				t.Fatal("no p99 goal")
			}
		})
	}
}

// cliResults are two runs each of the producer-cli phase: redis-cli at
// 500,000 and 600,000 events/s, the producer at 400,000 with cpuMs of CPU
// per 100,000 events.
func cliResults(cpuMs int, m Machine) *Results {
	run := func(wall time.Duration, cpuMs, redisMs int) Measurement {
		return Measurement{N: 100_000, Wall: wall, CPU: time.Duration(cpuMs) * time.Millisecond, RedisCPU: time.Duration(redisMs) * time.Millisecond}
	}
	return &Results{Options: Options{Runs: 2, CLIEvents: 1_000_000}, Machine: m, Workloads: []Workload{
		{Phase: PhaseCLI, Name: cliPipe, System: "redis-cli", Runs: []Measurement{run(time.Second/6, 80, 160), run(time.Second/5, 80, 160)}},
		{Phase: PhaseCLI, Name: cliOurs, System: systems.Ours, Runs: []Measurement{run(time.Second/4, cpuMs, 170), run(time.Second/4, cpuMs, 170)}},
	}}
}

// cliRedisUnknown marks the producer's runs' Redis CPU unknown.
func cliRedisUnknown(res *Results) *Results {
	for i := range res.Workloads[1].Runs {
		res.Workloads[1].Runs[i].RedisCPU = -1
	}
	return res
}

// TestMetWithinTheNoise checks that a target met only as the noise fell
// says so: in its row, in the count, and in a line with the runs' spread.
func TestMetWithinTheNoise(t *testing.T) {
	consume := func(rates ...float64) []Measurement {
		var ms []Measurement
		for _, r := range rates {
			ms = append(ms, Measurement{N: 100_000, Wall: time.Duration(100_000 / r * float64(time.Second)), CPU: 150 * time.Millisecond})
		}
		return ms
	}
	order := func(plain, keyed []Measurement) []Workload {
		return []Workload{
			{Phase: PhaseOrder, Name: orderNone, System: systems.Ours, Runs: plain},
			{Phase: PhaseOrder, Name: orderKeys, System: systems.Ours, Runs: keyed},
		}
	}
	for _, c := range []struct {
		name    string
		res     *Results
		want    []string
		wantNot []string
	}{
		{"spans", &Results{Options: Options{Runs: 3, OursConcurrency: 256, OrderPartitions: 16, OrderKeys: 1000}, Throughput: []Throughput{
			{System: systems.Ours, Consume: consume(300_000, 340_000, 400_000)},
			{System: systems.BarePipelined, Consume: consume(290_000, 300_000, 310_000)},
		}, Workloads: order(consume(400_000, 410_000, 420_000), consume(300_000, 380_000, 390_000))}, []string{
			"4 of 4 targets met in this run, 2 of them within the noise (the runs span the target: below).",
			"ours ÷ the better bare loop (bare go-redis loop, pipelined) | ≥ 1.1 | 1.13× | met, within the noise |",
			"### Met within the noise: the runs span the target",
			"- **consume msgs/s at the README's settings (`WORKER_CONCURRENCY`=256), ours ÷ the better bare loop (bare go-redis loop, pipelined): 1.13×.** Ours' consume was **340,000** (300,000–400,000) msgs/s",
			"ours' best run ÷ its worst = 1.38×, ours' worst ÷ its best = 0.97×, so the runs alone span the target",
			"- **order: consume msgs/s, 16 partitions with 1,000 keys in order ÷ one unordered stream: 0.93×.** Ours' consume over 16 partitions was **380,000** (300,000–390,000) msgs/s",
		}, []string{"### Where a target is not met", "every pair"}},
		{"not met, the runs spanning the target", &Results{Options: Options{Runs: 3, OursConcurrency: 256}, Throughput: []Throughput{
			{System: systems.Ours, Consume: consume(300_000, 320_000, 390_000)},
			{System: systems.BarePipelined, Consume: consume(290_000, 300_000, 310_000)},
		}}, []string{"2 of 3 targets met in this run. Ratios", "| ≥ 1.1 | 1.07× | not met |", "### Where a target is not met", "so the runs alone span the target"},
			[]string{"within the noise", "### Met within"}},
		{"with room", &Results{Options: Options{Runs: 3, OursConcurrency: 256}, Throughput: []Throughput{
			{System: systems.Ours, Consume: consume(380_000, 400_000, 420_000)},
			{System: systems.BarePipelined, Consume: consume(290_000, 300_000, 310_000)},
		}}, []string{"3 of 3 targets met in this run. Ratios", "| ≥ 1.1 | 1.33× | met |"}, []string{"within the noise", "### Met within"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			renderGoals(&b, c.res)
			got := b.String()
			for _, want := range c.want {
				if !strings.Contains(got, want) {
					t.Errorf("report lacks %q:\n%s", want, got)
				}
			}
			for _, not := range c.wantNot {
				if strings.Contains(got, not) {
					t.Errorf("report holds %q:\n%s", not, got)
				}
			}
		})
	}
}

func TestSpreadWhy(t *testing.T) {
	for _, c := range []struct {
		ours, theirs summary
		high         bool
		target       float64
		want         string
	}{
		{summary{2, 1.8, 2.2}, summary{1.9, 1.7, 2}, false, 1, "ours' best run ÷ its worst = 0.90×, ours' worst ÷ its best = 1.29×, so the runs alone span the target"},
		{summary{3, 2.8, 3.2}, summary{1.9, 1.7, 2}, false, 1, "ours' best run ÷ its worst = 1.40×, ours' worst ÷ its best = 1.88×, so every pair of runs misses the target"},
		{summary{250, 240, 260}, summary{300, 290, 310}, true, 1.1, "ours' best run ÷ its worst = 0.90×, ours' worst ÷ its best = 0.77×, so every pair of runs misses the target"},
		{summary{0, 0, 0}, summary{0, 0, 0}, false, 1, "(median, min–max of the runs)."},
		{summary{1.5, 1.4, 1.6}, summary{1.9, 1.7, 2}, false, 1, "ours' best run ÷ its worst = 0.70×, ours' worst ÷ its best = 0.94×, so every pair of runs meets the target: the margin is more than the noise."},
		{summary{400, 380, 420}, summary{300, 290, 310}, true, 1.1, "ours' best run ÷ its worst = 1.45×, ours' worst ÷ its best = 1.23×, so every pair of runs meets the target"},
	} {
		got, _ := spreadWhy("x", c.ours, systems.Bare, c.theirs, fmtMicros, "", c.high, c.target)
		if !strings.Contains(got, c.want) {
			t.Errorf("spreadWhy(%v, %v) = %q, want it to hold %q", c.ours, c.theirs, got, c.want)
		}
	}
}

// TestRedisCPUMedianUnknown checks that a run whose Redis CPU is unknown
// makes the median unknown, not a median taken with its -1.
func TestRedisCPUMedianUnknown(t *testing.T) {
	known := Measurement{N: 100_000, RedisCPU: 170 * time.Millisecond}
	unknown := Measurement{N: 100_000, RedisCPU: -1}
	if got := redisCPUMedian([]Measurement{known, known}); math.Abs(got-1.7) > 1e-9 {
		t.Errorf("two known runs: %v, want 1.7", got)
	}
	if got := redisCPUMedian([]Measurement{unknown, known}); got != -1 {
		t.Errorf("one run unknown: %v, want -1", got)
	}
}

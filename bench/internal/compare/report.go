package compare

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/worker"
)

// labels are the systems' names in the report and the charts.
var labels = map[string]string{
	systems.Ours:          "streamworker",
	oursDefaults:          "streamworker at the daemon's defaults",
	systems.Bare:          "bare go-redis loop",
	systems.BarePipelined: "bare go-redis loop, pipelined",
	systems.Asynq:         "asynq",
	systems.Watermill:     "Watermill redisstream",
}

func label(name string) string {
	if l, ok := labels[name]; ok {
		return l
	}
	return name
}

// renderReport is README.md: the tables, the charts and how they were made.
func renderReport(res *Results, charts []string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := res.Options

	w("# streamworker against asynq, Watermill and a bare go-redis loop\n\n")
	w("Made by `%s` on %s in %s, against one redis-server the harness started (`--save \"\" --appendonly no`, loopback). ",
		res.Command, res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Finished.Sub(res.Started).Round(time.Second))
	w("Every phase of every system ran in a child process of its own, so CPU and peak memory are that system's alone. ")
	w("See [bench/README.md](../README.md) for what each system runs and how to read the numbers.\n\n")
	renderMachine(&b, res)
	if len(res.Failures) > 0 {
		w("\n**%d failures** (their rows are missing or short):\n\n", len(res.Failures))
		for _, f := range res.Failures {
			w("- %s\n", f)
		}
	}
	renderGoals(&b, res)

	if len(res.Throughput) > 0 {
		w("\n## Throughput\n\n")
		w("%s messages of %d bytes, no-op handler, %d runs per system (interleaved); median (min–max). ", fmtInt(float64(o.Msgs)), o.Payload, o.Runs)
		w("Produce: from an empty Redis. Consume: the backlog the produce left, until the system shows every message acknowledged. ")
		w("Streamworker consumes with `WORKER_CONCURRENCY`=%d and `WORKER_FETCH_COUNT`=%d (the README's settings) and a second time at the daemon's defaults (`config.Default()`: `WORKER_CONCURRENCY`=%d, `WORKER_FETCH_COUNT`=%d); the bare loop reads %d per XREADGROUP, once with an XACK round trip after each batch and once (pipelined) with the XACK and the next XREADGROUP in one round trip; asynq runs %d workers, Watermill %d subscribers.\n\n",
			o.OursConcurrency, o.OursFetch, config.Default().Concurrency, config.Default().FetchCount, o.BareCount, o.AsynqConcurrency, o.WatermillSubscribers)
		if slices.Contains(charts, "throughput.png") {
			w("![produce and consume throughput](throughput.png)\n\n")
		}
		renderThroughput(&b, res)
		renderRatios(&b, res)
	}
	if len(res.Latency) > 0 {
		renderLatency(&b, res, slices.Contains(charts, "latency.png"))
	}
	renderWorkloads(&b, res, slices.Contains(charts, "workloads.png"))
	renderGrowth(&b, res)
	renderMemory(&b, res)
	renderProfile(&b, res)
	if len(res.PhaseTimes) > 0 {
		w("\n## Time taken\n\n| phase | wall time |\n|---|---|\n")
		for _, p := range res.PhaseTimes {
			w("| %s | %s |\n", p.Phase, p.Took.Round(time.Second))
		}
	}
	return b.String()
}

func renderMachine(b *strings.Builder, res *Results) {
	m := res.Machine
	fmt.Fprintf(b, "| machine | |\n|---|---|\n")
	fmt.Fprintf(b, "| commit | %s |\n", m.Commit)
	fmt.Fprintf(b, "| cores (`nproc`) | %d |\n", m.CPUs)
	fmt.Fprintf(b, "| CPU | %s |\n", m.CPUModel)
	fmt.Fprintf(b, "| memory | %s |\n", m.MemTotal)
	fmt.Fprintf(b, "| OS | %s |\n", m.Kernel)
	fmt.Fprintf(b, "| Go | %s |\n", m.GoVersion)
	fmt.Fprintf(b, "| redis-server | %s (%s) |\n", m.RedisVersion, m.RedisAllocator)
	mods := make([]string, 0, len(m.Modules))
	for path, v := range m.Modules {
		mods = append(mods, path+" "+v)
	}
	sort.Strings(mods)
	fmt.Fprintf(b, "| modules | %s |\n", strings.Join(mods, ", "))
	if res.Options.GOGC > 0 {
		fmt.Fprintf(b, "| GC target | GOGC=%d for every system (`-gogc`) |\n", res.Options.GOGC)
	} else {
		fmt.Fprintf(b, "| GC target | Go's default (GOGC=100) for the others; streamworker at its daemon's default, %d (`worker.SetGCDefault`) |\n", worker.DefaultGCPercent)
	}
	fmt.Fprintf(b, "| load average (1 min) | %.2f at the start, %.2f at the end |\n", m.LoadStart, m.LoadEnd)
	if m.GOMAXPROCS != "" {
		fmt.Fprintf(b, "| `GOMAXPROCS` (environment, inherited by every child) | %s |\n", m.GOMAXPROCS)
	}
	if busy := float64(m.CPUs) * 1.25; m.LoadStart > busy || m.LoadEnd > busy {
		fmt.Fprintf(b, "\nThe load average was above the core count: other work shared the cores, so wall-clock numbers (msgs/s, latency) are pessimistic and noisy; CPU per message suffers much less.\n")
	}
}

func renderThroughput(b *strings.Builder, res *Results) {
	fmt.Fprintf(b, "| system | produce msgs/s | consume msgs/s | CPU µs/msg produce / consume | Redis CPU µs/msg produce / consume | peak RSS produce / consume | Redis bytes per stored message |\n")
	fmt.Fprintf(b, "|---|---|---|---|---|---|---|\n")
	for _, t := range res.Throughput {
		if len(t.Consume) == 0 {
			fmt.Fprintf(b, "| %s | failed | failed | | | | |\n", label(t.System))
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s / %s | %s / %s | %s / %s | %s |\n", label(t.System),
			fmtRange(t.produceRate()), fmtRange(t.consumeRate()),
			fmtMicros(cpuMedian(t.Produce)),
			fmtMicros(cpuMedian(t.Consume)),
			fmtMicros(redisCPUMedian(t.Produce)),
			fmtMicros(redisCPUMedian(t.Consume)),
			fmtMiB(summarize(each(t.Produce, peakRSS)).Median), fmtMiB(summarize(each(t.Consume, peakRSS)).Median),
			fmtInt(summarize(t.StoredBytes).Median))
	}
	fmt.Fprintf(b, "\nCPU: the child's user + system time during the timed phase, all threads. Redis CPU: the redis-server's, from /proc (10 ms ticks). Peak RSS: the child's `ru_maxrss` over its whole life. Redis bytes: `used_memory` after the produce less before, per message.\n")
}

func peakRSS(m Measurement) float64 { return float64(m.PeakRSS) }

func renderRatios(b *strings.Builder, res *Results) {
	ours := findThroughput(res.Throughput, systems.Ours)
	if ours == nil || len(ours.Consume) == 0 || len(res.Throughput) < 2 {
		return
	}
	oc, op := ours.consumeRate().Median, ours.produceRate().Median
	ocpu := cpuMedian(ours.Consume)
	fmt.Fprintf(b, "\n### Against ours\n\nThroughput: ours ÷ theirs (above 1: ours is faster). CPU per message and latency: theirs ÷ ours (above 1: ours is cheaper or sooner).\n\n")
	fmt.Fprintf(b, "| system | consume msgs/s | produce msgs/s | consume CPU µs/msg | latency p50 | latency p99 |\n|---|---|---|---|---|---|\n")
	oursLat := findLatency(res.Latency, systems.Ours)
	for _, t := range res.Throughput {
		if t.System == systems.Ours || t.System == oursDefaults || len(t.Consume) == 0 {
			continue
		}
		p50, p99 := "–", "–"
		if l := findLatency(res.Latency, t.System); l != nil && oursLat != nil {
			p50 = fmtRatio(l.over(runP50).Median / oursLat.over(runP50).Median)
			p99 = fmtRatio(latencyP99(*l) / latencyP99(*oursLat))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", label(t.System),
			fmtRatio(oc/t.consumeRate().Median), fmtRatio(op/t.produceRate().Median),
			fmtRatio(cpuMedian(t.Consume)/ocpu), p50, p99)
	}
}

func findLatency(all []Latency, system string) *Latency {
	for i := range all {
		if all[i].System == system {
			return &all[i]
		}
	}
	return nil
}

func renderLatency(b *strings.Builder, res *Results, chart bool) {
	o := res.Options
	fmt.Fprintf(b, "\n## Latency at a fixed offered load\n\n")
	fmt.Fprintf(b, "%s msgs/s offered for %s per system by %d sending goroutines in one process, each message sent alone (ours: `Publish`; bare: `XADD`; asynq: `Enqueue`; Watermill: `Publish`) with its send time in the payload; a consumer in another process records the time from that clock read to the start of the handler. Same settings as the throughput phase.\n\n",
		fmtInt(o.LatencyRate), o.LatencyDuration, o.LatencySenders)
	if chart {
		fmt.Fprintf(b, "![latency distribution](latency.png)\n\n")
	}
	fmt.Fprintf(b, "Each system ran %d times, interleaved with the others (run 1 of each, then run 2 of each, ...); each column is the median of its runs, with the lowest and highest where they tell how much the runs moved, and \"messages\" counts all its runs' (a run that failed is listed among the failures at the top, and counts in no column). The chart puts every run's latencies together.\n\n", o.Runs)
	fmt.Fprintf(b, "| system | sent msgs/s | messages | p50 | p99 | p99.9 | max | consumer CPU µs/msg | done after the last send |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range res.Latency {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label(l.System), fmtInt(l.over(runSentRate).Median), fmtInt(float64(l.Count)),
			fmtDuration(time.Duration(l.over(runP50).Median)), fmtSpread(l.over(runP99), fmtNanos), fmtDuration(time.Duration(l.over(runP999).Median)),
			fmtDuration(time.Duration(l.over(runMax).Median)), fmtSpread(l.over(runCPUPerMsg), fmtMicros), fmtDrain(time.Duration(l.over(runDrain).Median)))
	}
	fmt.Fprintf(b, "\n\"Done after the last send\": how long the consumer took, after the last send returned, to handle and acknowledge the rest (both processes read the same clock). Much more than the p50 means the system could not keep up with the offered load on this machine and a queue built up; its latency is then mostly that queue.\n")
	var late []string
	for _, l := range res.Latency {
		if n := l.over(runSendLate); n.Max > 0 {
			late = append(late, fmt.Sprintf("%s %s (%s–%s)", label(l.System), fmtInt(n.Median), fmtInt(n.Min), fmtInt(n.Max)))
		}
	}
	if len(late) > 0 {
		fmt.Fprintf(b, "\nMessages sent more than 1 ms after they were due (the senders fell behind, so the load came in bursts), median (min–max) of the runs: %s.\n", strings.Join(late, ", "))
	}
	fmt.Fprintf(b, "\nasynq polls its queues and sleeps about a second (`TaskCheckInterval`, default 1 s, with jitter) whenever it finds them empty; streamworker, the bare loop and Watermill block in `XREADGROUP`, so Redis hands them a message the moment it arrives.\n")
}

func renderGrowth(b *strings.Builder, res *Results) {
	g := res.Growth
	if len(g.Concurrency)+len(g.Payload)+len(g.Backlog)+len(g.BacklogSkipped) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## How ours' cost grows\n\nOne run per row; the other settings as in the throughput phase. Redis memory: `used_memory` with the messages stored, before consuming.\n")
	if len(g.Concurrency) > 0 {
		fmt.Fprintf(b, "\n### Concurrency\n\nA backlog filled by the harness (pipelined XADD), consumed with `WORKER_CONCURRENCY` = N, `WORKER_FETCH_COUNT` = %d.\n\n", res.Options.OursFetch)
		fmt.Fprintf(b, "| concurrency | messages | consume msgs/s | CPU µs/msg | Redis CPU µs/msg | worker peak RSS | Redis memory |\n|---|---|---|---|---|---|---|\n")
		for _, r := range g.Concurrency {
			fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %s |\n", r.Param, fmtInt(float64(r.Consume.N)), fmtInt(r.Consume.Rate()),
				fmtMicros(r.Consume.CPUPerMsg()), fmtMicros(r.Consume.RedisCPUPerMsg()), fmtMiB(float64(r.Consume.PeakRSS)), fmtBytes(r.RedisMemory))
		}
	}
	if len(g.Payload) > 0 {
		fmt.Fprintf(b, "\n### Payload size\n\n`PublishBatch` then the worker; %s messages per row, fewer where they would hold more than %d MiB.\n\n", fmtInt(float64(res.Options.SweepMsgs)), res.Options.SweepMiB)
		fmt.Fprintf(b, "| payload | messages | produce msgs/s | produce MiB/s | consume msgs/s | consume MiB/s | worker CPU µs/msg | producer / worker peak RSS | Redis memory |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range g.Payload {
			var prate, pmib, prss float64
			if r.Produce != nil {
				prate, prss = r.Produce.Rate(), float64(r.Produce.PeakRSS)
				pmib = prate * float64(r.Param) / (1 << 20)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %.1f | %s | %.1f | %s | %s / %s | %s |\n", fmtBytes(int64(r.Param)), fmtInt(float64(r.Consume.N)),
				fmtInt(prate), pmib, fmtInt(r.Consume.Rate()), r.Consume.Rate()*float64(r.Param)/(1<<20),
				fmtMicros(r.Consume.CPUPerMsg()), fmtMiB(prss), fmtMiB(float64(r.Consume.PeakRSS)), fmtBytes(r.RedisMemory))
		}
	}
	if len(g.Backlog)+len(g.BacklogSkipped) > 0 {
		fmt.Fprintf(b, "\n### Backlog\n\nA stream of N entries filled by the harness (pipelined XADD, 1000 per round trip), then consumed whole by the worker.\n\n")
		fmt.Fprintf(b, "| backlog | fill time | Redis memory | consume msgs/s | CPU µs/msg | Redis CPU µs/msg | worker peak RSS |\n|---|---|---|---|---|---|---|\n")
		for _, r := range g.Backlog {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", fmtCount(r.Param), r.Load.Round(10*time.Millisecond), fmtBytes(r.RedisMemory),
				fmtInt(r.Consume.Rate()), fmtMicros(r.Consume.CPUPerMsg()), fmtMicros(r.Consume.RedisCPUPerMsg()), fmtMiB(float64(r.Consume.PeakRSS)))
		}
		for _, s := range g.BacklogSkipped {
			fmt.Fprintf(b, "| %s | skipped: above `-max-backlog` %s | | | | | |\n", fmtCount(s), fmtCount(res.Options.MaxBacklog))
		}
	}
}

func renderMemory(b *strings.Builder, res *Results) {
	if len(res.Memory) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Redis memory per stored event\n\n")
	fmt.Fprintf(b, "%s events of %d bytes published with `PublishBatch` into an empty Redis; `MEMORY USAGE <stream> SAMPLES 0` counts every node. A stream keeps acknowledged entries until it is trimmed: `producer.Options.MaxLen` (XADD `MAXLEN ~`) is what bounds it.\n\n",
		fmtInt(float64(res.Options.MemoryEvents)), res.Options.Payload)
	fmt.Fprintf(b, "| trimming | entries kept | MEMORY USAGE | bytes per kept entry | bytes per published event | Redis used_memory growth | produce msgs/s | producer CPU µs/msg |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range res.Memory {
		trim := "none"
		if m.MaxLen > 0 {
			trim = "MAXLEN ~ " + fmtCount(int(m.MaxLen))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", trim, fmtInt(float64(m.Entries)), fmtBytes(m.MemoryUsage),
			fmtInt(m.PerEntry), fmtInt(m.PerPublished), fmtBytes(m.UsedMemory), fmtInt(m.Produce.Rate()), fmtMicros(m.Produce.CPUPerMsg()))
	}
}

// fmtDrain is LatencyRun.Drain: "none" when the consumer was done before the
// last send call had its reply.
func fmtDrain(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return fmtDuration(d)
}

// fmtRange is a summary of counts: the median (min–max).
func fmtRange(s summary) string { return fmtSpread(s, fmtInt) }

// fmtSpread is a summary, each value written by f: the median, bold, and
// the lowest and highest when they differ.
func fmtSpread(s summary, f func(float64) string) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	if s.Max == s.Min {
		return "**" + f(s.Median) + "**"
	}
	return fmt.Sprintf("**%s** (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// fmtNanos writes v, ns, as a duration.
func fmtNanos(v float64) string { return fmtDuration(time.Duration(v)) }

// fmtInt writes v rounded, with thousands separators.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// fmtCount writes a round count short: 10k, 5M.
func fmtCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return fmtInt(float64(n))
}

func fmtMicros(v float64) string {
	if v < 0 || math.IsNaN(v) {
		return "–"
	}
	return sig3(v)
}

func fmtMiB(v float64) string {
	if v <= 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", v/(1<<20))
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return sig3(v) + "×"
}

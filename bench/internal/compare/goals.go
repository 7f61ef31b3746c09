package compare

import (
	"fmt"
	"math"
	"strings"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// goal is one target the harness checks: met, not met, or — with no
// target — a number the report only shows.
type goal struct {
	what, target string
	measured     float64
	show         func(float64) string
	met          bool
	info         bool // no target: measured only
	// spread says how far apart the runs of the two sides were against
	// the target (spreadWhy), and verdict where the target sits among them;
	// "" when the goal does not compare runs. A target met while its runs
	// span it is met within the noise: spread is then its line; a target
	// not met has spread, then why, as its line.
	spread  string
	verdict spreadVerdict
	// why, for a target not met, says from this run's numbers what held it
	// back and what would reach it, after spread; "" when the report has
	// no more to say than its phase's table.
	why string
}

// withSpread sets g's spread and verdict: ours' runs against theirs
// (spreadWhy).
func (g *goal) withSpread(what string, ours summary, other string, theirs summary, show func(float64) string, unit string, high bool, target float64) {
	g.spread, g.verdict = spreadWhy(what, ours, other, theirs, show, unit, high, target)
}

// noisy reports whether g is met only within the noise: its runs span
// the target.
func (g goal) noisy() bool { return g.met && g.verdict == spreadSpans }

func ratioGoal(what, target string, r float64, met bool) goal {
	return goal{what: what, target: target, measured: r, show: fmtRatio, met: met && !math.IsNaN(r)}
}

// bareBest is the better of the bare loop's two variants by f (higher is
// better when high), and its label; NaN when neither ran.
func bareBest(res *Results, f func(Throughput) float64, high bool) (float64, string) {
	best, name := math.NaN(), ""
	for _, sys := range []string{systems.Bare, systems.BarePipelined} {
		t := findThroughput(res.Throughput, sys)
		if t == nil || len(t.Consume) == 0 {
			continue
		}
		v := f(*t)
		if math.IsNaN(best) || (high && v > best) || (!high && v < best) {
			best, name = v, sys
		}
	}
	return best, name
}

// bareLatencyBest is the lower of the bare variants' f in the latency phase.
func bareLatencyBest(res *Results, f func(Latency) float64) (float64, string) {
	best, name := math.NaN(), ""
	for _, sys := range []string{systems.Bare, systems.BarePipelined} {
		l := findLatency(res.Latency, sys)
		if l == nil || len(l.Runs) == 0 {
			continue
		}
		if v := f(*l); math.IsNaN(best) || v < best {
			best, name = v, sys
		}
	}
	return best, name
}

func latencyCPU(l Latency) float64 { return l.over(runCPUPerMsg).Median }
func latencyP99(l Latency) float64 { return l.over(runP99).Median }

func consumeMedian(t Throughput) float64 { return t.consumeRate().Median }
func consumeCPU(t Throughput) float64    { return cpuMedian(t.Consume) }
func consumeCPUs(t Throughput) summary {
	return summarize(each(t.Consume, Measurement.CPUPerMsg))
}

// goals are the targets the results have numbers for: this round's first,
// then the earlier ones.
func goals(res *Results) []goal {
	var gs []goal
	o := res.Options
	bareRate, bareName := bareBest(res, consumeMedian, true)
	for _, e := range []struct {
		name, what string
		min        float64
	}{
		{systems.Ours, fmt.Sprintf("consume msgs/s at the README's settings (`WORKER_CONCURRENCY`=%d), ours ÷ the better bare loop", o.OursConcurrency), 1.1},
		{oursDefaults, "consume msgs/s at the daemon's defaults, ours ÷ the better bare loop", 0.9},
	} {
		t := findThroughput(res.Throughput, e.name)
		if t == nil || len(t.Consume) == 0 || bareName == "" {
			continue
		}
		r := consumeMedian(*t) / bareRate
		g := ratioGoal(e.what+" ("+label(bareName)+")", fmt.Sprintf("≥ %.2g", e.min), r, r >= e.min)
		bare := *findThroughput(res.Throughput, bareName)
		g.withSpread("consume", t.consumeRate(), bare.System, bare.consumeRate(), fmtInt, " msgs/s", true, e.min)
		g.why = consumeWhy(*t, bare)
		gs = append(gs, g)
	}
	bareCPU, bareCPUName := bareBest(res, consumeCPU, false)
	for _, name := range []string{systems.Ours, oursDefaults} {
		t := findThroughput(res.Throughput, name)
		if t == nil || len(t.Consume) == 0 || bareCPUName == "" {
			continue
		}
		r := consumeCPU(*t) / bareCPU
		g := ratioGoal(fmt.Sprintf("worker CPU per message consuming, %s ÷ the cheaper bare loop (%s)", label(name), label(bareCPUName)), "≤ 1", r, r <= 1)
		g.withSpread("CPU per message", consumeCPUs(*t), bareCPUName, consumeCPUs(*findThroughput(res.Throughput, bareCPUName)), fmtMicros, " µs", false, 1)
		g.why = cpuProfileWhy
		gs = append(gs, g)
	}
	latCPU, latCPUName := bareLatencyBest(res, latencyCPU)
	latP99, latP99Name := bareLatencyBest(res, latencyP99)
	for _, name := range []string{systems.Ours, oursDefaults} {
		l := findLatency(res.Latency, name)
		if l == nil || len(l.Runs) == 0 {
			continue
		}
		if latCPUName != "" {
			r := latencyCPU(*l) / latCPU
			g := ratioGoal(fmt.Sprintf("low load (%s msgs/s): consumer CPU per message, %s ÷ the cheaper bare loop (%s)", fmtInt(o.LatencyRate), label(name), label(latCPUName)), "≤ 1.2", r, r <= 1.2)
			g.withSpread("consumer CPU per message", l.over(runCPUPerMsg), latCPUName, findLatency(res.Latency, latCPUName).over(runCPUPerMsg), fmtMicros, " µs", false, 1.2)
			g.why = " At this rate a message's CPU is mostly the wake-ups and system calls around it, not its own work: " + docsBench + " (low load) has what was measured of them." +
				" What would reach it on a loaded machine too: fewer hand-offs between goroutines and threads around each round trip, and fewer allocations on the message path."
			gs = append(gs, g)
		}
		if latP99Name != "" {
			r := latencyP99(*l) / latP99
			g := ratioGoal(fmt.Sprintf("low load (%s msgs/s): p99 XADD→handler, %s ÷ the sooner bare loop (%s)", fmtInt(o.LatencyRate), label(name), label(latP99Name)), "≤ 1", r, r <= 1)
			bare := findLatency(res.Latency, latP99Name)
			g.withSpread("p99", l.over(runP99), latP99Name, bare.over(runP99), fmtNanos, "", false, 1)
			g.why = " The latency phase's table has each system's percentiles." + p99Why(*l, *bare, g.verdict)
			gs = append(gs, g)
		}
	}
	ideal := o.ioIdeal()
	for _, sys := range []string{systems.Ours, systems.Asynq, systems.Watermill} {
		w := findWorkload(res.Workloads, PhaseIO, sys)
		if w == nil {
			continue
		}
		r := w.rate().Median / ideal
		what := fmt.Sprintf("I/O-bound handler (%s sleep, %d handlers): %s msgs/s ÷ the ideal %s", o.IOSleep, o.IOConcurrency, label(sys), fmtInt(ideal))
		if sys == systems.Ours {
			gs = append(gs, ratioGoal(what, "≥ 0.9", r, r >= 0.9))
		} else {
			gs = append(gs, goal{what: what, target: "–", measured: r, show: fmtRatio, info: true})
		}
	}
	// The goal is the failure path through S:delayed, as the goal was set;
	// at the defaults such retries wait in place, shown beside it.
	if none, once := findWorkload(res.Workloads, PhaseFailures, failNone), findWorkload(res.Workloads, PhaseFailures, failOnceDelayed); none != nil && once != nil {
		r := once.rate().Median / none.rate().Median
		g := ratioGoal(fmt.Sprintf("failures: consume msgs/s with 1 in %d failing once, retried through S:delayed, ÷ all succeeding", o.FailEvery), "≥ 0.8", r, r >= 0.8)
		g.withSpread(fmt.Sprintf("consume with 1 in %d failing once", o.FailEvery), once.rate(), "all-succeed run", none.rate(), fmtInt, " msgs/s", true, 0.8)
		g.why = delayedWhy(o, *none, *once, findWorkload(res.Workloads, PhaseFailures, failOnce), 0.8)
		gs = append(gs, g)
	}
	if none, inPlace := findWorkload(res.Workloads, PhaseFailures, failNone), findWorkload(res.Workloads, PhaseFailures, failOnce); none != nil && inPlace != nil {
		r := inPlace.rate().Median / none.rate().Median
		gs = append(gs, goal{what: "failures: the same at the defaults, the retries waiting in place (WORKER_RETRY_IN_PLACE_MAX=5s), ÷ all succeeding", target: "–", measured: r, show: fmtRatio, info: true})
	}
	if none, once := findWorkload(res.Workloads, PhaseFailures, failAsynqNone), findWorkload(res.Workloads, PhaseFailures, failAsynqOnce); none != nil && once != nil {
		r := once.rate().Median / none.rate().Median
		gs = append(gs, goal{what: fmt.Sprintf("failures: asynq with 1 in %d failing once ÷ all succeeding", o.FailEvery), target: "–", measured: r, show: fmtRatio, info: true})
	}
	if dead := findWorkload(res.Workloads, PhaseFailures, failAsynqDead); dead != nil {
		gs = append(gs, goal{what: "failures: asynq archiving msgs/s (every task fails with SkipRetry)", target: "–", measured: dead.rate().Median,
			show: func(v float64) string { return fmtInt(v) + " msgs/s" }, info: true})
	}
	if dead := findWorkload(res.Workloads, PhaseFailures, failDead); dead != nil {
		gs = append(gs, goal{what: "failures: dead-lettering msgs/s (every message fails permanently)", target: "–", measured: dead.rate().Median,
			show: func(v float64) string { return fmtInt(v) + " msgs/s" }, info: true})
	}
	if plain, keyed := findWorkload(res.Workloads, PhaseOrder, orderNone), findWorkload(res.Workloads, PhaseOrder, orderKeys); plain != nil && keyed != nil {
		r := keyed.rate().Median / plain.rate().Median
		g := ratioGoal(fmt.Sprintf("order: consume msgs/s, %d partitions with %s keys in order ÷ one unordered stream", o.OrderPartitions, fmtInt(float64(o.OrderKeys))), "≥ 0.8", r, r >= 0.8)
		g.withSpread(fmt.Sprintf("consume over %d partitions", o.OrderPartitions), keyed.rate(), "unordered stream", plain.rate(), fmtInt, " msgs/s", true, 0.8)
		g.why = orderWhy(o, *plain, *keyed)
		gs = append(gs, g)
	}
	if p := payloadRow(res, 65536); p != nil {
		if k := payloadRow(res, 1024); k != nil {
			r := payloadMiBs(*p) / payloadMiBs(*k)
			gs = append(gs, ratioGoal("large payloads: consume MiB/s, 64 KiB ÷ 1 KiB", "≥ 0.8", r, r >= 0.8))
		}
		if s := payloadRow(res, 100); s != nil {
			r := float64(p.Consume.PeakRSS) / float64(s.Consume.PeakRSS)
			gs = append(gs, ratioGoal("large payloads: worker peak RSS, 64 KiB ÷ 100 B", "≤ 2", r, r <= 2))
		}
	}
	if ours, pipe := findWorkload(res.Workloads, PhaseCLI, cliOurs), findWorkload(res.Workloads, PhaseCLI, cliPipe); ours != nil && pipe != nil {
		r := ours.rate().Median / pipe.rate().Median
		g := ratioGoal(fmt.Sprintf("producer CLI: `producer send --file` ÷ `redis-cli --pipe`, %s events", fmtInt(float64(o.CLIEvents))), "≥ 0.8", r, r >= 0.8)
		g.withSpread("rate", ours.rate(), "`redis-cli --pipe`", pipe.rate(), fmtInt, " events/s", true, 0.8)
		g.why = cliWhy(*ours, *pipe, res.Machine, 0.8)
		gs = append(gs, g)
	}
	return append(gs, earlierGoals(res)...)
}

// earlierGoals are the targets of the harness's first round.
func earlierGoals(res *Results) []goal {
	ours := findThroughput(res.Throughput, systems.Ours)
	if ours == nil || len(ours.Consume) == 0 {
		return nil
	}
	oc, op := ours.consumeRate().Median, ours.produceRate().Median
	var gs []goal
	if t := findThroughput(res.Throughput, systems.Bare); t != nil && len(t.Produce) > 0 {
		r := op / t.produceRate().Median
		gs = append(gs, ratioGoal("(earlier) produce msgs/s, PublishBatch ÷ bare pipelined XADD", "≥ 0.80", r, r >= 0.80))
	}
	if t := findThroughput(res.Throughput, systems.Asynq); t != nil && len(t.Consume) > 0 {
		r := oc / t.consumeRate().Median
		gs = append(gs, ratioGoal("(earlier) consume msgs/s, ours ÷ asynq", "≥ 10", r, r >= 10))
	}
	if t := findThroughput(res.Throughput, systems.Watermill); t != nil && len(t.Consume) > 0 {
		r := oc / t.consumeRate().Median
		gs = append(gs, ratioGoal("(earlier) consume msgs/s, ours ÷ Watermill", "≥ 5", r, r >= 5))
	}
	cpu := consumeCPU(*ours)
	gs = append(gs, goal{what: "(earlier) worker CPU per message (consume)", target: "≤ 5 µs", measured: cpu, show: func(v float64) string { return fmtMicros(v) + " µs" }, met: cpu <= 5})
	if bl := res.Growth.Backlog; len(bl) >= 2 {
		r := float64(bl[len(bl)-1].Consume.PeakRSS) / float64(bl[0].Consume.PeakRSS)
		what := fmt.Sprintf("(earlier) worker peak RSS, backlog %s ÷ backlog %s", fmtCount(bl[len(bl)-1].Param), fmtCount(bl[0].Param))
		gs = append(gs, ratioGoal(what, "≤ 1.5 (flat)", r, r <= 1.5))
	}
	return gs
}

func payloadRow(res *Results, size int) *GrowthRow {
	for i := range res.Growth.Payload {
		if res.Growth.Payload[i].Param == size {
			return &res.Growth.Payload[i]
		}
	}
	return nil
}

func payloadMiBs(r GrowthRow) float64 { return r.Consume.Rate() * float64(r.Param) / (1 << 20) }

// renderGoals writes every goal as a row: goal, target, measured, met.
func renderGoals(b *strings.Builder, res *Results) {
	gs := goals(res)
	if len(gs) == 0 {
		return
	}
	met, noisy, targets := 0, 0, 0
	for _, g := range gs {
		if !g.info {
			targets++
			if g.met {
				met++
				if g.noisy() {
					noisy++
				}
			}
		}
	}
	fmt.Fprintf(b, "\n## Goals\n\n%d of %d targets met in this run", met, targets)
	if noisy > 0 {
		fmt.Fprintf(b, ", %d of them within the noise (the runs span the target: below)", noisy)
	}
	fmt.Fprintf(b, ". Ratios of medians; each goal's phase below has the runs.\n\n")
	fmt.Fprintf(b, "| goal | target | measured | met |\n|---|---|---|---|\n")
	for _, g := range gs {
		m := "not met"
		switch {
		case g.info:
			m = "measured"
		case g.noisy():
			m = "met, within the noise"
		case g.met:
			m = "met"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", g.what, g.target, g.show(g.measured), m)
	}
	if noisy > 0 {
		fmt.Fprintf(b, "\n### Met within the noise: the runs span the target\n\n")
		for _, g := range gs {
			if g.noisy() {
				fmt.Fprintf(b, "- **%s: %s.** %s\n", g.what, g.show(g.measured), g.spread)
			}
		}
	}
	if met == targets {
		return
	}
	fmt.Fprintf(b, "\n### Where a target is not met: why, and what would reach it\n\n")
	for _, g := range gs {
		if g.info || g.met {
			continue
		}
		why := strings.TrimSpace(g.spread + g.why) // why opens with a space, to follow spread
		if why == "" {
			why = "Its phase's table below has the runs; " + docsBench + " has what was measured of it before."
		}
		fmt.Fprintf(b, "- **%s: %s.** %s\n", g.what, g.show(g.measured), why)
	}
}

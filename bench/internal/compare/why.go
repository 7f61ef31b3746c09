package compare

import (
	"fmt"
	"math"
	"strings"
)

// The lines under the goals table on a target not met: what this run's
// numbers say held it back, and what would reach it.

// docsBench links, from the report, the page with the measurements of
// earlier runs.
const docsBench = "[docs/bench.md](../../docs/bench.md)"

// cpuProfileWhy points at the report's CPU profile.
const cpuProfileWhy = " Where the worker's CPU goes is in the profile at the end of this report; " + docsBench + " has the ratio over earlier runs and what was measured of it."

// spreadVerdict is where a target sits among the ratios of single runs.
type spreadVerdict int

const (
	spreadUnknown spreadVerdict = iota // a ratio of runs is not a number: a side's runs missing, or the other side's zero
	spreadOneRun                       // neither side's runs differ: no measure of the noise
	spreadSpans                        // some pairs of runs meet the target, some miss it
	spreadMeets                        // every pair of runs meets it
	spreadMisses                       // every pair of runs misses it
)

// spread returns the ratios of single runs, ours ÷ other's, at both ends:
// ours' best run against the other's worst, and ours' worst against the
// other's best; and where target sits among them. Lower is better unless
// high.
func spread(ours, theirs summary, high bool, target float64) (best, worst float64, v spreadVerdict) {
	best, worst = ours.Min/theirs.Max, ours.Max/theirs.Min // lower is better
	if high {
		best, worst = ours.Max/theirs.Min, ours.Min/theirs.Max
	}
	switch {
	case math.IsNaN(best) || math.IsNaN(worst) || math.IsInf(best, 0) || math.IsInf(worst, 0):
		return best, worst, spreadUnknown
	case ours.Min == ours.Max && theirs.Min == theirs.Max:
		return best, worst, spreadOneRun
	}
	meets := func(r float64) bool {
		if high {
			return r >= target
		}
		return r <= target
	}
	switch {
	case meets(best) != meets(worst):
		return best, worst, spreadSpans
	case meets(worst):
		return best, worst, spreadMeets
	}
	return best, worst, spreadMisses
}

// spreadWhy says how a ratio of medians, ours ÷ other's, sits among the
// ratios of single runs (spread): either the runs span target (this run
// cannot tell met from not met) or every pair of runs meets it, or misses
// it; and returns spread's verdict with it. Lower is better unless high;
// show writes one value, unit after it.
func spreadWhy(what string, ours summary, other string, theirs summary, show func(float64) string, unit string, high bool, target float64) (string, spreadVerdict) {
	head := fmt.Sprintf("Ours' %s was %s%s, the %s's %s%s (median, min–max of the runs)", what, fmtSpread(ours, show), unit, label(other), fmtSpread(theirs, show), unit)
	best, worst, v := spread(ours, theirs, high, target)
	var verdict string
	switch v {
	case spreadUnknown:
		return head + ".", v
	case spreadOneRun:
		return head + ": the runs of each side did not differ (one run each?), so this run does not measure the noise.", v
	case spreadSpans:
		verdict = "so the runs alone span the target: this run cannot tell met from not met."
	case spreadMeets:
		verdict = "so every pair of runs meets the target: the margin is more than the noise."
	default:
		verdict = "so every pair of runs misses the target: the gap is more than the noise."
	}
	return fmt.Sprintf("%s: ours' best run ÷ its worst = %s, ours' worst ÷ its best = %s, %s", head, fmtRatio(best), fmtRatio(worst), verdict), v
}

// consumeWhy says, after the runs' spread, where each side's CPU went
// when ours consumed slower than the target.
func consumeWhy(ours, bare Throughput) string {
	return fmt.Sprintf(" Per message, the worker took %s µs of CPU against the loop's %s, and Redis %s µs against %s.",
		fmtMicros(consumeCPU(ours)), fmtMicros(consumeCPU(bare)), fmtMicros(redisCPUMedian(ours.Consume)), fmtMicros(redisCPUMedian(bare.Consume))) +
		cpuProfileWhy
}

// delayedWhy says what a retry through S:delayed cost Redis, from its CPU
// and its time per command (the failures phase's table), and how the retry
// in place, measured beside it, did against target.
func delayedWhy(o Options, none, delayed Workload, inPlace *Workload, target float64) string {
	var b strings.Builder
	b.WriteString(" Each retry is written to `S:delayed` (the settle script: the copy's `ZADD` and the entry's `XACK`), moved back into the stream (the promote script: decoding the copy, its `XADD`, the `ZREM`) and read a second time.")
	per := float64(o.FailEvery) // messages per failure
	ratio := delayed.rate().Median / none.rate().Median
	if rn, rd := redisCPUMedian(none.Runs), redisCPUMedian(delayed.Runs); rn > 0 && rd > 0 {
		fmt.Fprintf(&b, " Redis's CPU per message went from %s µs all succeeding to %s µs, %s µs per failure at 1 in %d",
			fmtMicros(rn), fmtMicros(rd), fmtMicros((rd-rn)*per), o.FailEvery)
		if allCommands(none) && allCommands(delayed) {
			scripts := (scriptMedian(delayed) - scriptMedian(none)) * per
			read := (commandMedian(delayed, "xreadgroup") - commandMedian(none, "xreadgroup")) * per
			fmt.Fprintf(&b, "; of each failure, `INFO commandstats` puts %s µs in the two scripts, the commands they call included, and ", fmtMicros(scripts))
			if read > 0 {
				fmt.Fprintf(&b, "%s µs in reading the retry again (the failures phase's table)", fmtMicros(read))
			} else { // the runs' XREADGROUP time per message moved less than the retries' reads add
				b.WriteString("nothing that shows in reading the retry again: `XREADGROUP`'s time per message did not rise (the failures phase's table)")
			}
		}
		b.WriteString(".")
		if rd > rn && ratio < 1 {
			fmt.Fprintf(&b, " Redis is one thread that also serves the consume's reads and acknowledgements, so its time on retries is the likely reason the rate fell to %s of all succeeding: its CPU per message rose %s.",
				fmtRatio(ratio), fmtRatio(rd/rn))
		}
	}
	b.WriteString(failureBudget(o, none, delayed, target))
	b.WriteString(" Both scripts already take their entries in batches (a call per stream per batch of failures; a call per promotion pass of up to 500): what is left in them is mostly Lua's call into Redis per entry and its decoding of each copy, cut apart in " +
		docsBench + " (10% failing once), with the changes tried there that did not help.")
	if per := float64(o.FailEvery); per/(per+1) >= target {
		b.WriteString(" What would reach it: a retry that is not a copy (its entry left pending, the delayed set holding a reference to it), run and acknowledged as cheaply as a first delivery; " +
			docsBench + " (10% failing once) has the least each would cost. That changes what `S:delayed` holds, the contract of the retry path.")
	} else {
		fmt.Fprintf(&b, " At 1 in %d failing, even a retry as cheap as a first delivery leaves %s of all succeeding's rate, below the target: nothing in the retry path reaches it.", o.FailEvery, fmtRatio(per/(per+1)))
	}
	if inPlace != nil {
		r := inPlace.rate().Median / none.rate().Median
		verdict := "at or above the target"
		if r < target {
			verdict = "short of the target too, in this run"
		}
		fmt.Fprintf(&b, " At the defaults a retry due soon is not copied at all: it waits in the worker, its entry pending, and runs again there (`WORKER_RETRY_IN_PLACE_MAX`); the same workload ran at %s of all succeeding, %s.", fmtRatio(r), verdict)
	}
	return b.String()
}

// copyCommandsMicros is what the commands of a retry made as a copy cost
// Redis beyond those of a message that succeeds, µs, Lua around them not
// included: the copy's ZADD (0.8), the promotion's XADD (0.8), ZREM (0.2)
// and a share of its ZRANGEBYSCORE (0.1). The entry's XACK is not counted:
// a message that succeeds is acknowledged too. Measured with SLOWLOG on a
// redis-server of its own (docs/bench.md, 10% failing once).
const copyCommandsMicros = 1.9

// failureBudget says, from the failures phase's CPU, what a failure may
// cost for the rate to reach target, what it cost, and what a retry made
// as a copy cannot do without; "" when the run lacks a CPU figure. The
// rate follows the CPU per message, the worker's and Redis's together, as
// long as the two keep as many cores busy either way.
func failureBudget(o Options, none, delayed Workload, target float64) string {
	wn, wd := cpuMedian(none.Runs), cpuMedian(delayed.Runs)
	rn, rd := redisCPUMedian(none.Runs), redisCPUMedian(delayed.Runs)
	if !(wn > 0 && wd > 0 && rn > 0 && rd > 0) {
		return ""
	}
	per := float64(o.FailEvery)
	all := wn + rn
	budget := (all/target - all) * per
	return fmt.Sprintf(" All succeeding took %s µs of CPU per message, the worker's and Redis's together; for %s of its rate at the same overlap, a failure may cost %s µs (1 in %d), and it cost %s (the worker %s, Redis %s)."+
		" A retry made as a copy cannot do without its second delivery (about a message's %s µs) and the copy's commands (about %s µs of Redis, %s), %s µs before any Lua of the two scripts or the worker's work to make the copy.",
		fmtMicros(all), fmtRatio(target), fmtMicros(budget), o.FailEvery, fmtSigned((wd+rd-all)*per), fmtSigned((wd-wn)*per), fmtSigned((rd-rn)*per),
		fmtMicros(all), fmtMicros(copyCommandsMicros), docsBench, fmtMicros(all+copyCommandsMicros))
}

// fmtSigned is fmtMicros of a difference, which the runs' noise can make
// negative.
func fmtSigned(v float64) string {
	if v < 0 {
		return "−" + fmtMicros(-v)
	}
	return fmtMicros(v)
}

// orderWhy says what a partitioned stream's consume ratio below target is
// made of: how far apart the runs were, each side's CPU per message, and
// how the two take their messages.
func orderWhy(o Options, plain, keyed Workload) string {
	var b strings.Builder
	fmt.Fprintf(&b, " Per message, the worker took %s µs of CPU against the unordered stream's %s", fmtMicros(cpuMedian(keyed.Runs)), fmtMicros(cpuMedian(plain.Runs)))
	if rk, rp := redisCPUMedian(keyed.Runs), redisCPUMedian(plain.Runs); rk > 0 && rp > 0 {
		fmt.Fprintf(&b, ", and Redis %s µs against %s", fmtMicros(rk), fmtMicros(rp))
	}
	b.WriteString(".")
	fmt.Fprintf(&b, " Both run their batches of %d-byte entries on their fetchers (the handlers measure fast), the `XACK`s sent with the next read.", o.Payload)
	fmt.Fprintf(&b, " On top of that, a partition's messages pass their key's order gate, its entries carry the key (two more bulk strings to read, an allocation each in go-redis's raw reader), the handler checks each key's order,"+
		" and %d fetchers, each a read and an `XACK` of its own per batch, share the handler slots, where the unordered stream has two.", o.OrderPartitions)
	b.WriteString(" Not built yet, the likely way to reach it: one read, and one `XACK`, for all the partitions a worker owns on one Redis (an `XREADGROUP` of several streams); " +
		docsBench + " has what was measured of each part.")
	return b.String()
}

// cliWhy says what a producer CLI's rate below target is made of: how far
// apart the runs were, the CPU each side took per event, the rate the
// producer's CPU allows on the one P it runs on (cmd/producer: GOMAXPROCS=1
// unless the environment sets it), and the cores the producer and Redis
// would keep busy together; then which of those would reach the target.
func cliWhy(ours, pipe Workload, m Machine, target float64) string {
	var b strings.Builder
	co, want := cpuMedian(ours.Runs), target*pipe.rate().Median // µs per event; events/s
	if !(co > 0) || !(want > 0) || math.IsInf(want, 0) {
		return " " + docsBench + " has what was measured of it before."
	}
	fmt.Fprintf(&b, " Per event the producer took %s µs of CPU", fmtMicros(co))
	if cp := cpuMedian(pipe.Runs); cp > 0 {
		fmt.Fprintf(&b, " against `redis-cli`'s %s: it decodes and checks each JSON line, where `redis-cli` passes on commands written in RESP already", fmtMicros(cp))
	}
	b.WriteString(".")
	oneP, allows := onOneP(m.GOMAXPROCS), 1e6/co
	if oneP {
		side := "above"
		if allows < want {
			side = "below"
		}
		fmt.Fprintf(&b, " It runs on one P (`GOMAXPROCS`=1): at its median CPU per event that allows about %s events/s, %s the %s events/s of %s of `redis-cli`'s median rate.",
			fmtInt(allows), side, fmtInt(want), fmtRatio(target))
	}
	busy := -1.0 // cores the producer and Redis keep busy at want; -1: unknown
	if ro, rp := redisCPUMedian(ours.Runs), redisCPUMedian(pipe.Runs); ro > 0 && rp > 0 {
		busy = (co + ro) * want / 1e6
		fmt.Fprintf(&b, " Redis took %s µs per event against %s; at %s events/s the producer and Redis would keep %.2f cores busy", fmtMicros(ro), fmtMicros(rp), fmtInt(want), busy)
		if m.CPUs > 0 {
			fmt.Fprintf(&b, ", of this machine's %d", m.CPUs)
		}
		b.WriteString(".")
	}
	var reach []string
	if oneP && allows < want {
		reach = append(reach, fmt.Sprintf("less CPU per event in the producer, at most %s µs at %s events/s (its JSON decoding, go-redis's work per command)", fmtMicros(1e6/want), fmtInt(want)))
	}
	coresKnown := busy >= 0 && m.CPUs > 0
	if coresKnown && busy > float64(m.CPUs) {
		reach = append(reach, "less CPU per event, the producer's and Redis's together, or more cores")
	}
	switch {
	case len(reach) > 0:
		b.WriteString(" What would reach it: " + strings.Join(reach, "; and ") + "; ")
	case coresKnown && oneP:
		b.WriteString(" Neither the producer's CPU on its one P nor the cores hold it back in these numbers; ")
	case coresKnown:
		b.WriteString(" The cores do not hold it back in these numbers; ")
	default:
		b.WriteString(" These numbers do not say what held it back; ")
	}
	return b.String() + docsBench + " has what was measured of it before."
}

// onOneP reports whether cmd/producer runs on one P with the environment's
// GOMAXPROCS, env: unset (it then sets one itself) or 1.
func onOneP(env string) bool {
	env = strings.TrimSpace(env)
	return env == "" || env == "1"
}

// p99Why adds to a low-load p99 goal's line what this run says of it:
// when the runs span the target, only that a quieter machine would tell;
// when every pair misses and every run of ours spent more consumer CPU per
// message than every run of the bare loop, that CPU (mostly wake-ups and
// system calls at this rate) as the likely reason, and what would cut it;
// when its CPU runs were not all dearer, that the CPU does not explain it.
func p99Why(ours, bare Latency, v spreadVerdict) string {
	switch {
	case v == spreadSpans:
		return " Only the runs' spread is measured here, not what made the slow ones slow: a quieter machine would tell met from not met; " + docsBench + " (low load) has the ratio over earlier runs."
	case v != spreadMisses:
		return ""
	}
	oc, bc := latencyCPU(ours), latencyCPU(bare)
	if !(oc > 0) || !(bc > 0) {
		return ""
	}
	if oursCPU, bareCPU := ours.over(runCPUPerMsg), bare.over(runCPUPerMsg); !(oursCPU.Min > bareCPU.Max) {
		return fmt.Sprintf(" Ours took %s µs of consumer CPU per message against the loop's %s, its runs not all dearer than the loop's: the CPU does not explain the tail in this run; %s (low load) has the ratio over earlier runs.", fmtMicros(oc), fmtMicros(bc), docsBench)
	}
	return fmt.Sprintf(" Ours also took %s µs of consumer CPU per message against the loop's %s, each of its runs dearer than each of the loop's, at this rate mostly the wake-ups and system calls around each message (%s, low load): each is a turn on a core the senders and Redis share, the likely reason its tail is longer."+
		" What would reach it: what would cut that CPU, fewer hand-offs between goroutines and threads around each round trip.", fmtMicros(oc), fmtMicros(bc), docsBench)
}

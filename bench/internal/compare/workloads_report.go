package compare

import (
	"fmt"
	"math"
	"strings"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// renderWorkloads writes the io, failures, order and producer-cli phases:
// one table each, every variant's median (min–max) of its interleaved runs.
func renderWorkloads(b *strings.Builder, res *Results, chart bool) {
	o := res.Options
	intro := map[string]string{
		PhaseIO: fmt.Sprintf("A backlog consumed by a handler that sleeps %s per message (a `time.Sleep` standing for a database call) with %d handlers at once: the ideal is %s msgs/s. "+
			"Streamworker at the daemon's defaults but `WORKER_CONCURRENCY`=%d, %s messages per run; asynq with %d workers and Watermill with %d subscriptions, %s messages per run (they are slower, and the rate is what counts). "+
			"The bare loop runs one handler at a time (%s msgs/s at best), so it is left out.",
			o.IOSleep, o.IOConcurrency, fmtInt(o.ioIdeal()), o.IOConcurrency, fmtInt(float64(o.IOMsgs)), o.IOConcurrency, o.IOConcurrency, fmtInt(float64(o.IOPeerMsgs)), fmtInt(1/o.IOSleep.Seconds())),
		PhaseFailures: fmt.Sprintf("Streamworker at the daemon's defaults consumes %s messages four ways. Retries wait `WORKER_RETRY_BASE`=`WORKER_RETRY_MAX`=%s and `WORKER_PROMOTE_INTERVAL`=%s (the daemon's defaults are 1s and 250ms: with them the run would mostly measure the backoff), so the numbers are the cost of the failure path. At the defaults a retry due within `WORKER_RETRY_IN_PLACE_MAX` (5s) waits in the worker, its entry pending, and runs again there: the cost is the second run. Through `S:delayed` (`WORKER_RETRY_IN_PLACE_MAX`=0, as every retry due later goes) it is the retry envelope in `S:delayed`, its promotion back into the stream and the second delivery; and for dead letters the copy into `S:dlq`. "+
			"asynq (%d workers, %s messages per run) runs the same three ways with its retry delay (`RetryDelayFunc`) and its forwarder's poll (`DelayedTaskCheckInterval`, 5s by default) set to the same values, its dead letters being archived tasks (`SkipRetry`); its rows are relative to its own all-succeed row.",
			fmtInt(float64(o.Msgs)), o.FailRetryBase, o.FailPromoteInterval, o.AsynqConcurrency, fmtInt(float64(o.FailPeerMsgs))),
		PhaseOrder: fmt.Sprintf("Streamworker at the daemon's defaults consumes %s messages from one stream without keys, and from %d partitions with %s partition keys (`PublishBatch` with `Options.Partitions`, `Event.Key`), where the messages of a key run one at a time in the order they were added; the handler checks that order and the run fails on any breach. One Redis.",
			fmtInt(float64(o.Msgs)), o.OrderPartitions, fmtInt(float64(o.OrderKeys))),
		PhaseCLI: fmt.Sprintf("%s events of %d bytes into an empty Redis, each run the whole process from start to exit: the `producer` binary (built from this commit) reading a JSONL file, against `redis-cli --pipe` reading the same XADD commands in RESP (written by the harness). CPU is the process's own; peak RSS its `ru_maxrss`.",
			fmtInt(float64(o.CLIEvents)), o.Payload),
	}
	titles := map[string]string{
		PhaseIO:       "I/O-bound handler",
		PhaseFailures: "Failures: retries and dead letters",
		PhaseOrder:    "Per-key order on a partitioned stream",
		PhaseCLI:      "The producer CLI",
	}
	first := true
	for _, phase := range []string{PhaseIO, PhaseFailures, PhaseOrder, PhaseCLI} {
		var ws []Workload
		for _, w := range res.Workloads {
			if w.Phase == phase {
				ws = append(ws, w)
			}
		}
		if len(ws) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n## %s\n\n%s %d runs per variant, interleaved; median (min–max).\n\n", titles[phase], intro[phase], o.Runs)
		if first && chart {
			fmt.Fprintf(b, "![the workload phases](workloads.png)\n\n")
			first = false
		}
		rel := map[string]string{PhaseIO: "÷ ideal", PhaseCLI: "÷ redis-cli"}[phase]
		if rel == "" {
			rel = "÷ the system's first row"
		}
		fmt.Fprintf(b, "| variant | settings | messages | msgs/s | %s | CPU µs/msg | Redis CPU µs/msg | peak RSS |\n|---|---|---|---|---|---|---|---|\n", rel)
		for _, w := range ws {
			base := workloadReference(o, res.Workloads, w)
			if len(w.Runs) == 0 {
				fmt.Fprintf(b, "| %s | %s | | failed | | | | |\n", w.Name, w.Detail)
				continue
			}
			name := w.Name
			if phase == PhaseIO {
				name = label(w.System)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, w.Detail, fmtInt(float64(w.Runs[0].N)), fmtRange(w.rate()),
				fmtRatio(w.rate().Median/base), fmtMicros(cpuMedian(w.Runs)),
				fmtMicros(redisCPUMedian(w.Runs)), fmtMiB(summarize(each(w.Runs, peakRSS)).Median))
		}
		if phase == PhaseFailures {
			renderCommandTable(b, ws, systems.Ours)
		}
	}
}

// workloadReference is what a workload variant's rate is compared with: the
// ideal rate in the io phase, redis-cli in the producer-cli phase, and else
// the first variant of the same system in the phase.
func workloadReference(o Options, all []Workload, w Workload) float64 {
	switch w.Phase {
	case PhaseIO:
		return o.ioIdeal()
	case PhaseCLI:
		if r := findWorkload(all, PhaseCLI, cliPipe); r != nil {
			return r.rate().Median
		}
		return math.NaN()
	}
	for _, x := range all {
		if x.Phase == w.Phase && x.System == w.System && len(x.Runs) > 0 {
			return x.rate().Median
		}
	}
	return math.NaN()
}

package compare

import (
	"math"
	"slices"
	"time"
)

// Results is everything one harness run measured; results.json is this.
type Results struct {
	Command    string
	Options    Options
	Machine    Machine
	Started    time.Time
	Finished   time.Time
	PhaseTimes []PhaseTime

	Throughput []Throughput // per system, in Options.Systems order
	Latency    []Latency    // per system
	Workloads  []Workload   // the io, failures, order and producer-cli phases
	Growth     Growth       // ours only
	Memory     []StoredMemory
	Profile    *Profile // ours at the daemon's defaults, profiled
	Failures   []string
}

// PhaseTime is how long a phase took, wall clock.
type PhaseTime struct {
	Phase string
	Took  time.Duration
}

// Throughput is one system's produce and consume runs.
type Throughput struct {
	System  string
	Produce []Measurement
	Consume []Measurement
	// StoredBytes is Redis's used_memory after each produce, less before,
	// per message: what one waiting message costs Redis in that system's
	// layout.
	StoredBytes []float64
}

// Latency is one system's XADD-to-handler latencies at a fixed offered
// load, over its runs (Options.Runs, interleaved with the other systems').
type Latency struct {
	System      string
	OfferedRate float64 // messages per second asked for
	Runs        []LatencyRun
	// Count is how many latencies all runs recorded; Quantiles samples
	// their distribution together (every 10th percentile, then 99, 99.9,
	// ... and the maximum), for results.json and the chart.
	Count     int
	Quantiles []Quantile
	// Sorted is every run's latencies, ns, ascending: in memory only, for
	// the chart.
	Sorted []int64 `json:"-"`
}

// LatencyRun is one run of the latency phase.
type LatencyRun struct {
	SentRate float64     // messages per second the senders achieved
	SendLate int64       // messages sent more than 1ms after they were due
	Consumer Measurement // the consuming child, from ready to the last acknowledgement
	Producer Measurement // the sending child
	// Drain is how long the consumer took, after the last send returned,
	// to handle and acknowledge every message.
	Drain time.Duration
	Took  time.Duration
	// The run's own percentiles (nearest rank).
	P50, P99, P999, Max time.Duration
}

// over summarizes f over the runs: the goals and tables compare medians.
func (l Latency) over(f func(LatencyRun) float64) summary {
	vs := make([]float64, len(l.Runs))
	for i, r := range l.Runs {
		vs[i] = f(r)
	}
	return summarize(vs)
}

func runP50(r LatencyRun) float64       { return float64(r.P50) }
func runP99(r LatencyRun) float64       { return float64(r.P99) }
func runP999(r LatencyRun) float64      { return float64(r.P999) }
func runMax(r LatencyRun) float64       { return float64(r.Max) }
func runCPUPerMsg(r LatencyRun) float64 { return r.Consumer.CPUPerMsg() }
func runSentRate(r LatencyRun) float64  { return r.SentRate }
func runDrain(r LatencyRun) float64     { return float64(r.Drain) }
func runSendLate(r LatencyRun) float64  { return float64(r.SendLate) }

// Quantile is the latency at one quantile.
type Quantile struct {
	Q       float64
	Latency time.Duration
}

// summarizeLatency fills Count and Quantiles from Sorted, which it sorts.
func (l *Latency) summarizeLatency() {
	slices.Sort(l.Sorted)
	l.Count = len(l.Sorted)
	l.Quantiles = nil
	qs := []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1}
	for _, q := range qs {
		l.Quantiles = append(l.Quantiles, Quantile{Q: q, Latency: l.Percentile(q)})
	}
}

// Percentile is the nearest-rank q-quantile (0 < q ≤ 1) of every run's
// latencies together.
func (l Latency) Percentile(q float64) time.Duration {
	return time.Duration(percentile(l.Sorted, q))
}

func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Growth is how ours' cost grows with concurrency, payload and backlog.
type Growth struct {
	Concurrency []GrowthRow
	Payload     []GrowthRow
	Backlog     []GrowthRow
	// BacklogSkipped are the backlog sizes above Options.MaxBacklog.
	BacklogSkipped []int
}

// GrowthRow is one point of a sweep.
type GrowthRow struct {
	Param   int          // the concurrency, payload bytes or backlog entries
	Produce *Measurement // payload sweep only
	Consume Measurement
	// Load is the time the harness took to fill the backlog with
	// pipelined XADDs (concurrency and backlog sweeps).
	Load time.Duration
	// RedisMemory is used_memory with the messages stored, before
	// consuming, bytes.
	RedisMemory int64
}

// StoredMemory is what streamworker's stream costs Redis per event, with
// or without trimming.
type StoredMemory struct {
	MaxLen       int64 // 0: no trimming
	Published    int
	Entries      int64 // XLEN after publishing
	MemoryUsage  int64 // MEMORY USAGE of the stream, SAMPLES 0 (every node), bytes
	UsedMemory   int64 // Redis used_memory after publishing less before, bytes
	Produce      Measurement
	PerEntry     float64 // MemoryUsage / Entries
	PerPublished float64 // MemoryUsage / Published
}

// summary is the median, min and max of some runs.
type summary struct{ Median, Min, Max float64 }

func summarize(vs []float64) summary {
	if len(vs) == 0 {
		return summary{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// cpuMedian is the median of ms's CPU per message, µs.
func cpuMedian(ms []Measurement) float64 { return summarize(each(ms, Measurement.CPUPerMsg)).Median }

// redisCPUMedian is the median of ms's Redis CPU per message, µs; -1
// (unknown) when any run's is unknown, rather than a median of a -1.
func redisCPUMedian(ms []Measurement) float64 {
	vs := each(ms, Measurement.RedisCPUPerMsg)
	for _, v := range vs {
		if v < 0 {
			return -1
		}
	}
	return summarize(vs).Median
}

func each(ms []Measurement, f func(Measurement) float64) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}

func (t Throughput) produceRate() summary { return summarize(each(t.Produce, Measurement.Rate)) }
func (t Throughput) consumeRate() summary { return summarize(each(t.Consume, Measurement.Rate)) }

func findThroughput(all []Throughput, system string) *Throughput {
	for i := range all {
		if all[i].System == system {
			return &all[i]
		}
	}
	return nil
}

package worker

import (
	"context"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// Outcomes of a message, the outcome label of streamworker_messages_total.
const (
	OutcomeAcked      = "acked"       // handled and acknowledged
	OutcomeRetried    = "retried"     // failed; a copy is scheduled
	OutcomeDelayed    = "delayed"     // asked to wait (worker.Delay); a copy is scheduled at the same attempt
	OutcomeDead       = "dead"        // moved to the dead-letter stream
	OutcomeDuplicate  = "duplicate"   // id seen inside the dedupe window; acked unhandled
	OutcomeCancelled  = "cancelled"   // cancelled before it ran (streamctl cancel); acked unhandled
	OutcomeHandedOver = "handed_over" // unfinished at shutdown; left for another consumer
	OutcomeUnrecorded = "unrecorded"  // the outcome could not be written; left pending
	OutcomeLeaseLost  = "lease_lost"  // another consumer took it over while it ran; its outcome is that consumer's
)

// Operations, the op label of streamworker_redis_errors_total: a fixed
// set, so the series are bounded whatever the error.
const (
	OpFetch   = "fetch"   // creating the group, reading the stream, taking over a partition's pending entries
	OpAck     = "ack"     // acknowledging a batch of successes
	OpSettle  = "settle"  // scheduling a retry or dead-lettering a failure
	OpPromote = "promote" // moving due entries from S:delayed into S
	OpReclaim = "reclaim" // claiming idle entries or removing gone consumers
	OpLease   = "lease"   // renewing the leases of running entries
)

// redisOps are the op label values, each counted from 0 so that a rate
// over any of them exists before the first error.
var redisOps = []string{OpFetch, OpAck, OpSettle, OpPromote, OpReclaim, OpLease}

// Type label values that are not a message type. The type label of
// streamworker_messages_total and streamworker_handler_duration_seconds is
// the message's type only when that type is registered on the runtime's Mux:
// types come from producers, and each value would be a series of its own
// (or, not being UTF-8, a panic in the Prometheus client). Every other type
// — unknown, not UTF-8, of any length, or any type at all when the handler
// is not a *Mux — is counted as TypeLabelOther, and a missing one as
// TypeLabelNone. The series are then bounded by the registered types.
const (
	TypeLabelNone  = "(none)"
	TypeLabelOther = "(other)"
)

// Metrics are the runtime's Prometheus metrics.
type Metrics struct {
	Messages *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	// InFlight is the number of handlers running, counted by the runtime
	// when the metric is read rather than updated per message.
	InFlight prometheus.GaugeFunc
	Promoted *prometheus.CounterVec
	// PromoteFailures counts, per stream, promotion passes that failed.
	PromoteFailures *prometheus.CounterVec
	// RedisErrors counts failed Redis calls by the operation they served,
	// one of the Op* constants.
	RedisErrors *prometheus.CounterVec
	// Ready is 1 while /readyz answers 200 (engine.Ready), else 0, read
	// when the metric is.
	Ready prometheus.GaugeFunc
	// OutOfMemory is 1 while writes are held back after Redis refused one
	// for want of memory (maxmemory reached under noeviction), else 0:
	// retries are held back meanwhile.
	OutOfMemory prometheus.GaugeFunc
	// RetriesInPlace is the number of failed messages whose retry in place
	// (inplace.go) waits here or runs, read when the metric is.
	RetriesInPlace prometheus.GaugeFunc
	Reclaim        *reclaim.Metrics
	// Slots counts, per WORKER_STREAMS entry, the handler slots its reads
	// filled: what each stream got of the pool (priority.go).
	Slots *prometheus.CounterVec
	// Paused is 1 while a stream is paused for the group, else 0 (pause.go).
	Paused *prometheus.GaugeVec
	// Trim holds the trimmer's and the bounded dead letters' metrics
	// (trim.go).
	Trim *trimMetrics

	running atomic.Pointer[func() int]          // the runtime's count of running handlers
	ready   atomic.Pointer[func() bool]         // the runtime's readiness
	oom     atomic.Pointer[func() bool]         // whether Redis refuses writes for want of memory
	inPlace atomic.Pointer[func() int]          // the runtime's count of retries waiting in place
	types   atomic.Pointer[map[string]struct{}] // the types labelled by name; replaced, never changed

	messages labelCache[prometheus.Counter] // Messages' children (finished)
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	// The constraint maps every type label value, whoever passes it, so that
	// no call site can add a series per producer-chosen type.
	typeLabel := prometheus.ConstrainedLabel{Name: "type", Constraint: m.typeLabel}
	m.Messages = prometheus.V2.NewCounterVec(prometheus.CounterVecOpts{
		CounterOpts: prometheus.CounterOpts{
			Name: "streamworker_messages_total",
			Help: "Messages finished, by stream, type and outcome (acked, retried, dead, duplicate, handed_over, unrecorded). " +
				"Types not registered on the Mux are counted as " + TypeLabelOther + ", a missing type as " + TypeLabelNone + ".",
		},
		VariableLabels: prometheus.ConstrainedLabels{{Name: "stream"}, typeLabel, {Name: "outcome"}},
	})
	m.Duration = prometheus.V2.NewHistogramVec(prometheus.HistogramVecOpts{
		HistogramOpts: prometheus.HistogramOpts{
			Name:    "streamworker_handler_duration_seconds",
			Help:    "Time spent in handlers, by stream and type (as in streamworker_messages_total).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		},
		VariableLabels: prometheus.ConstrainedLabels{{Name: "stream"}, typeLabel},
	})
	m.Promoted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamworker_promoted_total",
		Help: "Delayed and retry entries moved back into their stream.",
	}, []string{"stream"})
	m.PromoteFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamworker_promote_failures_total",
		Help: "Promotion passes that failed, by stream; the other streams are promoted all the same.",
	}, []string{"stream"})
	m.InFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamworker_in_flight",
		Help: "Handlers running now.",
	}, func() float64 {
		if f := m.running.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.RedisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamworker_redis_errors_total",
		Help: "Redis calls that failed, by operation: " + strings.Join(redisOps, ", ") + ".",
	}, []string{"op"})
	for _, op := range redisOps {
		m.RedisErrors.WithLabelValues(op)
	}
	m.Ready = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamworker_ready",
		Help: "1 while /readyz answers 200 (Redis answers, every group exists, not shutting down), else 0.",
	}, func() float64 {
		if f := m.ready.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
	m.OutOfMemory = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamworker_redis_out_of_memory",
		Help: "1 while Redis refuses writes for want of memory (maxmemory under noeviction): retries are held back until a write works again, else 0. Acknowledging and reading go on.",
	}, func() float64 {
		if f := m.oom.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
	m.RetriesInPlace = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamworker_retries_in_place",
		Help: "Failed messages whose retry, due soon (WORKER_RETRY_IN_PLACE_MAX), waits in this worker or runs: their entries stay pending, none is in the delayed set.",
	}, func() float64 {
		if f := m.inPlace.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.Slots = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamworker_stream_slots_total",
		Help: "Handler slots filled by the entries read from each stream (its partitions together): each stream's share of the pool, weighted by WORKER_STREAMS weights.",
	}, []string{"stream"})
	m.Paused = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamworker_stream_paused",
		Help: "1 while the stream is paused for the group (streamctl pause): the worker reads nothing from it; else 0.",
	}, []string{"stream", "group"})
	reg.MustRegister(m.Messages, m.Duration, m.InFlight, m.Promoted, m.PromoteFailures, m.RedisErrors, m.Ready, m.OutOfMemory, m.RetriesInPlace, m.Slots, m.Paused)
	m.Reclaim = reclaim.NewMetrics(reg)
	m.Reclaim.RedisErrors = m.RedisErrors.WithLabelValues(OpReclaim)
	m.Trim = newTrimMetrics(reg)
	m.messages = labelCache[prometheus.Counter]{label: m.typeLabel, child: func(k labelKey) prometheus.Counter {
		return m.Messages.WithLabelValues(k.stream, k.typ, k.outcome)
	}}
	return m
}

// redisError counts a failed Redis call of op (one of the Op* constants).
func (mt *Metrics) redisError(op string) { mt.RedisErrors.WithLabelValues(op).Inc() }

// labelTypes adds the types h routes by name (a *Mux's registered types) to
// those labelled by name. newEngine calls it; a Metrics shared by several
// runtimes labels the types of each.
func (mt *Metrics) labelTypes(h Handler) {
	x, ok := h.(*Mux)
	if !ok {
		return
	}
	next := map[string]struct{}{}
	if old := mt.types.Load(); old != nil {
		next = maps.Clone(*old)
	}
	for _, t := range x.Types() {
		if utf8.ValidString(t) { // Mux.Handle refuses others; a label must be UTF-8
			next[t] = struct{}{}
		}
	}
	mt.types.Store(&next)
}

// typeLabel is the type label value of a message of type typ. It maps its
// own results to themselves, as a label constraint must.
func (mt *Metrics) typeLabel(typ string) string {
	if typ == "" || typ == TypeLabelNone {
		return TypeLabelNone
	}
	if known := mt.types.Load(); known != nil {
		if _, ok := (*known)[typ]; ok {
			return typ
		}
	}
	return TypeLabelOther
}

// Instrument records handler duration. The histogram of each stream and
// type is looked up once, not per message.
func (mt *Metrics) Instrument() Middleware {
	return func(next Handler) Handler {
		obs := labelCache[prometheus.Observer]{label: mt.typeLabel, child: func(k labelKey) prometheus.Observer {
			return mt.Duration.WithLabelValues(k.stream, k.typ)
		}}
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			start := m.started // the runtime's clock reading, if it called the chain
			if start.IsZero() {
				start = time.Now()
			}
			err := next.HandleMessage(ctx, m)
			obs.get(m.Stream, m.Type, "").Observe(time.Since(start).Seconds())
			return err
		})
	}
}

// finished counts n messages of stream and type that finished with outcome
// in streamworker_messages_total.
func (mt *Metrics) finished(stream, typ, outcome string, n int) {
	mt.messages.get(stream, typ, outcome).Add(float64(n))
}

// labelCache remembers the child of a metric vector per stream, type label
// and outcome: WithLabelValues hashes and validates its labels on every
// call. A lookup takes no lock: the map is replaced, never changed, when a
// key is added. A type labelled by name is its own key; any other type is
// looked up by its label, so producers' types do not grow the map.
type labelCache[T any] struct {
	label func(typ string) string
	child func(labelKey) T // the vector's WithLabelValues
	m     atomic.Pointer[map[labelKey]T]
	mu    sync.Mutex // serialises additions
}

type labelKey struct{ stream, typ, outcome string }

func (c *labelCache[T]) get(stream, typ, outcome string) T {
	m := c.m.Load()
	if m != nil {
		if o, ok := (*m)[labelKey{stream, typ, outcome}]; ok {
			return o
		}
	}
	k := labelKey{stream, c.label(typ), outcome}
	if m != nil && k.typ != typ {
		if o, ok := (*m)[k]; ok {
			return o
		}
	}
	o := c.child(k)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCachedLabels { // streams come from callers of the middleware too
		return o
	}
	next := map[labelKey]T{}
	if old != nil {
		next = maps.Clone(*old)
	}
	next[k] = o
	c.m.Store(&next)
	return o
}

// maxCachedLabels bounds labelCache; past it, lookups just go uncached.
const maxCachedLabels = 1024

// maxOwnerLabel bounds the consumer label of streamworker_partition_owner,
// read from a key anyone who may write the stream's prefix can write.
const maxOwnerLabel = 256

// streamCollector reports pending, lag, delayed and dead-letter sizes per
// stream, and the idle time of the group's oldest pending entry, read from
// Redis at scrape time.
type streamCollector struct {
	client      redis.UniversalClient
	streams     []string
	group       string
	partitioned bool // streams are partitions, each with an owner key

	pending, lag, delayed, dead, oldestIdle, consumers, owner *prometheus.Desc
	length, memory                                            *prometheus.Desc
}

func newStreamCollector(client redis.UniversalClient, streams []string, group string, partitioned bool) *streamCollector {
	return &streamCollector{
		client: client, streams: streams, group: group, partitioned: partitioned,
		consumers: prometheus.NewDesc("streamworker_group_consumers", "Consumers the group has on the stream (XINFO GROUPS), idle or not.", []string{"stream", "group"}, nil),
		owner: prometheus.NewDesc("streamworker_partition_owner",
			"1 for the consumer that owns the partition (its owner key); a partition nobody owns has no series.", []string{"stream", "group", "consumer"}, nil),
		pending: prometheus.NewDesc("streamworker_group_pending", "Entries delivered to the group and not yet acknowledged.", []string{"stream", "group"}, nil),
		lag:     prometheus.NewDesc("streamworker_group_lag", "Entries in the stream not yet delivered to the group.", []string{"stream", "group"}, nil),
		delayed: prometheus.NewDesc("streamworker_delayed", "Entries waiting in the stream's delayed set (retries and delayed events).", []string{"stream"}, nil),
		dead:    prometheus.NewDesc("streamworker_dead_letters", "Entries in the stream's dead-letter stream.", []string{"stream"}, nil),
		length:  prometheus.NewDesc("streamworker_stream_length", "Entries in the stream (XLEN), acknowledged or not.", []string{"stream"}, nil),
		memory:  prometheus.NewDesc("streamworker_stream_memory_bytes", "Memory the stream takes in Redis (MEMORY USAGE, sampled).", []string{"stream"}, nil),
		oldestIdle: prometheus.NewDesc("streamworker_group_oldest_pending_idle_seconds",
			"Idle time of the group's oldest pending entry (the lowest ID, from XPENDING), 0 when nothing is pending.", []string{"stream", "group"}, nil),
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.lag
	ch <- c.delayed
	ch <- c.dead
	ch <- c.oldestIdle
	ch <- c.consumers
	ch <- c.owner
	ch <- c.length
	ch <- c.memory
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range c.streams {
		pipe := c.client.Pipeline()
		groups := pipe.XInfoGroups(ctx, s)
		delayed := pipe.ZCard(ctx, wire.DelayedKey(s))
		dead := pipe.XLen(ctx, wire.DeadLetterKey(s))
		length := pipe.XLen(ctx, s)
		memory := pipe.MemoryUsage(ctx, s, 5)
		// The idle time Redis keeps for the entry, exact, rather than the
		// age of its ID: the ID says when it was added, not when it was
		// last delivered. The lowest ID is the entry pending longest unless
		// it was claimed since, which resets its idle time as it should:
		// someone took it up.
		oldest := pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s, Group: c.group, Start: "-", End: "+", Count: 1})
		var owner *redis.StringCmd
		if c.partitioned {
			owner = pipe.Get(ctx, wire.PartitionOwnerKey(s, c.group))
		}
		_, _ = pipe.Exec(ctx)
		if gs, err := groups.Result(); err == nil {
			for _, g := range gs {
				if g.Name != c.group {
					continue
				}
				ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(g.Pending), s, g.Name)
				ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(g.Consumers), s, g.Name)
				if g.Lag >= 0 {
					ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(g.Lag), s, g.Name)
				}
			}
		}
		if ps, err := oldest.Result(); err == nil {
			var idle time.Duration
			if len(ps) > 0 {
				idle = ps[0].Idle
			}
			ch <- prometheus.MustNewConstMetric(c.oldestIdle, prometheus.GaugeValue, idle.Seconds(), s, c.group)
		}
		if owner != nil {
			// The owner key holds a consumer name; anything longer than a
			// name, or not UTF-8, was not written by a worker (a producer may
			// write keys under the stream's prefix) and is no label value.
			if who, err := owner.Result(); err == nil && len(who) <= maxOwnerLabel && utf8.ValidString(who) {
				ch <- prometheus.MustNewConstMetric(c.owner, prometheus.GaugeValue, 1, s, c.group, who)
			}
		}
		if n, err := delayed.Result(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.delayed, prometheus.GaugeValue, float64(n), s)
		}
		if n, err := dead.Result(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(n), s)
		}
		if n, err := length.Result(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(n), s)
		}
		if n, err := memory.Result(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(n), s)
		}
	}
}

// Outcomes reads streamworker_messages_total from g and sums it by type
// label and outcome (TypeLabelNone for messages without a type,
// TypeLabelOther for those of a type not registered on the Mux), for tests,
// demos and tools that watch a runtime in the same process. It stays here,
// beside the metric it reads, rather than in handlers/handlertest: the demo
// of cmd/worker uses it, and the daemon must not link the test kit.
func Outcomes(g prometheus.Gatherer) map[string]map[string]int {
	out := map[string]map[string]int{}
	mfs, err := g.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "streamworker_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var typ, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "type":
					typ = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			if out[typ] == nil {
				out[typ] = map[string]int{}
			}
			out[typ][outcome] += int(m.GetCounter().GetValue())
		}
	}
	return out
}

package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/retention"
	"github.com/streamworker/streamworker/wire"
)

// The trimmer keeps the streams' Redis memory bounded: with WORKER_RETENTION
// set it trims each stream up to what its groups still need (package
// retention), one worker per stream at a time — the holder of the stream's
// trim lease, taken and renewed by the trim script itself — and it watches
// the delayed sets' sizes against WORKER_DELAYED_WARN.

// trimMetrics are the trimmer's and the bounded dead letters' metrics.
type trimMetrics struct {
	// Trimmed counts entries trimmed from each stream by WORKER_RETENTION.
	Trimmed *prometheus.CounterVec
	// DeadDropped counts dead letters dropped, oldest first, by
	// WORKER_DLQ_MAXLEN and WORKER_DLQ_RETENTION.
	DeadDropped *prometheus.CounterVec
	// DelayedOver is 1 while a stream's delayed set holds more than
	// WORKER_DELAYED_WARN entries.
	DelayedOver *prometheus.GaugeVec
}

func newTrimMetrics(reg prometheus.Registerer) *trimMetrics {
	m := &trimMetrics{
		Trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_trimmed_total",
			Help: "Entries trimmed from the stream by WORKER_RETENTION (only entries no group needs), by this worker while it held the stream's trim lease.",
		}, []string{"stream"}),
		DeadDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamworker_dead_letters_dropped_total",
			Help: "Dead letters dropped, oldest first, to keep the dead-letter stream within WORKER_DLQ_MAXLEN and WORKER_DLQ_RETENTION.",
		}, []string{"stream"}),
		DelayedOver: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "streamworker_delayed_over_bound",
			Help: "1 while the stream's delayed set holds more than WORKER_DELAYED_WARN entries, else 0.",
		}, []string{"stream"}),
	}
	reg.MustRegister(m.Trimmed, m.DeadDropped, m.DelayedOver)
	return m
}

// bigStream is the memory above which a stream that nothing trims is worth
// a warning at start.
const bigStream = 256 << 20

// trimmer is the component that trims the streams and watches their delayed
// sets.
type trimmer struct {
	client    redis.UniversalClient
	streams   []string
	holder    string // <group>/<consumer>, the trim lease's value
	retention retention.Options
	trim      bool // WORKER_RETENTION is set
	every     time.Duration
	warnAt    int64 // WORKER_DELAYED_WARN; 0: off
	bigAt     int64 // bigStream; tests set less
	logger    *slog.Logger
	metrics   *trimMetrics

	held map[string]bool // streams whose trim lease this worker held at the last pass
	over map[string]bool // streams whose delayed set was over the bound at the last pass
}

func (r *engine) newTrimmer() *trimmer {
	cfg := r.cfg
	return &trimmer{
		client: r.client, streams: streamKeys(cfg), holder: cfg.Group + "/" + cfg.Consumer,
		retention: retention.Options{
			Keep: true, Retention: cfg.Retention.Duration, LeaseTTL: max(3*cfg.TrimInterval, time.Second),
		},
		trim: cfg.Retention.On, every: cfg.TrimInterval, warnAt: cfg.DelayedWarn, bigAt: bigStream,
		logger: r.base.With("component", "trim"), metrics: r.metrics.Trim,
		held: map[string]bool{}, over: map[string]bool{},
	}
}

// Run trims every interval until ctx ends, then gives up the leases it holds.
func (t *trimmer) Run(ctx context.Context) error {
	if !t.trim {
		t.warnUntrimmed(ctx)
		if t.warnAt == 0 {
			return nil
		}
	}
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		t.runOnce(ctx)
		select {
		case <-ctx.Done():
			t.release()
			return nil
		case <-tick.C:
		}
	}
}

// runOnce trims each stream whose lease this worker holds or can take, and
// checks each delayed set's size.
func (t *trimmer) runOnce(ctx context.Context) {
	for _, s := range t.streams {
		if t.trim {
			t.trimStream(ctx, s)
		}
		if t.warnAt > 0 {
			t.checkDelayed(ctx, s)
		}
	}
}

func (t *trimmer) trimStream(ctx context.Context, s string) {
	o := t.retention
	o.Holder = t.holder
	p, err := retention.Trim(ctx, t.client, s, o)
	if err != nil {
		if ctx.Err() == nil {
			t.logger.Warn("trimming the stream failed; will retry", "stream", s, "error", err)
		}
		return
	}
	held := p.HeldBy == ""
	if held != t.held[s] {
		if held {
			t.logger.Info("trimming the stream: this worker holds its trim lease", "stream", s, "retention", t.retention.Retention)
		} else {
			t.logger.Info("another worker trims the stream now", "stream", s, "holder", p.HeldBy)
		}
		t.held[s] = held
	}
	if p.Trimmed > 0 {
		t.metrics.Trimmed.WithLabelValues(s).Add(float64(p.Trimmed))
		t.logger.Debug("stream trimmed", "stream", s, "count", p.Trimmed, "min_id", p.MinID, "reason", p.Reason, "group", p.Group)
	}
}

func (t *trimmer) checkDelayed(ctx context.Context, s string) {
	n, err := t.client.ZCard(ctx, wire.DelayedKey(s)).Result()
	if err != nil {
		return // the promoter reports a failing delayed set
	}
	over := n > t.warnAt
	if over && !t.over[s] {
		t.logger.Error("the delayed set is larger than WORKER_DELAYED_WARN: retries or delayed events pile up faster than they come due",
			"stream", s, "delayed", wire.DelayedKey(s), "entries", n, "bound", t.warnAt)
	}
	t.over[s] = over
	v := 0.0
	if over {
		v = 1
	}
	t.metrics.DelayedOver.WithLabelValues(s).Set(v)
}

// release gives up the trim leases held, so that another worker trims next
// rather than after the lease TTL.
func (t *trimmer) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for s, held := range t.held {
		if held {
			_ = retention.Release(ctx, t.client, s, t.holder)
		}
	}
}

// warnUntrimmed logs, once at start, each stream above bigStream that the
// workers do not trim (WORKER_RETENTION unset): only a producer's MAXLEN,
// which the worker cannot see, bounds it.
func (t *trimmer) warnUntrimmed(ctx context.Context) {
	for _, s := range t.streams {
		n, err := t.client.MemoryUsage(ctx, s, 5).Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
				t.logger.Debug("could not read the stream's memory usage", "stream", s, "error", err)
			}
			continue
		}
		if n > t.bigAt {
			t.logger.Warn("the stream is large and WORKER_RETENTION is not set: unless producers trim it (XADD MAXLEN), acknowledged entries stay in Redis until maxmemory",
				"stream", s, "memory_bytes", n)
		}
	}
}

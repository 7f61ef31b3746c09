package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// Pausing a stream (streamctl pause): the state lives in Redis, in the hash
// wire.PausedKey of each WORKER_STREAMS entry, with a field per paused group
// (or * for every group), so that it survives restarts and new replicas
// honour it. Every worker polls the hashes of its streams, one pipelined
// HMGET per stream every half WORKER_BLOCK; the fetchers look at the answer
// (an atomic load) before each read and, while their stream is paused, send
// none: no XREADGROUP, no replay of own pending entries, no take-over of a
// partition, and the reclaimer claims nothing in it. A read already waiting
// in Redis returns within one WORKER_BLOCK (it asks for one entry when the
// stream was drained), so a worker stops fetching within about one block of
// the pause. Running handlers finish, and are acknowledged, as usual; retries
// due meanwhile are promoted into the stream and wait there with the rest.
// Until the first poll answers, no stream is read: a worker started on a
// paused stream never reads it. A paused stream is not an outage: /readyz
// stays ready.

// pauses polls the pause state of the runtime's streams.
type pauses struct {
	client  redis.UniversalClient
	group   string
	every   time.Duration
	logger  *slog.Logger
	beat    *beat
	streams []*pauseState
	byKey   map[string]*pauseState // a stream key read (a partition's) → its WORKER_STREAMS entry's state

	known     chan struct{} // closed once a poll answered
	knownOnce sync.Once
	failing   bool // the last poll failed; the Run loop's own
}

// pauseState is whether one WORKER_STREAMS entry is paused for the group.
type pauseState struct {
	stream, key string
	paused      atomic.Bool
	gauge       prometheus.Gauge
	parked      atomic.Int32 // fetchers waiting for it to be resumed

	mu      sync.Mutex
	resumed chan struct{} // closed when the stream is resumed; replaced when it is paused
}

// newPauses builds the poller of cfg's streams, each unpaused until the
// first poll says otherwise.
func newPauses(cfg config.Config, client redis.UniversalClient, logger *slog.Logger, metrics *Metrics, live *liveness) *pauses {
	p := &pauses{
		client: client, group: cfg.Group, every: max(cfg.Block/2, 5*time.Millisecond),
		logger: logger.With("component", "pause"), beat: live.Register("pause"),
		byKey: map[string]*pauseState{}, known: make(chan struct{}),
	}
	for _, s := range cfg.Streams {
		st := &pauseState{stream: s, key: wire.PausedKey(s), resumed: make(chan struct{}), gauge: metrics.Paused.WithLabelValues(s, cfg.Group)}
		close(st.resumed)
		p.streams = append(p.streams, st)
		if cfg.Partitions > 1 {
			for _, k := range wire.PartitionStreams(s, cfg.Partitions) {
				p.byKey[k] = st
			}
		} else {
			p.byKey[s] = st
		}
	}
	return p
}

// Run polls every half block until ctx ends.
func (p *pauses) Run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.beat.beat()
		err := p.runOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !p.failing:
			p.logger.Error("reading the pause state of the streams failed; will retry", "error", err)
		case err == nil && p.failing:
			p.logger.Info("reading the pause state of the streams works again")
		}
		p.failing = err != nil
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce reads every stream's pause state in one pipelined round trip and
// applies it.
func (p *pauses) runOnce(ctx context.Context) error {
	pipe := p.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(p.streams))
	for i, st := range p.streams {
		cmds[i] = pipe.HMGet(ctx, st.key, p.group, wire.PauseAllGroups)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	var wrong error
	for i, st := range p.streams {
		switch err := cmds[i].Err(); {
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			// Not a pause: only a hash is. Another user's key (the
			// producer may XADD under the prefix) must not stop the stream.
			wrong = fmt.Errorf("%s is not a hash, so not a pause; delete it: %w", st.key, err)
		case err != nil && !errors.Is(err, redis.Nil):
			return err
		}
	}
	for i, st := range p.streams {
		paused := false
		for _, v := range cmds[i].Val() {
			paused = paused || v != nil
		}
		p.set(st, paused)
	}
	p.knownOnce.Do(func() { close(p.known) })
	return wrong
}

func (p *pauses) set(st *pauseState, paused bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.paused.Load() == paused {
		st.gauge.Set(b2f(paused))
		return
	}
	if paused {
		st.resumed = make(chan struct{})
		st.paused.Store(true)
		p.logger.Info("stream paused: not reading it until it is resumed", "stream", st.stream, "group", p.group)
	} else {
		st.paused.Store(false)
		close(st.resumed)
		p.logger.Info("stream resumed", "stream", st.stream, "group", p.group)
	}
	st.gauge.Set(b2f(paused))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// of returns the pause state of the stream key read (a partition's is its
// logical stream's).
func (p *pauses) of(key string) *pauseState { return p.byKey[key] }

// wait returns at once when st may be read; otherwise it waits for the first
// poll and then while st is paused, beating beat every second. It reports
// whether it waited, and returns when ctx ends too.
func (p *pauses) wait(ctx context.Context, st *pauseState, beat *beat) bool {
	waited := false
	select {
	case <-p.known:
	default:
		waited = true
		if !waitBeating(ctx, p.known, beat) {
			return true
		}
	}
	if !st.paused.Load() {
		return waited
	}
	st.parked.Add(1)
	defer st.parked.Add(-1)
	for st.paused.Load() {
		st.mu.Lock()
		ch := st.resumed
		st.mu.Unlock()
		if !waitBeating(ctx, ch, beat) {
			break
		}
	}
	return true
}

// waitBeating waits for ch to close, beating every second (a nil beat:
// not); false when ctx ended first.
func waitBeating(ctx context.Context, ch <-chan struct{}, beat *beat) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			if beat != nil {
				beat.beat()
			}
		}
	}
}

// unpaused narrows streams to those not paused now, for the reclaimer.
func (p *pauses) unpaused(streams []string) []string {
	out := streams[:0:0]
	for _, s := range streams {
		if st := p.byKey[s]; st == nil || !st.paused.Load() {
			out = append(out, s)
		}
	}
	return out
}

package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A frozen Redis (a long command, a fork that stalls, DEBUG SLEEP, a host
// paused) answers nothing and refuses nothing: the runtime's blocking reads
// only time out after WORKER_BLOCK plus the client's read timeout, so they
// would show it late or never. The probe sends a PING every probeEvery,
// each with its own deadline, and the runtime is not ready while Redis has
// answered none for probeBound. On a Redis Cluster every primary is
// pinged, and each must answer.
const (
	probeEvery   = 500 * time.Millisecond
	probeTimeout = time.Second
	probeBound   = 2 * time.Second // documented in docs/operations.md (/readyz)
)

// A Redis out of memory (maxmemory reached under noeviction) refuses the
// writes that add data (XADD, ZADD, SET, XGROUP CREATE, scripts that write)
// and still takes acknowledgements and reads. After a refusal the runtime
// holds back what only adds data — retry copies — for oomHold, and longer
// while refusals go on (doubling up to oomHoldMax), instead of adding copies
// whenever memory dips under the limit for a moment.
const (
	oomHold    = time.Second
	oomHoldMax = 30 * time.Second
)

// redisHealth is what the runtime knows of Redis beyond each call's own
// result: when it last answered the probe, and whether it refuses writes
// for want of memory.
type redisHealth struct {
	lastAnswer atomic.Int64 // unix ns of the last probe answered
	oomUntil   atomic.Int64 // unix ns: writes that add data are held back until then
	oomStreak  atomic.Int64 // refusals in a row, for the hold's doubling
	oomLogged  atomic.Bool
	logger     *slog.Logger
}

func newRedisHealth(logger *slog.Logger) *redisHealth {
	h := &redisHealth{logger: logger}
	h.lastAnswer.Store(time.Now().UnixNano())
	return h
}

// answering reports an error while Redis has answered no probe for
// probeBound.
func (h *redisHealth) answering() error {
	if age := time.Since(time.Unix(0, h.lastAnswer.Load())); age > probeBound {
		return fmt.Errorf("redis has not answered a PING for %s (not ready after %s)", age.Round(100*time.Millisecond), probeBound)
	}
	return nil
}

// noted is told of a write's error: an OOM refusal starts or extends the
// hold on writes that add data. It reports whether err was one.
func (h *redisHealth) noted(err error) bool {
	if err == nil || !isOOM(err) {
		return false
	}
	if time.Now().UnixNano() > h.oomUntil.Load()+int64(oomHoldMax) {
		h.oomStreak.Store(0) // a refusal long after the last: start the doubling again
	}
	n := h.oomStreak.Add(1)
	hold := oomHoldMax
	if n < 6 {
		hold = min(oomHoldMax, oomHold<<(n-1))
	}
	h.oomUntil.Store(time.Now().Add(hold).UnixNano())
	if h.oomLogged.CompareAndSwap(false, true) {
		h.logger.Error("redis refuses writes: out of memory (maxmemory reached under noeviction); acknowledging and reading go on, retries are held back until it takes writes again",
			"error", err)
	}
	return true
}

// wrote is told that a write that adds data worked: Redis takes writes.
func (h *redisHealth) wrote() {
	if h.oomStreak.Load() == 0 {
		return
	}
	h.oomStreak.Store(0)
	h.oomUntil.Store(0)
	if h.oomLogged.CompareAndSwap(true, false) {
		h.logger.Info("redis takes writes again")
	}
}

// outOfMemory reports whether writes that add data are held back now.
func (h *redisHealth) outOfMemory() bool { return time.Now().UnixNano() < h.oomUntil.Load() }

// refusesWrites reports whether writes are held back after a refusal for
// want of memory: the state /readyz and streamworker_redis_out_of_memory
// report. It ends when a write works, or when the hold runs out with no
// refusal since.
func (h *redisHealth) refusesWrites() bool { return h.outOfMemory() }

func isOOM(err error) bool { return redis.HasErrorPrefix(err, "OOM") }

// prober pings Redis for the probe. The PING goes through the runtime's
// client, on a connection of the pool that no other command holds; the
// runtime is ready or not by the age of the last answer, not by one call's
// fate, so a PING that hangs until the client's read timeout shows as soon
// as probeBound has passed.
type prober struct {
	client  redis.UniversalClient
	cluster *clusterRoutes // told of failures, so a promoted replica is pinged next; nil off a cluster
	health  *redisHealth
	beat    *beat
}

// Run pings every probeEvery until ctx ends.
func (p *prober) Run(ctx context.Context) error {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		p.beat.beat()
		if err := p.runOnce(ctx); err == nil {
			p.health.lastAnswer.Store(time.Now().UnixNano())
		} else {
			p.cluster.failed(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce sends one probe: a PING to Redis, or to every primary of a
// cluster.
func (p *prober) runOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if cc, ok := p.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	}
	return p.client.Ping(ctx).Err()
}

package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Promoter moves due entries from each stream's delayed set (retries and the
// producer's delayed events) back into the stream, atomically and in bounded
// batches.
type Promoter struct {
	client   redis.UniversalClient
	streams  []string
	interval time.Duration
	batch    int
	logger   *slog.Logger
	metrics  *Metrics
	beat     *Beat
	now      func() time.Time
}

// NewPromoter returns a promoter for streams that runs every interval.
// metrics and live may be nil.
func NewPromoter(client redis.UniversalClient, streams []string, interval time.Duration, logger *slog.Logger, metrics *Metrics, live *Liveness) *Promoter {
	p := &Promoter{
		client: client, streams: streams, interval: interval, batch: 500,
		logger: logger.With("component", "promote"), metrics: metrics, now: time.Now,
	}
	if live != nil {
		p.beat = live.Register("promote")
	} else {
		p.beat = &Beat{}
	}
	return p
}

// Run promotes every interval until ctx ends.
func (p *Promoter) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	var failing bool
	for {
		p.beat.Beat()
		moved, err := p.runOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				p.logger.Error("promoting delayed entries failed; will retry", "error", err)
			}
			failing = true
		case err == nil:
			if failing {
				p.logger.Info("promoting delayed entries works again")
			}
			failing = false
			if moved > 0 {
				p.logger.Debug("promoted delayed entries", "count", moved)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce moves every due entry of every stream, a batch per script call.
func (p *Promoter) runOnce(ctx context.Context) (int, error) {
	total := 0
	for _, s := range p.streams {
		for {
			n, err := promoteScript.Run(ctx, p.client,
				[]string{DelayedKey(s), s, DeadLetterKey(s)},
				p.now().UnixMilli(), p.batch).Int()
			if err != nil {
				return total, err
			}
			total += n
			if p.metrics != nil && n > 0 {
				p.metrics.Promoted.WithLabelValues(s).Add(float64(n))
			}
			if n < p.batch {
				break
			}
		}
	}
	return total, nil
}

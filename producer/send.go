package producer

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// SendItems is PublishItems without waiting for the replies: it checks,
// routes and sends items, and returns a Pending whose Wait returns what
// PublishItems would have. A bulk load keeps the next batch on its way while
// the replies of the one before come back, so that neither the client nor
// Redis waits on the other: PublishItems, one round trip per batch, leaves
// each idle while the other works.
//
// Batches sent by successive calls reach Redis in the order of the calls,
// on one connection (go-redis's full-duplex autopipeline of the client,
// which the client keeps and closes). The items must not change until Wait
// returns. As with PublishItems nothing is resent: after a network error
// the writes not confirmed may or may not have happened. A batch sent after
// one that failed is not held back by it; a caller that must stop at a
// failure sends the next batch only after Wait.
//
// On a client that is not a *redis.Client (a Redis Cluster, a Ring), or
// whose shared autopipeline does not keep order, SendItems runs
// PublishItems and returns when the replies are in.
func (p *Producer) SendItems(ctx context.Context, stream string, items []Item) (*Pending, error) {
	ap := p.autopipeline()
	if ap == nil {
		res, err := p.PublishItems(ctx, stream, items)
		if res == nil && err != nil {
			return nil, err // nothing was sent
		}
		return &Pending{res: res, err: err}, nil
	}
	ctx, span := p.startPublish(ctx, stream, len(items))
	b, err := p.prepare(ctx, stream, items)
	if err != nil {
		endPublish(span, err)
		return nil, err
	}
	sent := &Pending{batch: b, span: span, futures: make([]redis.AutoFuture, len(b.cmds))}
	for i, c := range b.cmds {
		sent.futures[i] = ap.Submit(ctx, c)
	}
	return sent, nil
}

// Pending is a batch that SendItems sent.
type Pending struct {
	batch   itemBatch
	span    trace.Span
	futures []redis.AutoFuture

	once sync.Once
	res  []Result
	err  error
}

// Wait waits for the replies and returns one Result per item, as
// PublishItems does: when some writes failed, the error is a *BatchError
// and the Results say which.
func (s *Pending) Wait() ([]Result, error) {
	s.once.Do(func() {
		if s.futures == nil && s.batch.cmds == nil {
			return // sent by PublishItems: res and err are set
		}
		for _, f := range s.futures {
			_ = f.Wait() // each command keeps its own error, read below
		}
		s.res, s.err = s.batch.results()
		endPublish(s.span, s.err)
	})
	return s.res, s.err
}

// autopipeline returns the client's full-duplex autopipeline, or nil when
// the client has none that keeps order.
func (p *Producer) autopipeline() *redis.AutoPipeliner {
	p.apOnce.Do(func() {
		c, ok := p.client.(*redis.Client)
		if !ok {
			return
		}
		ap, err := c.AsyncAutoPipelineWithOptions(&redis.AutoPipelineOptions{FullDuplex: true})
		if err != nil {
			return
		}
		// The client keeps one shared instance, made by its first caller:
		// one made elsewhere without order is of no use here.
		if cfg := ap.Config(); cfg.Unordered || cfg.MaxConcurrentBatches > 1 {
			return
		}
		p.ap = ap
	})
	return p.ap
}

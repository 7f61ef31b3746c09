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
// each idle while the other works. Call Wait for every Pending.
//
// Batches sent by successive calls reach Redis in the order of the calls.
// On a *redis.Client they go on one connection, go-redis's full-duplex
// autopipeline of the client (shared with the client's other
// AsyncAutoPipeline users, and closed with it). A batch with unique items
// (Item.UniqueFor) goes as PublishItems sends it, once the batches before
// it are in: its script may be turned into a function call by a client
// hook (REDIS_SCRIPTS=functions), which the full-duplex path does not
// allow. On other clients (a Redis Cluster, a Ring) every batch goes that
// way, each after the one before, in the background.
//
// The items must not change until Wait returns. As with PublishItems
// nothing is resent: after a network error the writes not confirmed may or
// may not have happened, and those of the batch not yet written go out on
// a new connection; each Result says what became of its item. A batch sent
// after one that failed is not held back by it; a caller that must stop at
// a failure sends the next batch only after Wait.
func (p *Producer) SendItems(ctx context.Context, stream string, items []Item) (*Pending, error) {
	ctx, span := p.startPublish(ctx, stream, len(items))
	b, err := p.prepare(ctx, stream, items)
	if err != nil {
		endPublish(span, err)
		return nil, err
	}
	s := &Pending{p: p, batch: b, span: span}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	prev := p.sendLast
	p.sendLast = s
	ap := p.autopipeline()
	if ap == nil || hasUnique(items) {
		s.done = make(chan struct{})
		go func() {
			defer close(s.done)
			prev.settled()
			failUnread(b.pipe.Exec(ctx))
			s.finish()
		}()
		return s, nil
	}
	if prev != nil && prev.done != nil {
		<-prev.done // a batch sent the other way goes first; one on this connection is in order already
	}
	s.futures = make([]redis.AutoFuture, len(b.cmds))
	for i, c := range b.cmds {
		s.futures[i] = ap.Submit(ctx, c)
	}
	return s, nil
}

// hasUnique reports whether any item is a unique append.
func hasUnique(items []Item) bool {
	for _, it := range items {
		if it.UniqueFor > 0 {
			return true
		}
	}
	return false
}

// Pending is a batch that SendItems sent.
type Pending struct {
	p       *Producer
	batch   itemBatch
	span    trace.Span
	futures []redis.AutoFuture // on the autopipeline
	done    chan struct{}      // else closed when the batch has run

	once sync.Once
	res  []Result
	err  error
}

// Wait waits for the replies and returns one Result per item, as
// PublishItems does: when some writes failed, the error is a *BatchError
// and the Results say which.
func (s *Pending) Wait() ([]Result, error) {
	s.settled()
	s.finish()
	s.p.sendMu.Lock()
	if s.p.sendLast == s {
		s.p.sendLast = nil // nothing need follow it now: its items are not kept
	}
	s.p.sendMu.Unlock()
	return s.res, s.err
}

// settled waits until every command of s has run (or failed); nil waits
// for nothing.
func (s *Pending) settled() {
	switch {
	case s == nil:
	case s.done != nil:
		<-s.done
	default:
		for _, f := range s.futures {
			_ = f.Wait() // each command keeps its own error, read by results
		}
	}
}

// finish reads the results, once, and ends the span.
func (s *Pending) finish() {
	s.once.Do(func() {
		s.res, s.err = s.batch.results()
		endPublish(s.span, s.err)
	})
}

// autopipeline returns the client's full-duplex autopipeline, or nil when
// the client has none that keeps the order of all its commands (not a
// *redis.Client, or go-redis refused to make one): SendItems then sends as
// PublishItems does, which is slower and as correct.
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
		// one made elsewhere may keep order only per key, or none.
		if cfg := ap.Config(); cfg.Unordered || cfg.MaxConcurrentBatches > 1 || cfg.NumShards > 1 {
			return
		}
		p.ap = ap
	})
	return p.ap
}

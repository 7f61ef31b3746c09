package worker

import (
	"context"
	"sync"
	"time"

	"github.com/streamworker/streamworker/wire"
)

// Acknowledgements are written by one loop in batches. Handlers append to a
// buffer; the loop waits a moment (ackLinger) after the first one arrives, or
// until ackFlushAt have gathered, and sends the whole buffer in one pipeline.
// An acknowledgement a little late costs nothing (the entry just stays
// pending a millisecond longer); one round trip per few hundred messages
// instead of per few dozen is a large share of a no-op handler's cost.
const (
	ackLinger  = 2 * time.Millisecond
	ackFlushAt = 512  // send at once when this many are waiting
	ackMax     = 4096 // handlers wait for room beyond this (Redis is failing)
)

type ackReq struct {
	stream, id, typ string
	dedupe          string // dedupe key to mark, or ""
	outcome         string
}

// ackBuffer is where handlers leave acknowledgements for the ack loop.
type ackBuffer struct {
	mu    sync.Mutex
	room  sync.Cond // signalled when the loop takes the buffer
	buf   []ackReq
	ended bool          // the loop has stopped: nothing more is written
	kick  chan struct{} // wakes the loop: first ack of a batch, or ackFlushAt reached
}

func newAckBuffer() *ackBuffer {
	b := &ackBuffer{buf: make([]ackReq, 0, ackFlushAt), kick: make(chan struct{}, 1)}
	b.room.L = &b.mu
	return b
}

// add queues a. After the loop has ended (a handler that ignored the
// shutdown deadline) the entry stays pending.
func (b *ackBuffer) add(a ackReq) {
	b.mu.Lock()
	for len(b.buf) >= ackMax && !b.ended {
		b.room.Wait()
	}
	if b.ended {
		b.mu.Unlock()
		return
	}
	b.buf = append(b.buf, a)
	n := len(b.buf)
	b.mu.Unlock()
	if n == 1 || n == ackFlushAt {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *ackBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// take swaps the buffer for spare (emptied) and returns what was queued.
func (b *ackBuffer) take(spare []ackReq) []ackReq {
	b.mu.Lock()
	out := b.buf
	b.buf = spare[:0]
	b.mu.Unlock()
	b.room.Broadcast()
	return out
}

// end takes what is left and makes later adds no-ops.
func (b *ackBuffer) end() []ackReq {
	b.mu.Lock()
	out := b.buf
	b.buf, b.ended = nil, true
	b.mu.Unlock()
	b.room.Broadcast()
	return out
}

// ack queues an acknowledgement for the ack loop.
func (r *engine) ack(a ackReq) { r.acks.add(a) }

// ackNow writes one acknowledgement at once, for a message that must be
// settled before the next one runs; on a Redis error it is queued instead.
func (r *engine) ackNow(a ackReq) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := r.flushAcks(ctx, []ackReq{a}, nil); err != nil {
		r.ack(a)
	}
}

// ackLoop writes acknowledgements in batches until ctx ends, then flushes
// what is left.
func (r *engine) ackLoop(ctx context.Context) error {
	stop := ctx.Done()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var batch, spare []ackReq
	for {
		select {
		case <-r.acks.kick:
		case <-stop:
			if rest := r.acks.end(); len(rest) > 0 {
				r.flushFinal(rest)
			}
			return nil
		}
		if r.acks.len() < ackFlushAt {
			linger.Reset(ackLinger)
			select {
			case <-r.acks.kick:
			case <-linger.C:
			case <-stop:
			}
			linger.Stop()
		}
		batch, spare = r.acks.take(spare), batch
		if len(batch) > 0 {
			r.flushRetrying(batch, stop)
		}
	}
}

// flushRetrying writes a batch, retrying with backoff while Redis fails,
// until it succeeds or shutdown turns it into a final flush.
func (r *engine) flushRetrying(batch []ackReq, stop <-chan struct{}) {
	for failures := 1; ; failures++ {
		err := r.flushAcks(context.Background(), batch, r.ackIDs)
		if err == nil {
			return
		}
		r.metrics.redisError(OpAck)
		wait := retryWait(failures)
		r.logger.Error("acknowledging messages failed; retrying", "count", len(batch), "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-stop:
			r.flushFinal(batch)
			return
		case <-time.After(wait):
		}
	}
}

// flushFinal makes a last few attempts at shutdown with fresh contexts.
func (r *engine) flushFinal(batch []ackReq) {
	var err error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err = r.flushAcks(ctx, batch, nil)
		cancel()
		if err == nil {
			return
		}
		r.metrics.redisError(OpAck)
		sleepCtx(context.Background(), retryWait(i+1))
	}
	r.logger.Error("acknowledgements lost at shutdown; those messages stay pending and will be delivered again",
		"count", len(batch), "error", err)
}

// flushAcks sends a batch in one pipeline: dedupe marks first, then one XACK
// per stream with every ID. The outcome counters are bumped once per run of
// equal labels, not once per message. ids, when not nil, is the ack loop's
// scratch space for the IDs per stream, reused from batch to batch.
func (r *engine) flushAcks(ctx context.Context, batch []ackReq, ids map[string][]string) error {
	pipe := r.client.Pipeline()
	if ids == nil {
		ids = make(map[string][]string, 1)
	}
	for s, list := range ids {
		ids[s] = list[:0]
	}
	for _, a := range batch {
		if a.dedupe != "" {
			pipe.Set(ctx, a.dedupe, wire.DedupeMark, r.cfg.DedupeWindow)
		}
		ids[a.stream] = append(ids[a.stream], a.id)
	}
	for s, list := range ids {
		if len(list) > 0 {
			pipe.XAck(ctx, s, r.cfg.Group, list...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for i := 0; i < len(batch); {
		a, n := batch[i], 1
		for i+n < len(batch) && batch[i+n].stream == a.stream && batch[i+n].typ == a.typ && batch[i+n].outcome == a.outcome {
			n++
		}
		r.metrics.Messages.WithLabelValues(a.stream, a.typ, a.outcome).Add(float64(n))
		i += n
	}
	return nil
}

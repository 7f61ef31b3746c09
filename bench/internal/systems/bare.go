package systems

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// bare is the least a Go program can do per message with go-redis: XADDs
// pipelined Batch at a time to produce; one goroutine that reads
// XREADGROUP COUNT FetchCount, calls the handler per entry and sends one
// XACK with every ID of the batch, to consume. No pool, no middleware, no
// metrics, no retries: what the protocol allows. Its entries have the same
// fields as streamworker's.
//
// Pipelined (the BarePipelined system) is its strongest simple variant: the
// XACK of a batch and the next XREADGROUP go in one pipeline, so a batch
// costs one round trip instead of two.
type bare struct {
	stream
	client    *redis.Client
	pipelined bool

	count *counter
	stop  context.CancelFunc
	run   *background
}

func newBare(cfg Config, pipelined bool) *bare {
	return &bare{stream: newStream(cfg), client: redis.NewClient(cfg.options()), pipelined: pipelined}
}

func (b *bare) args(data string) *redis.XAddArgs {
	a := &redis.XAddArgs{Stream: b.key, Values: []string{wire.FieldType, MsgType, wire.FieldData, data}}
	if b.cfg.MaxLen > 0 {
		a.MaxLen, a.Approx = b.cfg.MaxLen, true
	}
	return a
}

func (b *bare) Produce(ctx context.Context, n int, payload []byte) error {
	data := string(payload)
	for sent := 0; sent < n; {
		pipe := b.client.Pipeline()
		for i := 0; i < b.cfg.Batch && sent < n; i, sent = i+1, sent+1 {
			pipe.XAdd(ctx, b.args(data))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("pipelined XADD: %w", err)
		}
	}
	return nil
}

func (b *bare) Send(ctx context.Context, payload []byte) error {
	return b.client.XAdd(ctx, b.args(string(payload))).Err()
}

func (b *bare) Start(ctx context.Context, n int, handle Handler) error {
	if b.count != nil {
		return errors.New("systems: Start called twice")
	}
	if err := b.createGroup(ctx); err != nil {
		return err
	}
	b.count = newCounter(n)
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = stop
	loop := b.loop
	if b.pipelined {
		loop = b.loopPipelined
	}
	b.run = goBackground(func() error { return loop(rctx, handle) })
	return nil
}

func (b *bare) readArgs() *redis.XReadGroupArgs {
	return &redis.XReadGroupArgs{
		Group: b.group, Consumer: "bench-bare", Streams: []string{b.key, ">"},
		Count: int64(b.cfg.FetchCount), Block: 100 * time.Millisecond,
	}
}

func (b *bare) loop(ctx context.Context, handle Handler) error {
	ids := make([]string, 0, b.cfg.FetchCount)
	for ctx.Err() == nil {
		res, err := b.client.XReadGroup(ctx, b.readArgs()).Result()
		switch {
		case ctx.Err() != nil:
			return ctx.Err() // stopped: an error now is the stop's
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return fmt.Errorf("XREADGROUP: %w", err)
		}
		ids = ids[:0]
		for _, e := range res[0].Messages {
			// The handler reads the field in place: no copy, as a loop
			// written for speed would do.
			data, _ := e.Values[wire.FieldData].(string)
			handle(unsafe.Slice(unsafe.StringData(data), len(data)))
			b.count.add()
			ids = append(ids, e.ID)
		}
		if err := b.client.XAck(ctx, b.key, b.group, ids...).Err(); err != nil {
			return errors.Join(ctx.Err(), fmt.Errorf("XACK: %w", err))
		}
	}
	return ctx.Err()
}

// loopPipelined sends the XACK of the batch just handled and the next
// XREADGROUP in one pipeline: one round trip per batch. The XACK runs
// before the read blocks, so nothing stays pending while the loop waits.
func (b *bare) loopPipelined(ctx context.Context, handle Handler) error {
	ids := make([]string, 0, b.cfg.FetchCount)
	for ctx.Err() == nil {
		var read *redis.XStreamSliceCmd
		var ack *redis.IntCmd
		if len(ids) == 0 {
			read = b.client.XReadGroup(ctx, b.readArgs())
		} else {
			pipe := b.client.Pipeline()
			ack = pipe.XAck(ctx, b.key, b.group, ids...)
			read = pipe.XReadGroup(ctx, b.readArgs())
			_, _ = pipe.Exec(ctx) // each command's error is read below
		}
		if ctx.Err() != nil {
			return ctx.Err() // stopped: an error now is the stop's
		}
		if ack != nil && ack.Err() != nil {
			return fmt.Errorf("XACK: %w", ack.Err())
		}
		ids = ids[:0]
		res, err := read.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return fmt.Errorf("XREADGROUP: %w", err)
		}
		for _, e := range res[0].Messages {
			data, _ := e.Values[wire.FieldData].(string)
			handle(unsafe.Slice(unsafe.StringData(data), len(data)))
			b.count.add()
			ids = append(ids, e.ID)
		}
	}
	return ctx.Err()
}

func (b *bare) Ready(ctx context.Context) error { return b.reading(ctx) }

func (b *bare) Wait(ctx context.Context) error {
	if err := b.count.wait(ctx, b.run); err != nil {
		return err
	}
	return b.acked(ctx)
}

func (b *bare) Handled() int64 { return b.count.handled() }

func (b *bare) Close() error {
	if b.stop != nil {
		b.stop()
	}
	err := b.run.join(10 * time.Second)
	if errors.Is(err, context.Canceled) { // how the loop stops
		err = nil
	}
	return errors.Join(err, closeClient(b.client), closeClient(b.admin))
}

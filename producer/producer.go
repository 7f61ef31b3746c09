// Package producer publishes events to streams: one at a time, in pipelined
// batches, or delayed until a due time. It never retries an XADD on its own
// after an error, because a write whose reply was lost may have happened; give
// events an idempotency key (Event.ID) and let the worker's dedupe window
// absorb a resend instead.
package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/worker"
)

// DefaultMaxPayload is the default cap on an event's data.
const DefaultMaxPayload = 1 << 20

// ErrTooLarge is returned for an event whose data is over the cap.
var ErrTooLarge = errors.New("event too large")

// ErrNoType is returned for an event without a type.
var ErrNoType = errors.New("event has no type")

// Event is one message to publish.
type Event struct {
	// Type routes the event to a handler. Required.
	Type string
	// Data is the payload, JSON by convention.
	Data []byte
	// ID is an optional idempotency key.
	ID string
	// Metadata are extra fields passed to the handler (e.g. traceparent).
	Metadata map[string]string
}

// Options configure a Producer. The zero value is usable.
type Options struct {
	// MaxPayload caps len(Event.Data). Default: 1 MiB.
	MaxPayload int
	// MaxLen, when positive, trims the stream to about this many entries
	// (XADD MAXLEN ~). Default: 0, no trimming.
	MaxLen int64
}

// Producer publishes events with a Redis client. Create the client with
// MaxRetries: -1 (NewClient does): go-redis would otherwise resend a write
// whose connection broke, which can duplicate events.
type Producer struct {
	client redis.UniversalClient
	opts   Options
}

// New returns a Producer.
func New(client redis.UniversalClient, opts Options) *Producer {
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	return &Producer{client: client, opts: opts}
}

// NewClient returns a client for url that never resends a command by itself.
func NewClient(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.MaxRetries = -1
	return redis.NewClient(opt), nil
}

// Check validates an event without sending it.
func (p *Producer) Check(e Event) error {
	if e.Type == "" {
		return ErrNoType
	}
	if len(e.Data) > p.opts.MaxPayload {
		return fmt.Errorf("%w: data is %d bytes, the cap is %d bytes; store the payload elsewhere and send a reference", ErrTooLarge, len(e.Data), p.opts.MaxPayload)
	}
	return nil
}

func (e Event) fields() []string {
	f := make([]string, 0, 6+2*len(e.Metadata))
	f = append(f, worker.FieldType, e.Type, worker.FieldData, string(e.Data))
	if e.ID != "" {
		f = append(f, worker.FieldID, e.ID)
	}
	for k, v := range e.Metadata {
		f = append(f, k, v)
	}
	return f
}

func (p *Producer) args(stream string, e Event) *redis.XAddArgs {
	a := &redis.XAddArgs{Stream: stream, Values: e.fields()}
	if p.opts.MaxLen > 0 {
		a.MaxLen, a.Approx = p.opts.MaxLen, true
	}
	return a
}

// Publish appends one event and returns its entry ID.
func (p *Producer) Publish(ctx context.Context, stream string, e Event) (string, error) {
	if err := p.Check(e); err != nil {
		return "", err
	}
	return p.client.XAdd(ctx, p.args(stream, e)).Result()
}

// PublishBatch appends events in one pipelined round trip and returns their
// entry IDs in order. Every event is checked before anything is sent.
func (p *Producer) PublishBatch(ctx context.Context, stream string, events []Event) ([]string, error) {
	for i, e := range events {
		if err := p.Check(e); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	pipe := p.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	for i, e := range events {
		cmds[i] = pipe.XAdd(ctx, p.args(stream, e))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids, nil
}

// PublishDelayed schedules an event to enter the stream at due; the worker's
// promote loop moves it in.
func (p *Producer) PublishDelayed(ctx context.Context, stream string, e Event, due time.Time) error {
	if err := p.Check(e); err != nil {
		return err
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	member := worker.EncodeEnvelope("d-"+hex.EncodeToString(tok[:]), e.fields())
	return p.client.ZAdd(ctx, worker.DelayedKey(stream), redis.Z{Score: float64(due.UnixMilli()), Member: member}).Err()
}

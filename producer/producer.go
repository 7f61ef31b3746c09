// Package producer publishes events to streams: one at a time, in pipelined
// batches, or delayed until a due time, to a stream or to the partitions of a
// partitioned one, routed by a partition key. It never retries an XADD on its own
// after an error, because a write whose reply was lost may have happened; give
// events an idempotency key (Event.ID) and let the worker's dedupe window
// absorb a resend instead.
//
// A write Redis refuses because of how the client connects (a wrong
// password, a disabled user, an ACL that forbids it, a database the server
// does not have) fails on every path with an *AccessError that says what to
// check; it is never reported as sent.
package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// DefaultMaxPayload is the default cap on an event's data.
const DefaultMaxPayload = 1 << 20

// ErrTooLarge is returned for an event whose data is over the cap.
var ErrTooLarge = errors.New("event too large")

// ErrNoType is returned for an event without a type.
var ErrNoType = errors.New("event has no type")

// ErrTooManyFields is returned for an event of more than wire.MaxFields
// field/value pairs: no retry copy of it could be made field by field, so
// the worker would dead-letter it at its first failure.
var ErrTooManyFields = errors.New("event has too many fields")

// Event is one message to publish.
type Event struct {
	// Type routes the event to a handler. Required.
	Type string
	// Data is the payload, JSON by convention.
	Data []byte
	// ID is an optional idempotency key.
	ID string
	// Key is an optional partition key, sent as the key field: on a
	// partitioned stream events with the same key go to the same partition,
	// in the order sent, and the worker runs them one at a time, in that
	// order (see Producer.Route). On a stream that is not partitioned the
	// field is sent all the same. Default: none.
	Key string
	// Metadata are extra fields passed to the handler (e.g. traceparent).
	Metadata map[string]string
}

// Options configure a Producer. The zero value is usable.
type Options struct {
	// MaxPayload caps len(Event.Data). Default: 1 MiB.
	MaxPayload int
	// MaxLen, when positive, trims the stream to about this many entries
	// (XADD MAXLEN ~) on every append. Delayed events are not trimmed when
	// they are scheduled, nor when the worker moves them into the stream.
	// Default: 0, no trimming.
	MaxLen int64
	// Partitions, when more than 1, splits every stream this producer sends
	// to into that many partition streams, {S:0} … {S:n-1}
	// (wire.PartitionStream), and each event goes to one of them (see
	// Route). It must equal the worker's WORKER_PARTITIONS, or events land
	// in partitions no worker reads. Default: 0, not partitioned.
	Partitions int
	// Settings names where the client's user, password and database come
	// from, for the advice of an *AccessError: `REDIS_URL="…"`, say, with the
	// password redacted (config.Redact). It must not hold a password.
	// Default: "the Redis URL".
	Settings string
	// TracerProvider makes the publish spans: every Publish call is a span,
	// and each event it sends carries the span's W3C trace context in its
	// traceparent (and tracestate) fields, so the worker's process span joins
	// the trace. Default: otel.GetTracerProvider(), a no-op unless the
	// program set one; the producer never sets it.
	TracerProvider trace.TracerProvider
}

// Producer publishes events with a Redis client. Create the client with
// MaxRetries: -1 (NewClient and Connect do): go-redis would otherwise resend a
// write whose connection broke, which can duplicate events.
type Producer struct {
	client redis.UniversalClient
	opts   Options
	tracer trace.Tracer
	next   atomic.Uint64 // the round-robin partition counter

	// SendItems (send.go): the client's autopipeline, nil when it has none,
	// and the batch sent last, which the next one follows.
	apOnce   sync.Once
	ap       *redis.AutoPipeliner
	sendMu   sync.Mutex
	sendLast *Pending
}

// New returns a Producer.
func New(client redis.UniversalClient, opts Options) *Producer {
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if opts.Settings == "" {
		opts.Settings = "the Redis URL"
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	return &Producer{client: client, opts: opts, tracer: opts.TracerProvider.Tracer(tracerName)}
}

// NewClient returns a client for url that never resends a command by itself.
// For TLS files (REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY) build the client
// with config.Redis.NewClient(config.NoRetries()) instead; this is that
// constructor with the URL alone.
func NewClient(url string) (*redis.Client, error) {
	opt, err := config.Redis{RedisURL: url}.Options(config.NoRetries())
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

// MaxPayload is the cap on an event's data this producer enforces.
func (p *Producer) MaxPayload() int { return p.opts.MaxPayload }

// Check validates an event without sending it.
func (p *Producer) Check(e Event) error {
	if e.Type == "" {
		return ErrNoType
	}
	if len(e.Data) > p.opts.MaxPayload {
		return fmt.Errorf("%w: data is %d bytes, the cap is %d bytes; store the payload elsewhere and send a reference", ErrTooLarge, len(e.Data), p.opts.MaxPayload)
	}
	if n := e.pairs(); n > wire.MaxFields {
		return fmt.Errorf("%w: %d field/value pairs (type, data, id, key and %d metadata), the most is %d", ErrTooManyFields, n, len(e.Metadata), wire.MaxFields)
	}
	return nil
}

// pairs is how many field/value pairs e is sent as.
func (e Event) pairs() int {
	n := 0
	e.eachExtra(func(string, string) { n++ })
	return 2 + n
}

// fields are e's field/value pairs as strings, for a delayed envelope.
func (e Event) fields() []string {
	f := make([]string, 0, 8+2*len(e.Metadata))
	f = append(f, wire.FieldType, e.Type, wire.FieldData, string(e.Data))
	e.eachExtra(func(k, v string) { f = append(f, k, v) })
	return f
}

// values are e's field/value pairs for XADD: as []any, go-redis writes Data
// as it is, without copying it into a string, and boxes no value twice.
func (e Event) values() []any {
	f := make([]any, 0, 8+2*len(e.Metadata))
	f = append(f, wire.FieldType, e.Type, wire.FieldData, e.Data)
	e.eachExtra(func(k, v string) { f = append(f, k, v) })
	return f
}

// eachExtra calls add with the fields after type and data: id, key and the
// metadata.
func (e Event) eachExtra(add func(k, v string)) {
	if e.ID != "" {
		add(wire.FieldID, e.ID)
	}
	if e.Key != "" {
		add(wire.FieldKey, e.Key)
	}
	for k, v := range e.Metadata {
		if k == wire.FieldKey && e.Key != "" {
			continue // Key wins
		}
		add(k, v)
	}
}

// xadd returns the XADD that appends *e to *stream, with the arguments
// go-redis's XAdd would give it (XADD stream [MAXLEN ~ n] * field value …).
// It is built here in one slice, with the stream, type, id and key passed
// by pointer: boxing a pointer allocates nothing, which in a pipelined batch
// is most of what a command costs the client. *stream and *e must not change
// until the command has run. With an arena (a batch's), the slice and the
// data's string header come out of it too.
func (p *Producer) xadd(ctx context.Context, stream *string, e *Event, a *xaddArena) *redis.StringCmd {
	n := 3 + 3 + 2*e.pairs()
	var args []any
	var data any
	if a != nil {
		args, data = a.args(n), a.data(e.Data)
	} else {
		args, data = make([]any, 0, n), e.Data
	}
	args = append(args, "xadd", stream)
	if p.opts.MaxLen > 0 {
		args = append(args, "maxlen", "~", p.opts.MaxLen)
	}
	args = append(args, "*", wire.FieldType, &e.Type, wire.FieldData, data)
	if e.ID != "" {
		args = append(args, wire.FieldID, &e.ID)
	}
	if e.Key != "" {
		args = append(args, wire.FieldKey, &e.Key)
	}
	for k, v := range e.Metadata {
		if k == wire.FieldKey && e.Key != "" {
			continue // Key wins
		}
		args = append(args, k, v)
	}
	return redis.NewStringCmd(ctx, args...)
}

// xaddArena holds what the XADDs of a batch of events point to, in a few
// allocations for the batch where each XADD made two of its own: its
// argument slice, and its data boxed as an interface value (a []byte is
// boxed by copying its header to the heap). Its memory lives as long as any
// command of the batch.
type xaddArena struct {
	buf   []any    // argument slices are cut from it, each to its own capacity
	views []string // each event's data, as a string that shares its bytes
}

// newXaddArena returns an arena for n events.
func newXaddArena(n int) *xaddArena {
	return &xaddArena{views: make([]string, 0, n)}
}

// args returns an empty slice with room for n arguments.
func (a *xaddArena) args(n int) []any {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]any, 0, max(n, (cap(a.views)-len(a.views)+1)*xaddArgsGuess))
	}
	at := len(a.buf)
	a.buf = a.buf[:at+n]
	return a.buf[at : at : at+n]
}

// xaddArgsGuess is the room xadd takes for an event of a type and data
// only: events with more use up a chunk sooner, and the next is made.
const xaddArgsGuess = 3 + 3 + 2*2

// data returns b as a *string that shares b's bytes: go-redis writes a
// *string as it writes a []byte, without copying it first. b must not
// change until the command has run, which xadd asks of the event anyway.
func (a *xaddArena) data(b []byte) *string {
	if len(a.views) == cap(a.views) {
		a.views = make([]string, 0, max(16, cap(a.views))) // more events than said: the old views stay where they are
	}
	a.views = append(a.views, unsafe.String(unsafe.SliceData(b), len(b)))
	return &a.views[len(a.views)-1]
}

// delayed returns the sorted-set member and score that schedule e at due.
// The random token keeps two identical events two members.
func delayed(e Event, due time.Time) redis.Z {
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	member := wire.EncodeEnvelope("d-"+hex.EncodeToString(tok[:]), e.fields())
	return redis.Z{Score: float64(due.UnixMilli()), Member: member}
}

// Publish appends one event to stream, or to the partition Route picks,
// and returns its entry ID.
func (p *Producer) Publish(ctx context.Context, stream string, e Event) (_ string, err error) {
	ctx, span := p.startPublish(ctx, stream, 1)
	defer func() { endPublish(span, err) }()
	e = traced(ctx, e)
	if err := p.Check(e); err != nil {
		return "", err
	}
	key, err := p.Route(stream, e)
	if err != nil {
		return "", err
	}
	cmd := p.xadd(ctx, &key, &e, nil)
	_ = p.client.Process(ctx, cmd) // the error is the command's
	id, err := cmd.Result()
	return id, p.classify(err)
}

// PublishBatch appends events in one pipelined round trip and returns their
// entry IDs in order; on a partitioned stream each event goes to the
// partition Route picks, and events of one partition keep their order.
// Every event is checked and routed before anything is sent. When
// some writes fail, the error is a *BatchError and the returned IDs are those
// Redis confirmed, with "" for the others.
func (p *Producer) PublishBatch(ctx context.Context, stream string, events []Event) (_ []string, err error) {
	ctx, span := p.startPublish(ctx, stream, len(events))
	defer func() { endPublish(span, err) }()
	events = tracedAll(ctx, events, func(e Event) Event { return e }, func(_ Event, e Event) Event { return e })
	for i, e := range events {
		if err := p.Check(e); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	keys, err := p.routes(stream, func(i int) Event { return events[i] }, len(events))
	if err != nil {
		return nil, err
	}
	pipe := p.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(events))
	arena := newXaddArena(len(events))
	for i := range events {
		cmds[i] = p.xadd(ctx, &keys[i], &events[i], arena)
		_ = pipe.Process(ctx, cmds[i]) // queues it
	}
	failUnread(pipe.Exec(ctx)) // then each command has its own error, read below
	ids := make([]string, len(cmds))
	var berr *BatchError
	for i, c := range cmds {
		if err := p.classify(c.Err()); err != nil {
			berr = berr.add(i, len(cmds), err)
			continue
		}
		ids[i] = c.Val()
	}
	if berr != nil {
		return ids, berr
	}
	return ids, nil
}

// PublishDelayed schedules an event to enter the stream (or the partition
// Route picks) at due; the worker's promote loop moves it in.
func (p *Producer) PublishDelayed(ctx context.Context, stream string, e Event, due time.Time) (err error) {
	ctx, span := p.startPublish(ctx, stream, 1)
	defer func() { endPublish(span, err) }()
	e = traced(ctx, e)
	if err := p.Check(e); err != nil {
		return err
	}
	key, err := p.Route(stream, e)
	if err != nil {
		return err
	}
	return p.classify(p.client.ZAdd(ctx, wire.DelayedKey(key), delayed(e, due)).Err())
}

// Item is one event of a mixed batch: appended now, or scheduled in the
// stream's delayed set when Due is set.
type Item struct {
	Event Event
	// Due, when not zero, is when the event enters the stream. Default:
	// zero, append now.
	Due time.Time
	// UniqueFor, when positive, appends the event only if no event with
	// its ID was appended to the stream by a unique publish within this
	// window (see PublishUnique); otherwise Result.Duplicate is set. It
	// needs Event.ID and cannot be combined with Due. Default: 0, append
	// whatever was sent before.
	UniqueFor time.Duration
}

// Result is what became of one Item.
type Result struct {
	// Stream is the stream key the event went to: the stream, or the
	// partition Route picked.
	Stream string
	// ID is the new entry ID of an appended event; empty for a delayed one
	// and for a failed write. For a duplicate, the ID of the entry that the
	// first unique publish of the event added.
	ID string
	// Duplicate is true when a unique publish (Item.UniqueFor) added
	// nothing, because an event with the same ID was added within the
	// window.
	Duplicate bool
	// Err is nil when Redis confirmed the write. A network error or timeout
	// means the write may or may not have happened; it was not resent. An
	// *AccessError means Redis refused the connection or the command: the
	// write did not happen.
	Err error
}

// PublishItems appends and schedules items in one pipelined round trip, in
// order (each to the partition Route picks, on a partitioned stream), and
// returns one Result per item. Every item is checked and routed before
// anything is sent. When some writes fail, the error is a *BatchError and the
// Results say which.
func (p *Producer) PublishItems(ctx context.Context, stream string, items []Item) (_ []Result, err error) {
	ctx, span := p.startPublish(ctx, stream, len(items))
	defer func() { endPublish(span, err) }()
	b, err := p.prepare(ctx, stream, items)
	if err != nil {
		return nil, err
	}
	failUnread(b.pipe.Exec(ctx)) // then each command has its own error, read below
	return b.results()
}

// itemBatch is a batch of items checked, routed and queued in a pipeline,
// one command per item, not yet sent.
type itemBatch struct {
	p    *Producer
	pipe redis.Pipeliner
	keys []string      // the stream each item goes to
	cmds []redis.Cmder // the command of each item
}

// prepare checks and routes items and queues their commands in a pipeline,
// without sending it. The commands point into items: they must not change
// until the commands have run.
func (p *Producer) prepare(ctx context.Context, stream string, items []Item) (itemBatch, error) {
	items = tracedAll(ctx, items, func(it Item) Event { return it.Event }, func(it Item, e Event) Item { it.Event = e; return it })
	for i, it := range items {
		if err := p.checkItem(it); err != nil {
			return itemBatch{}, fmt.Errorf("item %d: %w", i, err)
		}
	}
	keys, err := p.routes(stream, func(i int) Event { return items[i].Event }, len(items))
	if err != nil {
		return itemBatch{}, err
	}
	for i, it := range items {
		if it.UniqueFor == 0 {
			continue
		}
		if err := p.checkUniqueSlot(keys[i], it.Event.ID); err != nil {
			return itemBatch{}, fmt.Errorf("item %d: %w", i, err)
		}
	}
	b := itemBatch{p: p, pipe: p.client.Pipeline(), keys: keys, cmds: make([]redis.Cmder, len(items))}
	arena := newXaddArena(len(items))
	for i, it := range items {
		switch {
		case it.UniqueFor > 0:
			b.cmds[i] = p.queueUnique(ctx, b.pipe, keys[i], it.Event, it.UniqueFor)
		case it.Due.IsZero():
			cmd := p.xadd(ctx, &keys[i], &items[i].Event, arena)
			_ = b.pipe.Process(ctx, cmd) // queues it
			b.cmds[i] = cmd
		default:
			b.cmds[i] = b.pipe.ZAdd(ctx, wire.DelayedKey(keys[i]), delayed(it.Event, it.Due))
		}
	}
	return b, nil
}

// results reads what became of each item once its command has run.
func (b itemBatch) results() ([]Result, error) {
	res := make([]Result, len(b.cmds))
	var berr *BatchError
	for i, c := range b.cmds {
		res[i].Stream = b.keys[i]
		if err := b.p.classify(c.Err()); err != nil {
			res[i].Err = err
			berr = berr.add(i, len(b.cmds), err)
			continue
		}
		switch x := c.(type) {
		case *redis.StringCmd:
			res[i].ID = x.Val()
		case *redis.Cmd: // unique.go
			id, dup, err := uniqueReply(x)
			if err != nil {
				res[i].Err = err
				berr = berr.add(i, len(b.cmds), err)
				continue
			}
			res[i].ID, res[i].Duplicate = id, dup
		}
	}
	if berr != nil {
		return res, berr
	}
	return res, nil
}

// checkItem is Check, and for a unique item what unique publishing needs.
func (p *Producer) checkItem(it Item) error {
	if err := p.Check(it.Event); err != nil {
		return err
	}
	if it.UniqueFor == 0 {
		return nil
	}
	if !it.Due.IsZero() {
		return ErrUniqueDelayed
	}
	return checkUnique(it.Event, it.UniqueFor)
}

// BatchError reports the writes of one pipelined batch that Redis did not
// confirm. After a network error or a timeout those writes may or may not have
// happened; nothing was resent.
type BatchError struct {
	// Failed is how many writes of the batch were not confirmed.
	Failed int
	// Total is the size of the batch.
	Total int
	// First is the index of the first unconfirmed write.
	First int
	// Err is the error of that write.
	Err error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("%d of %d writes not confirmed (first: #%d): %v", e.Failed, e.Total, e.First, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

func (e *BatchError) add(i, total int, err error) *BatchError {
	if e == nil {
		return &BatchError{Failed: 1, Total: total, First: i, Err: err}
	}
	e.Failed++
	return e
}

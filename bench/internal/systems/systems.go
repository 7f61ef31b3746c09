// Package systems holds the queues the benchmarks compare — streamworker
// itself, a bare go-redis loop, asynq and Watermill's Redis Streams
// subscriber — behind one interface, each used the way its documentation
// shows, so that the same messages go through the same no-op handler and
// every consume ends only when the system's own bookkeeping in Redis shows
// every message acknowledged.
package systems

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// The systems, by the names the harness and its flags use.
const (
	Ours = "ours" // streamworker: producer.PublishBatch, worker.Run
	Bare = "bare" // go-redis alone: pipelined XADD, XREADGROUP + one XACK per batch
	// BarePipelined is the bare loop with the XACK of a batch and the next
	// XREADGROUP in one pipeline: one round trip per batch.
	BarePipelined = "bare-pipelined"
	Asynq         = "asynq"     // github.com/hibiken/asynq: Client.Enqueue, Server
	Watermill     = "watermill" // Watermill's redisstream Publisher, and Subscriber under a Router
)

// Names lists every system, ours first.
var Names = []string{Ours, Bare, BarePipelined, Asynq, Watermill}

// MsgType is the type (asynq task type, streamworker event type) of every
// benchmark message.
const MsgType = "bench.noop"

// Config is what a system is built from. Zero fields take the defaults
// given, which are each system's documented or idiomatic settings.
type Config struct {
	// Addr is the Redis host:port. Required.
	Addr string
	// Protocol is the RESP version of every client, 2 or 3. Default: 0,
	// go-redis's default (3).
	Protocol int
	// Queue is the stream (ours, bare, Watermill's topic) or queue (asynq)
	// the messages go through. It should be fresh: asynq's completion check
	// counts the queue's processed tasks since it was created. Required.
	Queue string
	// Concurrency is how many handlers run at once: WORKER_CONCURRENCY for
	// ours (default 64), Config.Concurrency for asynq (default 50), the
	// number of Router handlers, each its own subscription, for Watermill
	// (default 16). The bare loop is one goroutine and ignores it.
	Concurrency int
	// FetchCount is WORKER_FETCH_COUNT for ours (default 256) and the
	// XREADGROUP COUNT of the bare loop (default 100). The peers ignore it:
	// asynq dequeues one task per call, Watermill reads with COUNT 1.
	FetchCount int
	// Batch is how many messages one pipelined round trip carries when ours
	// (PublishBatch) or the bare loop produce. Default: 100.
	Batch int
	// Producers is how many goroutines publish at once for asynq and
	// Watermill, which have no batch path: Client.Enqueue and
	// Publisher.Publish send one command per message, waiting for each.
	// Default: 50.
	Producers int
	// MaxLen, when positive, trims the stream with XADD MAXLEN ~ on every
	// append (ours: producer.Options.MaxLen; bare: the same XADD argument;
	// Watermill: PublisherConfig.DefaultMaxlen). asynq ignores it.
	MaxLen int64

	// The settings below are ours only, but for FailEvery, FailAll,
	// RetryBase and PromoteInterval, which asynq takes too (its dead letters
	// are its archived tasks, its retries wait RetryDelayFunc and then
	// DelayedTaskCheckInterval). The other systems ignore them.

	// Partitions, when above 1, is WORKER_PARTITIONS and the producer's
	// Options.Partitions: the stream is split into that many partition
	// streams, each event goes to one by its key, and the worker runs one
	// message of a key at a time, in order.
	Partitions int
	// Keys, when positive, gives each produced event the partition key
	// k-<i mod Keys>, and has the handler check that the messages of each
	// key run one at a time and in the order they were added (Violations).
	Keys int
	// FailEvery, when positive, makes every FailEvery-th message fail its
	// first attempt with an ordinary error: the worker retries it (in place
	// at the daemon's defaults; through S:delayed with DelayedRetries), and
	// the retry succeeds.
	FailEvery int
	// DelayedRetries sends every retry through S:delayed
	// (WORKER_RETRY_IN_PLACE_MAX=0) instead of retrying it in place.
	DelayedRetries bool
	// FailAll makes every message fail with worker.Permanent: each is
	// dead-lettered at once.
	FailAll bool
	// RetryBase is WORKER_RETRY_BASE (and WORKER_RETRY_MAX, so that every
	// retry waits about that long); asynq's RetryDelayFunc returns it.
	// Default: the daemon's; asynq's exponential delay.
	RetryBase time.Duration
	// PromoteInterval is WORKER_PROMOTE_INTERVAL, and asynq's
	// DelayedTaskCheckInterval. Default: the daemon's, 250ms; asynq's, 5s.
	PromoteInterval time.Duration
}

func (c Config) withDefaults(name string) Config {
	if c.Concurrency <= 0 {
		switch name {
		case Ours:
			c.Concurrency = 64
		case Asynq:
			c.Concurrency = 50
		case Watermill:
			c.Concurrency = 16
		default:
			c.Concurrency = 1
		}
	}
	if c.FetchCount <= 0 {
		if name == Ours {
			c.FetchCount = 256
		} else {
			c.FetchCount = 100
		}
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Producers <= 0 {
		c.Producers = 50
	}
	return c
}

// options are the go-redis options of a client of the system under test.
func (c Config) options() *redis.Options {
	return &redis.Options{Addr: c.Addr, Protocol: c.Protocol}
}

// url is Addr as a redis:// URL, for the constructors that take one.
func (c Config) url() string {
	u := "redis://" + c.Addr + "/0"
	if c.Protocol != 0 {
		u += "?protocol=" + strconv.Itoa(c.Protocol)
	}
	return u
}

// Handler is the benchmark's handler: it gets each message's payload, the
// bytes given to Produce or Send. It must not keep or modify them.
type Handler func(payload []byte)

// System is one queue under test. Produce, Send and Stored may be used
// without a consumer; Start, Ready and Wait run one, once. Close ends
// everything and may be called at any time, more than once.
type System interface {
	// Produce publishes n messages carrying payload the fastest way the
	// system offers (see Config.Batch and Config.Producers).
	Produce(ctx context.Context, n int, payload []byte) error
	// Send publishes one message, as an application sends one event.
	Send(ctx context.Context, payload []byte) error
	// Stored is how many messages wait in Redis to be consumed.
	Stored(ctx context.Context) (int64, error)
	// Start starts the consumer, which runs handle on each message, and
	// expects n messages in all. It does not wait for the consumer to be
	// reading: with a backlog the work starts at once.
	Start(ctx context.Context, n int, handle Handler) error
	// Ready returns once the consumer is reading, so that a message sent
	// now is received by a consumer already waiting for it.
	Ready(ctx context.Context) error
	// Wait returns once the handler has run n times and Redis shows every
	// message acknowledged (nothing pending, nothing left to deliver).
	Wait(ctx context.Context) error
	// Handled is how many times the handler has run: n after Wait, more if
	// a message was delivered twice.
	Handled() int64
	// Delete removes the system's keys from Redis, with a client of its
	// own: it may be called after Close.
	Delete(ctx context.Context) error
	// Close stops the consumer, if it runs, and closes every client.
	Close() error
}

// New returns the system called name (one of Names).
func New(name string, cfg Config) (System, error) {
	if cfg.Addr == "" || cfg.Queue == "" {
		return nil, errors.New("systems: Config.Addr and Config.Queue are required")
	}
	cfg = cfg.withDefaults(name)
	switch name {
	case Ours:
		return newOurs(cfg)
	case Bare:
		return newBare(cfg, false), nil
	case BarePipelined:
		return newBare(cfg, true), nil
	case Asynq:
		return newAsynq(cfg), nil
	case Watermill:
		return newWatermill(cfg)
	}
	return nil, fmt.Errorf("systems: unknown system %q (want one of %s)", name, strings.Join(Names, ", "))
}

// counter counts handled messages and tells when there were n.
type counter struct {
	n   int64
	got atomic.Int64
	all chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), all: make(chan struct{})} }

func (c *counter) add() {
	if c.got.Add(1) == c.n {
		close(c.all)
	}
}

func (c *counter) handled() int64 {
	if c == nil {
		return 0
	}
	return c.got.Load()
}

// wait returns once n messages were handled, or the consumer bg (nil for
// none) stopped, or ctx ends.
func (c *counter) wait(ctx context.Context, bg *background) error {
	if c == nil {
		return errors.New("systems: Wait before Start")
	}
	var stopped <-chan struct{}
	if bg != nil {
		stopped = bg.done
	}
	select {
	case <-c.all:
		return nil
	case <-stopped:
		return fmt.Errorf("consumer stopped after %d of %d messages: %w", c.handled(), c.n, bg.result())
	case <-ctx.Done():
		return fmt.Errorf("handled %d of %d: %w", c.handled(), c.n, ctx.Err())
	}
}

// background is a consumer's goroutine and, once it returned, its error.
type background struct {
	done chan struct{}
	err  error
}

func goBackground(run func() error) *background {
	b := &background{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.err = run()
	}()
	return b
}

// result is the goroutine's error after it returned; a nil error is an
// error too when the consumer was meant to go on.
func (b *background) result() error {
	if b.err == nil {
		return errors.New("returned early without an error")
	}
	return b.err
}

// join waits for the goroutine to return after it was told to stop, for at
// most limit.
func (b *background) join(limit time.Duration) error {
	if b == nil {
		return nil
	}
	select {
	case <-b.done:
		return b.err
	case <-time.After(limit):
		return fmt.Errorf("consumer did not stop within %s", limit)
	}
}

// pollInterval is how often completion and readiness checks ask Redis. They
// run after the handler has seen every message (or before any is sent), so
// they do not compete with the work they check.
const pollInterval = 500 * time.Microsecond

// permanentError stops a poll: the check found a wrong result, not one
// that is not ready yet.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// poll calls check until it says done or returns a permanentError, or ctx
// ends. Other errors are retried.
func poll(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		done, err := check(ctx)
		if err == nil && done {
			return nil
		}
		if pe := (permanentError{}); errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", what, pe.error)
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// stream is what the three stream-based systems share: the stream, its
// group, and a client of the harness's own to check on them.
type stream struct {
	cfg   Config
	admin *redis.Client
	key   string
	group string
}

func newStream(cfg Config) stream {
	return stream{cfg: cfg, admin: redis.NewClient(cfg.options()), key: cfg.Queue, group: "bench"}
}

func (s stream) Stored(ctx context.Context) (int64, error) {
	return s.admin.XLen(ctx, s.key).Result()
}

// acked polls until the group has nothing pending and nothing undelivered.
func (s stream) acked(ctx context.Context) error {
	return poll(ctx, "waiting for acknowledgements", func(ctx context.Context) (bool, error) {
		gs, err := s.admin.XInfoGroups(ctx, s.key).Result()
		if err != nil {
			return false, err
		}
		for _, g := range gs {
			if g.Name == s.group {
				return g.Pending == 0 && g.Lag == 0, nil
			}
		}
		return false, fmt.Errorf("group %q not found on %q", s.group, s.key)
	})
}

// reading polls until a client is blocked in XREADGROUP, waiting for new
// entries. (Redis 7.0 does not list a consumer whose only read timed out
// on an empty stream, so XINFO CONSUMERS cannot tell.) The check is
// server-wide: the harness's Redis serves one system at a time.
func (s stream) reading(ctx context.Context) error {
	return poll(ctx, "waiting for the consumer to block in XREADGROUP", func(ctx context.Context) (bool, error) {
		list, err := s.admin.ClientList(ctx).Result()
		if err != nil {
			return false, err
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " cmd=xreadgroup") && strings.Contains(line, " flags=b") {
				return true, nil
			}
		}
		return false, nil
	})
}

func (s stream) createGroup(ctx context.Context) error {
	err := s.admin.XGroupCreateMkStream(ctx, s.key, s.group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("creating group %q on %q: %w", s.group, s.key, err)
	}
	return nil
}

func (s stream) Delete(ctx context.Context) error {
	c := redis.NewClient(s.cfg.options())
	defer c.Close()
	return c.Unlink(ctx, s.key, wire.DelayedKey(s.key), wire.DeadLetterKey(s.key)).Err()
}

// closeClient closes c, taking a client already closed as closed.
func closeClient(c interface{ Close() error }) error {
	if err := c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return nil
}

// fanOut runs publish n times over producers goroutines and returns the
// first error, after which the others stop early.
func fanOut(ctx context.Context, n, producers int, publish func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := publish(ctx); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// Payload returns the benchmark's message payload: size bytes of JSON (at
// least 100), an order whose note is padded with 'x'.
func Payload(size int) []byte {
	p := []byte(`{"order_id":"ord-0000000001","customer":"c-42","amount_cents":129900,"currency":"EUR","note":"`)
	for len(p) < max(size, 100)-2 {
		p = append(p, 'x')
	}
	return append(p, '"', '}')
}

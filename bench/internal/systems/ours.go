package systems

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// ours is streamworker: producer.PublishBatch to produce, and worker.Run —
// the daemon's own runtime with its metrics, middleware (Recover, Timeout,
// Logging, metrics) and JSON logger at info level, promote loop included,
// HTTP off — to consume.
type ours struct {
	stream
	pclient  *redis.Client
	producer *producer.Producer
	wcfg     config.Config
	wclient  redis.UniversalClient

	count *counter
	stop  context.CancelFunc
	run   *background

	firsts     atomic.Int64 // first attempts seen, for FailEvery
	order      *orderCheck  // with Keys
	violations atomic.Int64
}

func newOurs(cfg Config) (*ours, error) {
	s := newStream(cfg)
	pclient, err := producer.NewClient(cfg.url())
	if err != nil {
		return nil, err
	}
	wcfg := config.Default()
	wcfg.RedisURL = cfg.url()
	wcfg.Streams = []string{s.key}
	wcfg.Group = s.group
	wcfg.Consumer = "bench-ours"
	wcfg.HTTPAddr = "off"
	wcfg.Concurrency = cfg.Concurrency
	wcfg.FetchCount = cfg.FetchCount
	// Only shutdown waits on BLOCK (a read in flight is not cancelled), and
	// a blocked read returns as soon as a message arrives, so a short block
	// changes no number and keeps every run's shutdown short.
	wcfg.Block = 100 * time.Millisecond
	if cfg.Partitions > 1 {
		wcfg.Partitions = cfg.Partitions
	}
	if cfg.RetryBase > 0 {
		wcfg.RetryBase, wcfg.RetryMax = cfg.RetryBase, cfg.RetryBase
	}
	if cfg.PromoteInterval > 0 {
		wcfg.PromoteInterval = cfg.PromoteInterval
	}
	if cfg.DelayedRetries {
		wcfg.RetryInPlaceMax = 0
	}
	if err := wcfg.Validate(); err != nil {
		_ = pclient.Close()
		return nil, err
	}
	wclient, err := worker.NewRedisClient(wcfg)
	if err != nil {
		_ = pclient.Close()
		return nil, err
	}
	return &ours{
		stream: s, pclient: pclient, wcfg: wcfg, wclient: wclient,
		producer: producer.New(pclient, producer.Options{MaxLen: cfg.MaxLen, Partitions: cfg.Partitions}),
	}, nil
}

// streams are the stream keys the events go to: the stream, or its
// partitions.
func (o *ours) streams() []string {
	if o.cfg.Partitions > 1 {
		return wire.PartitionStreams(o.key, o.cfg.Partitions)
	}
	return []string{o.key}
}

func (o *ours) Stored(ctx context.Context) (int64, error) {
	var n int64
	for _, s := range o.streams() {
		l, err := o.admin.XLen(ctx, s).Result()
		if err != nil {
			return 0, err
		}
		n += l
	}
	return n, nil
}

func (o *ours) Delete(ctx context.Context) error {
	c := redis.NewClient(o.cfg.options())
	defer c.Close()
	var keys []string
	for _, s := range o.streams() {
		keys = append(keys, s, wire.DelayedKey(s), wire.DeadLetterKey(s))
	}
	return c.Unlink(ctx, keys...).Err()
}

// Violations is how many messages ran while an earlier message of their key
// was running or after a later one (with Config.Keys).
func (o *ours) Violations() int64 { return o.violations.Load() }

// DeadLettered is how many entries the dead-letter streams hold.
func (o *ours) DeadLettered(ctx context.Context) (int64, error) {
	var n int64
	for _, s := range o.streams() {
		l, err := o.admin.XLen(ctx, wire.DeadLetterKey(s)).Result()
		if err != nil {
			return 0, err
		}
		n += l
	}
	return n, nil
}

func (o *ours) Produce(ctx context.Context, n int, payload []byte) error {
	events := make([]producer.Event, min(o.cfg.Batch, n))
	for i := range events {
		events[i] = producer.Event{Type: MsgType, Data: payload}
	}
	var keys []string
	for i := range o.cfg.Keys {
		keys = append(keys, fmt.Sprintf("k-%04d", i))
	}
	for sent := 0; sent < n; sent += len(events) {
		batch := events[:min(len(events), n-sent)]
		for i := range batch {
			if len(keys) > 0 {
				batch[i].Key = keys[(sent+i)%len(keys)]
			}
		}
		if _, err := o.producer.PublishBatch(ctx, o.key, batch); err != nil {
			return err
		}
	}
	return nil
}

func (o *ours) Send(ctx context.Context, payload []byte) error {
	_, err := o.producer.Publish(ctx, o.key, producer.Event{Type: MsgType, Data: payload})
	return err
}

func (o *ours) Start(ctx context.Context, n int, handle Handler) error {
	if o.count != nil {
		return errors.New("systems: Start called twice")
	}
	o.count = newCounter(n)
	if o.cfg.Keys > 0 {
		o.order = newOrderCheck()
	}
	mux := worker.NewMux()
	mux.HandleFunc(MsgType, func(_ context.Context, m *worker.Message) error {
		if o.order != nil {
			k, ok := o.order.begin(m.Key, m.ID)
			if !ok {
				o.violations.Add(1)
			}
			defer o.order.end(k)
		}
		handle(m.Data)
		switch {
		case o.cfg.FailAll:
			o.count.add() // its last attempt: dead-lettered now
			return worker.Permanent(errBench)
		case o.cfg.FailEvery > 0 && m.Attempt == 1 && o.firsts.Add(1)%int64(o.cfg.FailEvery) == 0:
			return errBench // retried, and counted when the retry succeeds
		}
		o.count.add()
		return nil
	})
	// The daemon's logger, writing nowhere: at info level the hot path logs
	// nothing, and the one "starting" line would only clutter the output.
	logger := worker.NewLogger(o.wcfg, io.Discard)
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	o.stop = stop
	o.run = goBackground(func() error {
		return worker.Run(rctx, o.wcfg, mux, worker.WithRedis(o.wclient), worker.WithLogger(logger))
	})
	return nil
}

func (o *ours) Ready(ctx context.Context) error { return o.reading(ctx) }

func (o *ours) Wait(ctx context.Context) error {
	if err := o.count.wait(ctx, o.run); err != nil {
		return err
	}
	for _, s := range o.streams() {
		st := o.stream
		st.key = s
		if err := st.acked(ctx); err != nil {
			return err
		}
	}
	if !o.cfg.FailAll {
		return nil
	}
	return poll(ctx, "waiting for the dead letters", func(ctx context.Context) (bool, error) {
		n, err := o.DeadLettered(ctx)
		return n >= o.count.n, err
	})
}

// errBench is the failure of a message the benchmark makes fail.
var errBench = errors.New("benchmark failure")

// orderCheck tells whether the messages of each key run one at a time and in
// the order of their entry IDs (one key's entries are all in one partition).
// Its keys are spread over shards, each with its own lock: one lock taken
// by every handler twice a message was about 5% of the worker's CPU in the
// order phase, the harness's cost rather than the runtime's.
type orderCheck struct{ shards [64]orderShard }

type orderShard struct {
	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	shard    *orderShard
	running  bool
	ms, seq  uint64 // the last entry ID begun
	seenOnce bool
}

func newOrderCheck() *orderCheck {
	c := &orderCheck{}
	for i := range c.shards {
		c.shards[i].keys = map[string]*keyState{}
	}
	return c
}

// begin records that the message id of key starts, and reports whether
// that is in order; end(k) records that it is done.
func (c *orderCheck) begin(key, id string) (*keyState, bool) {
	ms, seq := parseID(id)
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	sh := &c.shards[h%uint32(len(c.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := sh.keys[key]
	if k == nil {
		k = &keyState{shard: sh}
		sh.keys[key] = k
	}
	ok := !k.running && (!k.seenOnce || ms > k.ms || (ms == k.ms && seq > k.seq))
	k.running, k.ms, k.seq, k.seenOnce = true, ms, seq, true
	return k, ok
}

func (c *orderCheck) end(k *keyState) {
	k.shard.mu.Lock()
	k.running = false
	k.shard.mu.Unlock()
}

// parseID splits a stream entry ID, ms-seq.
func parseID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

func (o *ours) Handled() int64 { return o.count.handled() }

func (o *ours) Close() error {
	if o.stop != nil {
		o.stop()
	}
	err := o.run.join(o.wcfg.ShutdownTimeout + 10*time.Second)
	return errors.Join(err, closeClient(o.wclient), closeClient(o.pclient), closeClient(o.admin))
}

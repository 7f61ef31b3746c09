package systems

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/producer"
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
		producer: producer.New(pclient, producer.Options{MaxLen: cfg.MaxLen}),
	}, nil
}

func (o *ours) Produce(ctx context.Context, n int, payload []byte) error {
	events := make([]producer.Event, min(o.cfg.Batch, n))
	for i := range events {
		events[i] = producer.Event{Type: MsgType, Data: payload}
	}
	for sent := 0; sent < n; sent += len(events) {
		batch := events[:min(len(events), n-sent)]
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
	mux := worker.NewMux()
	mux.HandleFunc(MsgType, func(_ context.Context, m *worker.Message) error {
		handle(m.Data)
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
	return o.acked(ctx)
}

func (o *ours) Handled() int64 { return o.count.handled() }

func (o *ours) Close() error {
	if o.stop != nil {
		o.stop()
	}
	err := o.run.join(o.wcfg.ShutdownTimeout + 10*time.Second)
	return errors.Join(err, closeClient(o.wclient), closeClient(o.pclient), closeClient(o.admin))
}

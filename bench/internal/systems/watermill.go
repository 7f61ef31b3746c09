package systems

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// watermillSystem is Watermill with its Redis Streams Pub/Sub
// (watermill-redisstream): a Publisher whose Publish sends one XADD per
// message and waits for it (no pipelining), and a Router with Concurrency
// handlers on one Subscriber in a consumer group. Each handler is its own
// subscription — a goroutine reading XREADGROUP COUNT 1 and sending one XACK
// per message once the handler returns — which is how Watermill consumes a
// topic concurrently. Default marshaller (UUID, msgpack metadata, payload),
// no middleware, no-op loggers.
type watermillSystem struct {
	stream
	pclient   *redis.Client
	publisher *redisstream.Publisher

	count  *counter
	router *message.Router
	run    *background
}

func newWatermill(cfg Config) (*watermillSystem, error) {
	opt := cfg.options()
	opt.PoolSize = cfg.Producers // one connection per publishing goroutine
	pclient := redis.NewClient(opt)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pclient, DefaultMaxlen: cfg.MaxLen}, watermill.NopLogger{})
	if err != nil {
		_ = pclient.Close()
		return nil, err
	}
	return &watermillSystem{stream: newStream(cfg), pclient: pclient, publisher: pub}, nil
}

func (w *watermillSystem) Produce(ctx context.Context, n int, payload []byte) error {
	return fanOut(ctx, n, w.cfg.Producers, func(ctx context.Context) error {
		return w.Send(ctx, payload)
	})
}

func (w *watermillSystem) Send(ctx context.Context, payload []byte) error {
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.SetContext(ctx)
	return w.publisher.Publish(w.key, msg)
}

func (w *watermillSystem) Start(ctx context.Context, n int, handle Handler) error {
	if w.count != nil {
		return errors.New("systems: Start called twice")
	}
	w.count = newCounter(n)
	opt := w.cfg.options()
	// Each subscription holds a connection in a blocking read and takes
	// another for its XACK.
	opt.PoolSize = 2*w.cfg.Concurrency + 4
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        redis.NewClient(opt), // closed by the Subscriber's Close
		ConsumerGroup: w.group,
		Consumer:      "bench-watermill",
		// Without it the first read blocks forever on an empty stream and
		// its goroutine outlives Close.
		DisableIndefiniteInitialBlock: true,
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return errors.Join(err, sub.Close())
	}
	for i := range w.cfg.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("noop-%d", i), w.key, sub, func(msg *message.Message) error {
			handle(msg.Payload)
			w.count.add()
			return nil
		})
	}
	w.router = router
	rctx := context.WithoutCancel(ctx)
	w.run = goBackground(func() error { return router.Run(rctx) })
	select {
	case <-router.Running():
		return nil
	case <-w.run.done:
		return fmt.Errorf("watermill router: %w", w.run.result())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *watermillSystem) Ready(ctx context.Context) error { return w.reading(ctx) }

func (w *watermillSystem) Wait(ctx context.Context) error {
	if err := w.count.wait(ctx, w.run); err != nil {
		return err
	}
	return w.acked(ctx)
}

func (w *watermillSystem) Handled() int64 { return w.count.handled() }

func (w *watermillSystem) Close() error {
	var errs []error
	if w.router != nil {
		errs = append(errs, w.router.Close(), w.run.join(30*time.Second))
	}
	// Publisher.Close closes pclient.
	return errors.Join(append(errs, w.publisher.Close(), closeClient(w.admin))...)
}

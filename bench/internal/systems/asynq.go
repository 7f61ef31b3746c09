package systems

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynqSystem is github.com/hibiken/asynq as its README shows it: a Client
// that enqueues each task with Enqueue (asynq has no batch or pipelined
// enqueue: every task is one Lua script call, waited for), and a Server with
// a ServeMux and Concurrency workers. Everything else is asynq's default:
// retries, task timeout, the 1-second poll of an empty queue
// (TaskCheckInterval), heartbeats, recoverer, janitor.
type asynqSystem struct {
	cfg       Config
	client    *redis.Client // the producer's
	enqueuer  *asynq.Client
	sclient   *redis.Client // the server's
	admin     *redis.Client
	inspector *asynq.Inspector

	count  *counter
	server *asynq.Server
	firsts atomic.Int64 // first attempts seen, for FailEvery
}

func newAsynq(cfg Config) *asynqSystem {
	opt := cfg.options()
	// Enough connections for every producer goroutine: asynq's own
	// RedisClientOpt leaves go-redis's default pool, which would make the
	// producers queue for a connection instead of for Redis.
	opt.PoolSize = cfg.Producers
	client := redis.NewClient(opt)
	admin := redis.NewClient(cfg.options())
	return &asynqSystem{
		cfg: cfg, client: client, enqueuer: asynq.NewClientFromRedisClient(client),
		admin: admin, inspector: asynq.NewInspectorFromRedisClient(admin),
	}
}

func (a *asynqSystem) Produce(ctx context.Context, n int, payload []byte) error {
	return fanOut(ctx, n, a.cfg.Producers, func(ctx context.Context) error {
		return a.Send(ctx, payload)
	})
}

func (a *asynqSystem) Send(ctx context.Context, payload []byte) error {
	_, err := a.enqueuer.EnqueueContext(ctx, asynq.NewTask(MsgType, payload), asynq.Queue(a.cfg.Queue))
	return err
}

func (a *asynqSystem) Stored(context.Context) (int64, error) {
	q, err := a.inspector.GetQueueInfo(a.cfg.Queue)
	if err != nil {
		return 0, err
	}
	return int64(q.Pending), nil
}

func (a *asynqSystem) Start(_ context.Context, n int, handle Handler) error {
	if a.count != nil {
		return errors.New("systems: Start called twice")
	}
	a.count = newCounter(n)
	a.sclient = redis.NewClient(a.cfg.options())
	scfg := asynq.Config{
		Concurrency: a.cfg.Concurrency,
		Queues:      map[string]int{a.cfg.Queue: 1},
		// A failing handler logs at error level; the failures phase makes
		// thousands fail on purpose.
		LogLevel: asynq.FatalLevel,
	}
	if a.cfg.FailEvery == 0 && !a.cfg.FailAll {
		scfg.LogLevel = asynq.WarnLevel
	}
	// As ours' WORKER_RETRY_BASE and WORKER_PROMOTE_INTERVAL: the retry's
	// delay, and how often due retries are moved back to pending.
	if d := a.cfg.RetryBase; d > 0 {
		scfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return d }
	}
	if a.cfg.PromoteInterval > 0 {
		scfg.DelayedTaskCheckInterval = a.cfg.PromoteInterval
	}
	a.server = asynq.NewServerFromRedisClient(a.sclient, scfg)
	mux := asynq.NewServeMux()
	mux.HandleFunc(MsgType, func(ctx context.Context, t *asynq.Task) error {
		handle(t.Payload())
		switch {
		case a.cfg.FailAll:
			a.count.add() // archived now: asynq's dead letters
			return fmt.Errorf("%w: %w", errBench, asynq.SkipRetry)
		case a.cfg.FailEvery > 0:
			if retried, _ := asynq.GetRetryCount(ctx); retried == 0 && a.firsts.Add(1)%int64(a.cfg.FailEvery) == 0 {
				return errBench // retried, and counted when the retry succeeds
			}
		}
		a.count.add()
		return nil
	})
	return a.server.Start(mux)
}

// Ready returns at once: Start has started the processor, which polls.
func (a *asynqSystem) Ready(context.Context) error { return nil }

// Wait waits for the handler, then for the inspector to show an empty queue
// (nothing pending, active, scheduled, retrying or archived) with every task
// processed and none failed. With Config.FailEvery failures are expected
// and the queue must end empty; with Config.FailAll every task must end
// archived.
func (a *asynqSystem) Wait(ctx context.Context) error {
	if err := a.count.wait(ctx, nil); err != nil {
		return err
	}
	return poll(ctx, "waiting for asynq to complete every task", func(context.Context) (bool, error) {
		q, err := a.inspector.GetQueueInfo(a.cfg.Queue)
		if err != nil {
			return false, err
		}
		switch {
		case a.cfg.FailAll:
			// Every task handled (counted above) and nothing left but the
			// archive: asynq keeps only the newest 10,000 archived tasks, so
			// Archived stops short of the count on a larger run.
			return q.Size == q.Archived, nil
		case a.cfg.FailEvery > 0:
			return q.Size == 0, nil
		case q.FailedTotal > 0:
			return false, permanentError{fmt.Errorf("%d tasks failed", q.FailedTotal)}
		}
		return q.Size == 0 && q.ProcessedTotal >= int(a.count.n), nil
	})
}

func (a *asynqSystem) Handled() int64 { return a.count.handled() }

func (a *asynqSystem) Delete(context.Context) error {
	c := redis.NewClient(a.cfg.options())
	defer c.Close()
	err := asynq.NewInspectorFromRedisClient(c).DeleteQueue(a.cfg.Queue, true)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	return err
}

func (a *asynqSystem) Close() error {
	var errs []error
	if a.server != nil {
		done := make(chan struct{})
		go func() { defer close(done); a.server.Shutdown() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("asynq Server.Shutdown did not return in 30s"))
		}
		errs = append(errs, closeClient(a.sclient))
	}
	return errors.Join(append(errs, closeClient(a.client), closeClient(a.admin))...)
}

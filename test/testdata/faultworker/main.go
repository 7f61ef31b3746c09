// Command faultworker is a user-style worker binary for the fault tests in
// test/: handlers registered on a worker.Mux, the daemon is worker.Main. Its
// handlers record every run in Redis beside the stream, so a test can
// account for each message across processes that are killed and restarted:
//
//	<stream>:processed      hash seq -> times a handler finished it successfully
//	<stream>:log            list of "seq consumer unix_ms attempt", one per success
//	<stream>:crashes        hash seq -> times the crash handler ran for it
//	<stream>:overlaps       list of "seq: <consumer> started while <other> ran it"
//	<stream>:running:<seq>  the consumer running a slow handler for seq now
//
// A slow handler also logs each run to the process log ("slow run", with its
// start and end), which a network fault cannot lose. One key steers the
// worker: hold handlers run until <stream>:release exists.
//
// A message's data is JSON: {"seq": 17, "sleep_ms": 1500}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/worker"
)

type payload struct {
	Seq     int `json:"seq"`
	SleepMS int `json:"sleep_ms"`
}

func main() {
	mux := worker.NewMux()
	worker.Main(mux, worker.WithSetup(func(_ context.Context, d worker.Deps) error {
		register(mux, d.Redis, d.Config.Consumer, d.Logger)
		return nil
	}))
}

// releaseScript deletes a running marker only if it is still ours.
//
// KEYS[1] -> <stream>:running:<seq>
// ARGV[1] -> this consumer
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func register(mux *worker.Mux, rdb redis.UniversalClient, consumer string, logger *slog.Logger) {
	processed := func(ctx context.Context, m *worker.Message, p payload) error {
		seq := strconv.Itoa(p.Seq)
		pipe := rdb.TxPipeline()
		pipe.HIncrBy(ctx, m.Stream+":processed", seq, 1)
		pipe.RPush(ctx, m.Stream+":log", fmt.Sprintf("%d %s %d %d", p.Seq, consumer, time.Now().UnixMilli(), m.Attempt))
		_, err := pipe.Exec(ctx)
		return err
	}
	work := func(ctx context.Context, p payload) error {
		if p.SleepMS <= 0 {
			return nil
		}
		t := time.NewTimer(time.Duration(p.SleepMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// ok does sleep_ms of work and records the message processed.
	handle(mux, "ok", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := work(ctx, p); err != nil {
			return err
		}
		return processed(ctx, m, p)
	})

	// hold runs until the test releases it.
	handle(mux, "hold", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := hold(ctx, rdb, m); err != nil {
			return err
		}
		return processed(ctx, m, p)
	})

	// crash records that it ran and kills the process on the spot, as an
	// out-of-memory kill or a segfault in a C library would: no deferred
	// function runs, nothing is acknowledged, the runtime gets no say.
	handle(mux, "crash", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := rdb.HIncrBy(ctx, m.Stream+":crashes", strconv.Itoa(p.Seq), 1).Err(); err != nil {
			return err
		}
		os.Exit(3)
		return nil
	})

	// slow marks the message as running on this consumer for sleep_ms,
	// recording an overlap when another consumer is running it already, and
	// gives up as soon as its context ends (the runtime cancels a handler
	// whose lease is lost).
	handle(mux, "slow", func(ctx context.Context, m *worker.Message, p payload) error {
		start := time.Now()
		logRun := func(err error) {
			logger.Info("slow run", "seq", p.Seq, "consumer", consumer, "id", m.ID, "attempt", m.Attempt,
				"start_ns", start.UnixNano(), "end_ns", time.Now().UnixNano(), "error", fmt.Sprint(err))
		}
		key := m.Stream + ":running:" + strconv.Itoa(p.Seq)
		// Released with a context of its own: a cancelled handler must not
		// leave its marker behind to be mistaken for a running one.
		release := func() error {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return releaseScript.Run(ctx, rdb, []string{key}, consumer).Err()
		}
		set, err := interruptibly(ctx, func() (bool, error) {
			return rdb.SetNX(ctx, key, consumer, time.Minute).Result()
		})
		if err != nil {
			logRun(err)
			return errors.Join(err, release()) // the SET may have happened
		}
		if !set {
			other, _ := rdb.Get(ctx, key).Result()
			msg := fmt.Sprintf("%d: %s started while %s ran it", p.Seq, consumer, other)
			if err := rdb.RPush(ctx, m.Stream+":overlaps", msg).Err(); err != nil {
				logRun(err)
				return err
			}
		}
		err = work(ctx, p)
		logRun(err)
		if rerr := release(); rerr != nil {
			return errors.Join(err, rerr)
		}
		if err != nil {
			return err
		}
		return processed(ctx, m, p)
	})
}

// interruptibly runs f, returning when it does or when ctx ends, whichever
// comes first: go-redis does not stop waiting for a reply when the context
// is cancelled, and a handler that lost its lease must stop at once, not
// when a slow network lets it.
func interruptibly[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// hold waits until <stream>:release exists or its context ends.
func hold(ctx context.Context, rdb redis.UniversalClient, m *worker.Message) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := rdb.Exists(ctx, m.Stream+":release").Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func handle(mux *worker.Mux, typ string, f func(context.Context, *worker.Message, payload) error) {
	mux.HandleFunc(typ, func(ctx context.Context, m *worker.Message) error {
		var p payload
		if err := json.Unmarshal(m.Data, &p); err != nil {
			return worker.Permanent(fmt.Errorf("decoding payload: %w", err))
		}
		if p.Seq <= 0 {
			return worker.Permanent(errors.New("payload has no seq"))
		}
		return f(ctx, m, p)
	})
}

// Command customworker is a worker binary of one's own, written as a user of
// the library would write it: its handlers are registered on a worker.Mux and
// the whole daemon (configuration from the environment, signals, graceful
// shutdown, exit codes) is worker.Main. The end-to-end tests in test/ build
// and run it.
//
// Every handler records what it did in Redis, in keys beside the stream, so a
// test can account for each message:
//
//	<stream>:processed  hash seq -> times the message was handled successfully
//	<stream>:tries      hash seq -> times a failing handler ran for it
//	<stream>:started    set of seqs a slow or blocking handler began
//	<stream>:calls      counter of handler calls that reached the Mux middleware
//
// and one key steers it: while <stream>:unblock exists, block handlers succeed.
//
// The effect handler writes nothing itself: it commits, with the message's
// acknowledgement (Message.Effects), an INCRBY of {<stream>}:total, an HINCRBY
// of seq in {<stream>}:applied and an SADD of the entry ID to {<stream>}:ids.
// Given a gate_file, it first adds seq to <stream>:started and waits for the
// file to exist: a test can hold the handler, pause Redis's writes, and only
// then let the handler return.
//
// A message's data is JSON: {"seq": 17, "sleep_ms": 1500, "gate_file": "/tmp/go"}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/worker"
)

type payload struct {
	Seq      int    `json:"seq"`
	SleepMS  int    `json:"sleep_ms"`
	GateFile string `json:"gate_file"`
}

func main() {
	mux := worker.NewMux()
	worker.Main(mux, worker.WithSetup(func(_ context.Context, d worker.Deps) error {
		register(mux, d.Redis)
		return nil
	}))
}

// register adds the test handlers; they need the Redis client the runtime
// built, so they are registered from the setup hook.
func register(mux *worker.Mux, rdb redis.UniversalClient) {
	mux.Use(func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
			if err := rdb.Incr(ctx, m.Stream+":calls").Err(); err != nil {
				return err
			}
			return next.HandleMessage(ctx, m)
		})
	})
	processed := func(ctx context.Context, m *worker.Message, p payload) error {
		return rdb.HIncrBy(ctx, m.Stream+":processed", strconv.Itoa(p.Seq), 1).Err()
	}
	tried := func(ctx context.Context, m *worker.Message, p payload) error {
		return rdb.HIncrBy(ctx, m.Stream+":tries", strconv.Itoa(p.Seq), 1).Err()
	}
	started := func(ctx context.Context, m *worker.Message, p payload) error {
		return rdb.SAdd(ctx, m.Stream+":started", strconv.Itoa(p.Seq)).Err()
	}

	// ok always succeeds.
	handle(mux, "ok", func(ctx context.Context, m *worker.Message, p payload) error {
		return processed(ctx, m, p)
	})
	// flaky fails on its first two attempts and succeeds on the third.
	handle(mux, "flaky", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := tried(ctx, m, p); err != nil {
			return err
		}
		if m.Attempt < 3 {
			return fmt.Errorf("flaky seq %d: failing attempt %d", p.Seq, m.Attempt)
		}
		return processed(ctx, m, p)
	})
	// perm refuses for good.
	handle(mux, "perm", func(ctx context.Context, m *worker.Message, p payload) error {
		return worker.Permanent(fmt.Errorf("refusing seq %d", p.Seq))
	})
	// panic panics on every attempt.
	handle(mux, "panic", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := tried(ctx, m, p); err != nil {
			return err
		}
		panic(fmt.Sprintf("boom seq %d", p.Seq))
	})
	// slow takes sleep_ms, the workload of a long handler, and gives up when
	// its context ends.
	handle(mux, "slow", func(ctx context.Context, m *worker.Message, p payload) error {
		if err := started(ctx, m, p); err != nil {
			return err
		}
		t := time.NewTimer(time.Duration(p.SleepMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		return processed(ctx, m, p)
	})
	// block runs until its context ends, unless <stream>:unblock exists when
	// it starts: then it succeeds at once.
	handle(mux, "block", func(ctx context.Context, m *worker.Message, p payload) error {
		n, err := rdb.Exists(ctx, m.Stream+":unblock").Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return processed(ctx, m, p)
		}
		if err := started(ctx, m, p); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	// effect commits its writes with the acknowledgement, after its gate.
	handle(mux, "effect", func(ctx context.Context, m *worker.Message, p payload) error {
		if p.GateFile != "" {
			if err := started(ctx, m, p); err != nil {
				return err
			}
			if err := waitForFile(ctx, p.GateFile); err != nil {
				return err
			}
		}
		fx := m.Effects()
		for _, err := range []error{
			fx.Do("INCRBY", fx.Key("total"), 1),
			fx.Do("HINCRBY", fx.Key("applied"), strconv.Itoa(p.Seq), 1),
			fx.Do("SADD", fx.Key("ids"), m.ID),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// waitForFile polls for path until it exists or ctx ends. A file, not a
// Redis key, so that it can be created while Redis holds every write.
func waitForFile(ctx context.Context, path string) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-tick.C:
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

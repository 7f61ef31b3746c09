package worker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// functionsClient is a client of cfg with REDIS_SCRIPTS=functions, as a
// user of srv that may FCALL and list functions and run everything else
// but EVAL, EVALSHA and SCRIPT.
func functionsClient(t *testing.T, srv *testredis.Server, cfg *config.Config) redis.UniversalClient {
	t.Helper()
	if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "fn", "on", ">pw", "~*", "&*", "+@all", "-eval", "-evalsha", "-eval_ro", "-evalsha_ro", "-script").Err(); err != nil {
		t.Fatal(err)
	}
	cfg.RedisURL = "redis://fn:pw@" + srv.Addr + "/0"
	cfg.RedisScripts = config.ScriptsFunctions
	c, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRunFunctions: with REDIS_SCRIPTS=functions and the libraries loaded,
// the runtime's scripts (retry, promote, dead-letter) run as functions for
// a user that may not EVAL.
func TestRunFunctions(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	cfg := testConfig(t, srv)
	client := functionsClient(t, srv, &cfg)
	admin := srv.Client(t)
	for _, l := range scriptfn.Libraries() {
		if err := admin.FunctionLoad(context.Background(), l.Code).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int32
	mux := NewMux()
	mux.HandleFunc("flaky", func(ctx context.Context, m *Message) error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	mux.HandleFunc("bad", func(ctx context.Context, m *Message) error { return Permanent(errors.New("never")) })
	h := startWorker(t, srv, cfg, mux, WithRedis(client))
	h.publish("type", "flaky")
	h.publish("type", "bad")
	eventually(t, "retried twice and acked, and dead-lettered", func() bool {
		return h.outcome("flaky", OutcomeAcked) == 1 && h.outcome("flaky", OutcomeRetried) == 2 && h.outcome("bad", OutcomeDead) == 1
	})
	if d := h.dlq(); len(d) != 1 {
		t.Errorf("dlq = %v, want the one dead letter", d)
	}
	stats := admin.Info(context.Background(), "commandstats").Val()
	if !strings.Contains(stats, "cmdstat_fcall:") || strings.Contains(stats, "cmdstat_eval") {
		t.Errorf("commandstats: want FCALL and no EVAL or EVALSHA:\n%s", stats)
	}
}

// TestRunFunctionsNotLoaded: with REDIS_SCRIPTS=functions and the
// libraries not loaded, Run stops at start with the error that says how to
// load them, before any message runs.
func TestRunFunctionsNotLoaded(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	cfg := testConfig(t, srv)
	client := functionsClient(t, srv, &cfg)
	var ran atomic.Bool
	mux := NewMux()
	mux.HandleFunc("x", func(ctx context.Context, m *Message) error { ran.Store(true); return nil })
	if err := srv.Client(t).XAdd(context.Background(), &redis.XAddArgs{Stream: cfg.Streams[0], Values: []string{"type", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, cfg, mux, WithRedis(client), WithLogger(testLogger(t)))
	if !errors.Is(err, scriptfn.ErrNotLoaded) || !strings.Contains(err.Error(), "streamctl scripts load") {
		t.Fatalf("Run = %v, want the not-loaded error naming streamctl scripts load", err)
	}
	if ran.Load() {
		t.Error("a message ran before the check failed")
	}
}

// Package handlertest runs handlers through the real runtime (worker.Run)
// against a real Redis, so a plugin's test sends a message in one line and
// asserts on what the runtime did with it — acknowledged, retried, delayed or
// dead-lettered — without writing any runtime plumbing.
//
// It starts Redis through internal/testredis, so it is usable by tests inside
// this module (the built-in plugins and any plugin added under handlers/).
// The package's TestMain must call handlertest.Main (which stops the Redis it
// started and checks for leaked goroutines):
//
//	func TestMain(m *testing.M) { handlertest.Main(m) }
//
// Each Harness has a stream and a key prefix of its own, so tests using one
// may run with t.Parallel.
package handlertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// Main runs a package's tests, stops the Redis they used and fails the run if
// a goroutine outlived them. Call it from TestMain.
func Main(m *testing.M) { testredis.Main(m) }

// WaitTimeout bounds every wait of a Harness.
const WaitTimeout = 30 * time.Second

// Outcome is what became of a message.
type Outcome string

// The final outcomes Wait reports.
const (
	Acked        Outcome = "acked"         // the handler returned nil
	DeadLettered Outcome = "dead-lettered" // it is in the stream's dead-letter stream
)

// Result is the story of one message, its retried and delayed copies included.
type Result struct {
	// Outcome is Acked or DeadLettered.
	Outcome Outcome
	// Calls is how many times the handler ran.
	Calls int
	// Retries is how many calls failed with an error that was retried.
	Retries int
	// Delays is how many calls returned worker.Delay.
	Delays int
	// Errors are the errors the handler returned, in order.
	Errors []error
	// DeadLetter is the dead-letter entry's fields, for DeadLettered.
	DeadLetter map[string]any

	typ  string // the message type
	last string // the entry ID of the last call
}

// Harness is a running worker on a real Redis for one test.
type Harness struct {
	// Redis is a client on the test's Redis; give it to the plugin under test.
	Redis *redis.Client
	// Prefix is a random key prefix of the test's own: put it in front of
	// every key the plugin writes.
	Prefix string
	// Stream is the stream the worker consumes.
	Stream string
	// Config is the runtime's configuration: fast retries (10ms doubling to
	// 40ms), MaxAttempts 3, HTTP off. Change it before Start.
	Config config.Config
	// Logger writes to the test log and is captured for Logs; give it to
	// the plugin under test.
	Logger *slog.Logger

	t       testing.TB
	reg     *prometheus.Registry
	logs    *logBuffer
	mu      sync.Mutex
	calls   map[string]*Result // by origin ID
	started bool
}

// New returns a Harness on the package's shared Redis. Register the
// plugin on a mux with h.Redis, h.Prefix and h.Logger, then call Start.
func New(t testing.TB) *Harness {
	t.Helper()
	srv := testredis.Shared(t)
	prefix := testredis.Prefix(t)
	cfg := config.Default()
	cfg.RedisURL = srv.URL()
	cfg.Streams = []string{prefix + "events"}
	cfg.Group = "handlertest"
	cfg.Consumer = "c1"
	cfg.Concurrency = 8
	cfg.Block = 100 * time.Millisecond
	cfg.MaxAttempts = 3
	cfg.RetryBase = 10 * time.Millisecond
	cfg.RetryMax = 40 * time.Millisecond
	cfg.PromoteInterval = 10 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.HTTPAddr = "off"
	logs := &logBuffer{t: t}
	t.Cleanup(logs.close)
	return &Harness{
		Redis:  srv.Client(t),
		Prefix: prefix,
		Stream: cfg.Streams[0],
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		t:      t,
		reg:    prometheus.NewRegistry(),
		logs:   logs,
		calls:  map[string]*Result{},
	}
}

// Start runs worker.Run with mux until the test ends; opts are passed on
// (WithSetup, say). It records every call of every handler of mux.
func (h *Harness) Start(mux *worker.Mux, opts ...worker.Option) {
	h.t.Helper()
	if h.started {
		h.t.Fatal("handlertest: Start called twice")
	}
	h.started = true
	mux.Use(h.record)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts = append([]worker.Option{worker.WithRedis(h.Redis), worker.WithLogger(h.Logger), worker.WithRegistry(h.reg)}, opts...)
	go func() { done <- worker.Run(ctx, h.Config, mux, opts...) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("worker.Run = %v, want nil after a clean shutdown", err)
			}
		case <-time.After(WaitTimeout):
			h.t.Errorf("worker did not stop within %s", WaitTimeout)
		}
	})
}

// record is middleware that notes each call's result under the message's
// origin ID.
func (h *Harness) record(next worker.Handler) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		err := next.HandleMessage(ctx, m)
		h.mu.Lock()
		defer h.mu.Unlock()
		r := h.calls[m.OriginID]
		if r == nil {
			r = &Result{}
			h.calls[m.OriginID] = r
		}
		r.Calls++
		r.typ, r.last = m.Type, m.ID
		var d *worker.DelayError
		switch {
		case err == nil:
			r.Outcome = Acked
		case errors.As(err, &d):
			r.Delays++
		case !worker.IsPermanent(err) && m.Attempt < h.Config.MaxAttempts:
			r.Retries++
		}
		if err != nil {
			r.Errors = append(r.Errors, err)
		}
		return err
	})
}

// Send adds a message of type typ to the stream and returns its entry ID,
// which Wait and friends take. data is sent as is when it is a string or
// []byte, else encoded as JSON; fields are extra field/value pairs (id,
// metadata).
func (h *Harness) Send(typ string, data any, fields ...string) string {
	h.t.Helper()
	var payload string
	switch d := data.(type) {
	case string:
		payload = d
	case []byte:
		payload = string(d)
	default:
		b, err := json.Marshal(d)
		if err != nil {
			h.t.Fatalf("handlertest: encoding %T: %v", data, err)
		}
		payload = string(b)
	}
	values := append([]string{wire.FieldType, typ, wire.FieldData, payload}, fields...)
	id, err := h.Redis.XAdd(context.Background(), &redis.XAddArgs{Stream: h.Stream, Values: values}).Result()
	if err != nil {
		h.t.Fatalf("handlertest: XADD: %v", err)
	}
	return id
}

// Wait waits until the message sent as id has a final outcome — its
// handler returned nil, or it is in the dead-letter stream — and returns its
// story. It fails the test after WaitTimeout.
func (h *Harness) Wait(id string) Result {
	h.t.Helper()
	var res Result
	h.Eventually(fmt.Sprintf("message %s to be acknowledged or dead-lettered", id), func() bool {
		// The dead-letter stream first: a call is recorded before the
		// runtime dead-letters its message, so it is seen below.
		dl := h.deadLetter(id)
		h.mu.Lock()
		if r := h.calls[id]; r != nil {
			res = *r
			res.Errors = append([]error(nil), r.Errors...)
		}
		h.mu.Unlock()
		if dl != nil {
			res.Outcome, res.DeadLetter = DeadLettered, dl
			return true
		}
		// A success is done once the runtime has acknowledged it (and
		// committed its effects with the acknowledgement), a moment after
		// the handler returned.
		return res.Outcome == Acked && !h.pending(res.last)
	})
	return res
}

// pending reports whether the entry id is still pending in the group.
func (h *Harness) pending(id string) bool {
	p, err := h.Redis.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: h.Stream, Group: h.Config.Group, Start: id, End: id, Count: 1,
	}).Result()
	if err != nil {
		h.t.Fatalf("handlertest: reading the pending entries: %v", err)
	}
	return len(p) > 0
}

// Acked waits for the message and fails the test unless its handler
// eventually succeeded and the runtime acknowledged it (its effects, if
// any, committed).
func (h *Harness) Acked(id string) Result {
	h.t.Helper()
	r := h.Wait(id)
	if r.Outcome != Acked {
		h.t.Fatalf("message %s: %s (errors %v), want acked", id, r.Outcome, r.Errors)
	}
	return r
}

// DeadLettered waits for the message and fails the test unless it ended in
// the dead-letter stream.
func (h *Harness) DeadLettered(id string) Result {
	h.t.Helper()
	r := h.Wait(id)
	if r.Outcome != DeadLettered {
		h.t.Fatalf("message %s: %s after %d calls, want dead-lettered", id, r.Outcome, r.Calls)
	}
	return r
}

func (h *Harness) deadLetter(id string) map[string]any {
	msgs, err := h.Redis.XRange(context.Background(), wire.DeadLetterKey(h.Stream), "-", "+").Result()
	if err != nil {
		h.t.Fatalf("handlertest: reading the dead-letter stream: %v", err)
	}
	for _, m := range msgs {
		if m.Values[wire.FieldOriginID] == id {
			return m.Values
		}
	}
	return nil
}

// Counts are the runtime's outcome counters for one message type.
type Counts struct{ Acked, Retried, Delayed, Dead int }

// Counts reads streamworker_messages_total for typ, once every message of
// typ whose handler has succeeded is counted as acked: the runtime writes
// acknowledgements in batches, a moment after the handler returns.
func (h *Harness) Counts(typ string) Counts {
	h.t.Helper()
	h.mu.Lock()
	succeeded := 0
	for _, r := range h.calls {
		if r.typ == typ && r.Outcome == Acked {
			succeeded++
		}
	}
	h.mu.Unlock()
	var c Counts
	h.Eventually(fmt.Sprintf("the %d successful %s messages to be acknowledged", succeeded, typ), func() bool {
		o := worker.Outcomes(h.reg)[typ]
		c = Counts{Acked: o[worker.OutcomeAcked], Retried: o[worker.OutcomeRetried], Delayed: o[worker.OutcomeDelayed], Dead: o[worker.OutcomeDead]}
		return c.Acked >= succeeded
	})
	return c
}

// Logs returns everything logged through h.Logger so far.
func (h *Harness) Logs() string { return h.logs.String() }

// Eventually polls cond every few milliseconds until it holds, and fails the
// test naming what it waited for after WaitTimeout.
func (h *Harness) Eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("handlertest: timed out after %s waiting for %s", WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// logBuffer keeps log lines for Logs and copies them to the test log until
// the test ends.
type logBuffer struct {
	mu   sync.Mutex
	t    testing.TB
	b    strings.Builder
	done bool
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *logBuffer) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// startEngine runs an engine for cfg, reachable by the test, until the
// test ends.
func startEngine(t *testing.T, srv *testredis.Server, cfg config.Config, mux *Mux) (*engine, *harness) {
	t.Helper()
	h := &harness{t: t, cfg: cfg, stream: cfg.Streams[0], client: srv.Client(t), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	rt := newEngine(cfg, h.client, mux, testLogger(t), NewMetrics(h.reg))
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return rt, h
}

// noneFor fails the test if cond holds at any time during d: how a test
// shows that something does not happen.
func noneFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) { // watching for a violation
		if cond() {
			t.Fatalf("%s", what)
		}
	}
}

func pause(t *testing.T, h *harness, field string) {
	t.Helper()
	if err := h.client.HSet(context.Background(), wire.PausedKey(h.stream), field, strconv.FormatInt(time.Now().UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
}

// A paused stream is not read: the handler running when it is paused
// finishes and is acknowledged, new entries wait, /readyz stays ready, and
// resuming reads them.
func TestPauseStopsAndResumesFetching(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	release := make(chan struct{})
	handled := &counter{}
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, m *Message) error { <-release; handled.inc("slow"); return nil })
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error { handled.inc("job"); return nil })
	rt, h := startEngine(t, srv, cfg, mux)
	h.publish("type", "slow")
	eventually(t, "the slow handler to run", func() bool { return h.metric("streamworker_in_flight") == 1 })

	pause(t, h, cfg.Group)
	eventually(t, "the worker to see the pause", func() bool { return h.metric("streamworker_stream_paused") == 1 })
	close(release) // in flight: finishes and is acknowledged while paused
	eventually(t, "the running handler to be acknowledged", func() bool { return h.outcome("slow", OutcomeAcked) == 1 && h.pending() == 0 })
	// A read waiting in Redis when the pause came returns within a block
	// period (and would bring an entry added meanwhile); then the fetcher
	// parks.
	st := rt.pauses.of(h.stream)
	eventually(t, "the fetcher to park", func() bool { return st.parked.Load() == 1 })
	for range 20 {
		h.publish("type", "job")
	}
	noneFor(t, 5*cfg.Block, "a paused stream was read", func() bool { return handled.get("job") > 0 || h.pending() > 0 })
	if err := rt.Ready(); err != nil {
		t.Errorf("Ready() = %v while a stream is paused; a pause is not an outage", err)
	}

	if err := h.client.HDel(context.Background(), wire.PausedKey(h.stream), cfg.Group).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the entries to run after resume", func() bool { return handled.get("job") == 20 })
	if v := h.metric("streamworker_stream_paused"); v != 0 {
		t.Errorf("streamworker_stream_paused = %v after resume, want 0", v)
	}
}

// A worker started on a stream paused for every group (*) never reads it,
// not even its own pending entries, until it is resumed; a pause of
// another group does not concern it.
func TestPauseHonouredAtStart(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	p := testredis.Prefix(t)
	other := p + "other"
	cfg.Streams = append(cfg.Streams, other)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.HSet(ctx, wire.PausedKey(cfg.Streams[0]), wire.PauseAllGroups, "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, wire.PausedKey(other), "some-other-group", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Streams {
		preload(t, c, s, "job", 10)
	}
	handled := &counter{}
	mux := NewMux()
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error { handled.inc(m.Stream); return nil })
	h := startWorker(t, srv, cfg, mux)
	eventually(t, "the other stream to be read", func() bool { return handled.get(other) == 10 })
	eventually(t, "the worker to be ready", func() bool { return h.metric("streamworker_ready") == 1 })
	noneFor(t, 5*cfg.Block, "a stream paused before the start was read", func() bool { return handled.get(h.stream) > 0 })
	if v := h.metric("streamworker_stream_paused"); v != 1 {
		t.Errorf("streamworker_stream_paused summed = %v, want 1 (one stream paused for the group)", v)
	}
	if err := c.Del(ctx, wire.PausedKey(h.stream)).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stream to be read after resume", func() bool { return handled.get(h.stream) == 10 })
}

// A key of another type at S:paused (a producer may XADD under the prefix)
// is not a pause: the stream is read.
func TestPauseKeyOfAnotherType(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	c := srv.Client(t)
	if err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: wire.PausedKey(cfg.Streams[0]), Values: []string{"type", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	handled := &counter{}
	mux := NewMux()
	mux.HandleFunc("job", func(ctx context.Context, m *Message) error { handled.inc("job"); return nil })
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "job")
	eventually(t, "the stream to be read", func() bool { return handled.get("job") == 1 })
}

package worker

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

func TestShutdownDrainsRunningHandlers(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 4
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	var finished atomic.Int32
	mux := NewMux()
	mux.HandleFunc("slow", func(ctx context.Context, m *Message) error {
		started <- struct{}{}
		<-release
		if ctx.Err() != nil {
			t.Errorf("handler context cancelled during a graceful drain: %v", ctx.Err())
		}
		finished.Add(1)
		return nil
	})
	l := listenHTTP(t)
	h := startWorker(t, srv, cfg, mux, WithListener(l))
	for range 10 {
		h.publish("type", "slow")
	}
	for range 4 {
		<-started
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	// Not ready means the runtime has seen the shutdown: no slot freed from
	// now on may be refilled.
	eventually(t, "not ready", func() bool { return get("http://"+l.Addr().String()+"/readyz") != 200 })
	// Shutdown has begun: the worker is not ready and reads nothing more.
	eventually(t, "stop fetching", func() bool { return h.pending() == 4 })
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil after a clean shutdown", err)
	}
	if n := finished.Load(); n != 4 {
		t.Errorf("finished %d handlers, want the 4 in flight", n)
	}
	if p := h.pending(); p != 0 {
		t.Errorf("pending after drain = %d, want 0 (every finished message acked)", p)
	}
	// The six never read are still in the stream for the next worker.
	g, _ := h.client.XInfoGroups(context.Background(), h.stream).Result()
	if len(g) != 1 || g[0].Lag != 6 {
		t.Errorf("group = %+v, want lag 6 (unread messages left for others)", g)
	}
}

func TestShutdownDeadlineHandsOverUnfinishedWork(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	cfg.ReclaimMinIdle = time.Minute
	started := make(chan struct{}, 2)
	var failedWithCancel atomic.Int32
	mux := NewMux()
	mux.HandleFunc("stuck", func(ctx context.Context, m *Message) error {
		started <- struct{}{}
		<-ctx.Done() // only the shutdown deadline ends it
		failedWithCancel.Add(1)
		return ctx.Err()
	})
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "stuck")
	h.publish("type", "stuck")
	<-started
	<-started
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if n := failedWithCancel.Load(); n != 2 {
		t.Errorf("%d handlers saw cancellation, want 2", n)
	}
	h.requireHandedOver("stuck", 2)
}

// requireHandedOver checks, after a shutdown whose deadline passed, that the
// n unfinished messages of type typ were handed over: left pending (not
// acknowledged, no retry scheduled), idle past the min-idle so that other
// consumers reclaim them at once, and counted as handed over.
func (h *harness) requireHandedOver(typ string, n int) {
	t := h.t
	t.Helper()
	ext, err := h.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: h.stream, Group: h.cfg.Group, Start: "-", End: "+", Count: 10,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != n {
		t.Fatalf("pending = %d, want the %d unfinished messages left pending (not acked, not retried)", len(ext), n)
	}
	for _, e := range ext {
		if e.Idle < h.cfg.ReclaimMinIdle {
			t.Errorf("entry %s idle %s, want >= min-idle %s so others reclaim it at once", e.ID, e.Idle, h.cfg.ReclaimMinIdle)
		}
	}
	if d := h.client.ZCard(context.Background(), wire.DelayedKey(h.stream)).Val(); d != 0 {
		t.Errorf("a shutdown scheduled %d retries, want 0", d)
	}
	if got := h.outcome(typ, OutcomeHandedOver); got != n {
		t.Errorf("handed_over = %d, want %d", got, n)
	}
}

func TestRedisRestartUnderRunningWorker(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := testConfig(t, srv)
	var seen counter
	mux := NewMux()
	mux.HandleFunc("n", func(ctx context.Context, m *Message) error {
		seen.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	for i := range 100 {
		h.publish("type", "n", "data", "a"+itoa(i))
	}
	eventually(t, "first 100", func() bool { return seen.total() >= 100 })
	srv.Kill(t)
	srv.Restart(t)
	for i := range 100 {
		h.publish("type", "n", "data", "b"+itoa(i))
	}
	eventually(t, "all 200 handled", func() bool {
		for i := range 100 {
			if seen.get("a"+itoa(i)) == 0 || seen.get("b"+itoa(i)) == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
}

func TestRedisOutageTurnsNotReadyAndRecovers(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := testConfig(t, srv)
	var n atomic.Int32
	mux := NewMux()
	mux.HandleFunc("n", func(ctx context.Context, m *Message) error { n.Add(1); return nil })
	l := listenHTTP(t)
	h := startWorker(t, srv, cfg, mux, WithListener(l))
	base := "http://" + l.Addr().String()
	eventually(t, "ready", func() bool { return get(base+"/readyz") == 200 })
	srv.Kill(t)
	eventually(t, "not ready while redis is down", func() bool { return get(base+"/readyz") == 503 })
	if code := get(base + "/healthz"); code != 200 {
		t.Errorf("healthz = %d during an outage, want 200: the loops are alive and waiting", code)
	}
	srv.Restart(t)
	eventually(t, "ready again", func() bool { return get(base+"/readyz") == 200 })
	h.publish("type", "n")
	eventually(t, "processing resumed", func() bool { return n.Load() == 1 })
}

func TestDeletedStreamIsRecreated(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	var n atomic.Int32
	mux := NewMux()
	mux.HandleFunc("n", func(ctx context.Context, m *Message) error { n.Add(1); return nil })
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "n")
	eventually(t, "first", func() bool { return n.Load() == 1 })
	if err := h.client.Del(context.Background(), h.stream).Err(); err != nil {
		t.Fatal(err)
	}
	// The stream and group are gone; a producer writes again.
	eventually(t, "second handled after the group is recreated", func() bool {
		if h.client.Exists(context.Background(), h.stream).Val() == 0 || h.client.XLen(context.Background(), h.stream).Val() == 0 {
			h.publish("type", "n")
		}
		return n.Load() >= 2
	})
	eventually(t, "nothing pending", func() bool { return h.pending() == 0 })
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	mux := NewMux()
	mux.HandleFunc("n", func(ctx context.Context, m *Message) error { return nil })
	l := listenHTTP(t)
	h := startWorker(t, srv, cfg, mux, WithListener(l))
	base := "http://" + l.Addr().String()
	eventually(t, "ready", func() bool { return get(base+"/readyz") == 200 })
	if code := get(base + "/healthz"); code != 200 {
		t.Errorf("healthz = %d", code)
	}
	h.publish("type", "n")
	eventually(t, "acked", func() bool { return h.outcome("n", OutcomeAcked) == 1 })
	body := getBody(t, base+"/metrics")
	for _, want := range []string{
		`streamworker_messages_total{outcome="acked",stream="` + h.stream + `",type="n"} 1`,
		`streamworker_handler_duration_seconds_count{stream="` + h.stream + `",type="n"} 1`,
		`streamworker_in_flight 0`,
		`streamworker_group_pending{group="g",stream="` + h.stream + `"} 0`,
		`streamworker_group_lag{group="g",stream="` + h.stream + `"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func listenHTTP(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestPProfOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, tc := range []struct {
		name  string
		pprof bool
		want  int
	}{
		{"Default", false, http.StatusNotFound},
		{"Enabled", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, srv)
			cfg.PProf = tc.pprof
			l := listenHTTP(t)
			startWorker(t, srv, cfg, NewMux(), WithListener(l))
			base := "http://" + l.Addr().String()
			eventually(t, "ready", func() bool { return get(base+"/readyz") == 200 })
			if code := get(base + "/debug/pprof/"); code != tc.want {
				t.Errorf("GET /debug/pprof/ with WORKER_PPROF=%t = %d, want %d", tc.pprof, code, tc.want)
			}
		})
	}
}

package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestSetupGetsDependenciesExplicitly(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	mux := NewMux()
	done := make(chan struct{})
	h := startWorker(t, srv, cfg, mux, WithSetup(func(ctx context.Context, d Deps) error {
		if d.Logger == nil || d.Registerer == nil || d.Config.Group != cfg.Group {
			t.Errorf("incomplete deps: %+v", d)
		}
		handled := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_handled_total"})
		d.Registerer.MustRegister(handled)
		mux.HandleFunc("note", func(ctx context.Context, m *Message) error {
			// A handler using the runtime's client.
			if err := d.Redis.Set(ctx, m.Stream+":note", m.Data, 0).Err(); err != nil {
				return err
			}
			handled.Inc()
			close(done)
			return nil
		})
		return nil
	}))
	h.publish("type", "note", "data", "hello")
	<-done
	if got := h.client.Get(context.Background(), h.stream+":note").Val(); got != "hello" {
		t.Errorf("note = %q", got)
	}
}

func TestSetupErrorStopsStart(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	err := Run(context.Background(), cfg, NewMux(), WithRedis(srv.Client(t)), WithLogger(testLogger(t)),
		WithSetup(func(context.Context, Deps) error { return errors.New("database unreachable") }))
	if err == nil || err.Error() != "setup: database unreachable" {
		t.Errorf("Run = %v, want the setup error", err)
	}
}

func TestWarnsWhenRedisMayEvictStreams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy, level, want string
	}{
		{"allkeys-lru", "ERROR", "REDIS MAY EVICT STREAMS"},
		{"volatile-lru", "WARN", "dedupe marks"},
		{"noeviction", "", ""},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			srv := testredis.Start(t, "--maxmemory-policy", tc.policy)
			var buf syncBuffer
			checkEviction(context.Background(), srv.Client(t), slog.New(slog.NewTextHandler(&buf, nil)))
			out := buf.String()
			if tc.want == "" {
				if out != "" {
					t.Errorf("logged %q for noeviction, want nothing", out)
				}
				return
			}
			if !strings.Contains(out, "level="+tc.level) || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.policy) {
				t.Errorf("log = %q, want a %s line containing %q and the policy", out, tc.level, tc.want)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package producer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/worker"
)

// startWorker runs the real runtime on stream with h for type "t" until the
// test ends.
func startWorker(t *testing.T, srv *testredis.Server, c *redis.Client, stream string, h worker.HandlerFunc) {
	t.Helper()
	mux := worker.NewMux()
	mux.Handle("t", h)
	cfg := config.Default()
	cfg.RedisURL, cfg.Streams, cfg.Group, cfg.Consumer = srv.URL(), []string{stream}, "g", "c1"
	cfg.Block, cfg.PromoteInterval, cfg.HTTPAddr = 50*time.Millisecond, 10*time.Millisecond, "off"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, cfg, mux, worker.WithRedis(c),
			worker.WithLogger(slog.New(slog.DiscardHandler)), worker.WithRegistry(prometheus.NewRegistry()))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run = %v", err)
		}
	})
}

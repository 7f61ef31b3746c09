package worker

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/internal/testredis"
)

// TestRunReturnsWhenHTTPAddrIsBusy runs Run as Main does (with signals) on
// an address another listener holds: it must return the listen error, having
// started nothing it leaves behind (goleak checks), instead of waiting on a
// signal watcher.
func TestRunReturnsWhenHTTPAddrIsBusy(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t, srv)
	cfg.HTTPAddr = busy.Addr().String()
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), cfg, NewMux(), WithRedis(srv.Client(t)), WithLogger(testLogger(t)),
			WithRegistry(prometheus.NewRegistry()), WithSignals())
	}()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after failing to listen")
	}
	if err == nil || !strings.Contains(err.Error(), "WORKER_HTTP_ADDR") || !strings.Contains(err.Error(), cfg.HTTPAddr) {
		t.Errorf("Run = %v, want the listen error naming WORKER_HTTP_ADDR and %s", err, cfg.HTTPAddr)
	}
	n, err := srv.Client(t).Exists(context.Background(), cfg.Streams[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("stream %s was created: a worker that cannot serve must not touch Redis", cfg.Streams[0])
	}
}

package worker

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/internal/testredis"
)

// A SIGTERM that comes while the worker is still starting (here, during
// its setup) ends Run cleanly once it has started. Before Run watched for
// it from its first line, such a signal killed the process: here, the
// test binary. Not parallel: the signal goes to the whole process.
func TestSignalWhileStartingEndsRunCleanly(t *testing.T) {
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	signal := WithSetup(func(context.Context, Deps) error {
		return syscall.Kill(os.Getpid(), syscall.SIGTERM)
	})
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), cfg, NewMux(), WithRedis(srv.Client(t)), WithLogger(testLogger(t)),
			WithRegistry(prometheus.NewRegistry()), WithSignals(), signal)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after a SIGTERM while starting, want nil (a clean shutdown)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end after a SIGTERM while starting") // a hang guard, not a timing bound
	}
}

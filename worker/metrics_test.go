package worker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/config"
)

// TestScrapeWhileAnEngineIsBuilt scrapes the metrics that engines share
// while more engines are built on them, as the tests' workers and a
// process that restarts its runtime do: the in-flight gauge counts the
// handlers of the engine built last, and must not read its list of
// worker states while that engine still adds to it (run with -race).
func TestScrapeWhileAnEngineIsBuilt(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	cfg := config.Default()
	cfg.Streams, cfg.Group, cfg.Consumer, cfg.Partitions = []string{"s"}, "g", "c", 16
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 20 {
		newEngine(cfg, nil, NewMux(), testLogger(t), m)
	}
	close(stop)
	<-done
}

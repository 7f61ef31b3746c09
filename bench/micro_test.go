package bench

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// Micro-benchmarks of the per-message pure code, with allocation counts.
// They need no Redis.

// BenchmarkEncodeEnvelope encodes a retry envelope of a 100-byte message.
func BenchmarkEncodeEnvelope(b *testing.B) {
	fields := []string{wire.FieldType, msgType, wire.FieldData, string(payload), wire.FieldAttempt, "2"}
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.EncodeEnvelope("1700000000000-0", fields)
	}
}

func newBenchMux() *worker.Mux {
	mux := worker.NewMux()
	for _, t := range []string{"order.created", "order.paid", "order.shipped", "user.signed_up", "email.send", msgType} {
		mux.HandleFunc(t, func(context.Context, *worker.Message) error { return nil })
	}
	return mux
}

// BenchmarkMuxHandleMessage routes one message through a Mux of six types.
func BenchmarkMuxHandleMessage(b *testing.B) {
	mux := newBenchMux()
	m := &worker.Message{ID: "1700000000000-0", Stream: "events", Type: msgType, Data: payload, Attempt: 1}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := mux.HandleMessage(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerChain is the per-message handler path NewRuntime builds
// around a Mux: metrics, logging (at info, so off), recover, route. (The
// handler deadline is not a middleware there: each handler goroutine's
// context carries it; worker's BenchmarkProcess measures the whole.)
func BenchmarkHandlerChain(b *testing.B) {
	metrics := worker.NewMetrics(prometheus.NewRegistry())
	logger := slog.New(slog.DiscardHandler)
	var h worker.Handler = newBenchMux()
	h = worker.Recover()(h)
	h = worker.Logging(logger)(h)
	h = metrics.Instrument()(h)
	m := &worker.Message{ID: "1700000000000-0", Stream: "events", Type: msgType, Data: payload, Attempt: 1}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.HandleMessage(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddleware is each middleware alone around a Mux, to see which
// one costs what; Timeout is the middleware for handlers run outside the
// runtime.
func BenchmarkMiddleware(b *testing.B) {
	metrics := worker.NewMetrics(prometheus.NewRegistry())
	for _, mw := range []struct {
		name string
		mw   worker.Middleware
	}{
		{"Recover", worker.Recover()},
		{"Timeout", worker.Timeout(30 * time.Second)},
		{"Logging", worker.Logging(slog.New(slog.DiscardHandler))},
		{"Instrument", metrics.Instrument()},
	} {
		b.Run(mw.name, func(b *testing.B) {
			h := mw.mw(newBenchMux())
			m := &worker.Message{ID: "1700000000000-0", Stream: "events", Type: msgType, Data: payload, Attempt: 1}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if err := h.HandleMessage(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package worker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/tracing"
	"github.com/streamworker/streamworker/wire"
)

// Micro-benchmarks of the runtime's per-message path, without Redis: what
// a message costs between the read's reply and the acknowledgement. Run
// with -benchmem for the allocations.

func benchEntries(n int) []redis.XMessage {
	data := string(make([]byte, 100))
	out := make([]redis.XMessage, n)
	for i := range out {
		out[i] = redis.XMessage{ID: "1700000000000-" + strconv.Itoa(i), Values: map[string]any{wire.FieldType: "t", wire.FieldData: data}}
	}
	return out
}

// BenchmarkNewMessages builds the Messages of one read of 64 entries; ns/op
// and allocs/op are per read.
func BenchmarkNewMessages(b *testing.B) {
	entries := benchEntries(64)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = newMessages("events", entries, now)
	}
}

// BenchmarkProcess runs one message through a handler goroutine's whole
// path: its context, the middleware newEngine adds (metrics, logging,
// recover), the Mux, and the queued acknowledgement.
func BenchmarkProcess(b *testing.B) { benchProcess(b, false) }

// BenchmarkProcessTraced is BenchmarkProcess with tracing on, as
// OTEL_EXPORTER_OTLP_ENDPOINT turns it on: every message sampled (the
// default sampler samples every root span), its process span exported in
// batches by the real OTLP/HTTP exporter to a local receiver that discards
// them. The difference to BenchmarkProcess is what tracing costs a message.
func BenchmarkProcessTraced(b *testing.B) { benchProcess(b, true) }

func benchProcess(b *testing.B, traced bool) {
	var tracer func(r *engine)
	if traced {
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
		}))
		defer sink.Close()
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
		b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
		tp, err := tracing.New(context.Background(), os.Getenv, "bench")
		if err != nil || !tp.On {
			b.Fatalf("tracing.New = %v, on %v", err, tp != nil && tp.On)
		}
		defer func() { _ = tp.Shutdown(context.Background()) }()
		tracer = func(r *engine) { r.tracer = tp.Tracer(tracerName) }
	}
	cfg := config.Default()
	cfg.Streams = []string{"events"}
	mux := NewMux()
	mux.HandleFunc("t", func(context.Context, *Message) error { return nil })
	r := newEngine(cfg, nil, mux, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	if tracer != nil {
		tracer(r)
	}
	w := r.workers[0]
	w.ctx = newMsgContext(r.handlerCtx)
	defer w.ctx.release()
	m := newMessages("events", benchEntries(1), time.Now())[0]
	var spare []ackReq
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.process(w, m)
		if i%256 == 255 { // as the ack loop would
			spare = r.acks.take(spare)[:0]
		}
	}
}

// BenchmarkDispatch hands a read of 64 messages to the handler goroutines'
// queue and takes them off again; per read.
func BenchmarkDispatch(b *testing.B) {
	q := newJobQueue(64)
	batch := newMessages("events", benchEntries(64), time.Now())
	s := newSemaphore(64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n := s.acquire(ctx, 32, 256, 0, nil)
		q.push(batch[:n]...)
		for range n {
			q.pop()
			s.release(1)
		}
	}
}

// BenchmarkFinished counts one finished message in
// streamworker_messages_total, as a lone read's acknowledgement does.
func BenchmarkFinished(b *testing.B) {
	mux := NewMux()
	mux.HandleFunc("t", func(context.Context, *Message) error { return nil })
	m := NewMetrics(prometheus.NewRegistry())
	m.labelTypes(mux)
	b.ReportAllocs()
	for b.Loop() {
		m.finished("events", "t", OutcomeAcked, 1)
	}
}

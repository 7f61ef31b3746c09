package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/internal/tracing"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// traceReceiver is an OTLP/HTTP trace receiver on loopback: it decodes
// every ExportTraceServiceRequest posted to /v1/traces and keeps the spans.
type traceReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newTraceReceiver(t *testing.T) *traceReceiver {
	r := &traceReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var msg coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &msg)
		}
		if err != nil {
			t.Errorf("receiver: decoding an export: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// named returns the spans received with the given name.
func (r *traceReceiver) named(name string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// attr returns a span attribute's value as text ("" when absent).
func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() != key {
			continue
		}
		if sv, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
			return sv.StringValue
		}
		return itoa(int(kv.GetValue().GetIntValue()))
	}
	return ""
}

// TestTracingOTLP runs a worker and a producer with the OTLP/HTTP exporter
// pointed at a local receiver: a message that fails twice and then succeeds
// is one trace of a publish span and three process spans, and a
// dead-lettered message keeps its trace context in the dead letter and
// when replayed.
func TestTracingOTLP(t *testing.T) {
	srv := testredis.Shared(t)
	recv := newTraceReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	cfg := testConfig(t, srv)
	cfg.MaxAttempts = 5
	mux := NewMux()
	mux.HandleFunc("flaky", func(ctx context.Context, m *Message) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return Permanent(errors.New("no span in the handler's context"))
		}
		if m.Attempt < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	mux.HandleFunc("doomed", func(context.Context, *Message) error { return Permanent(errors.New("never")) })
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := startWorker(t, srv, cfg, mux, WithLogger(logger))

	ctx := context.Background()
	tp, err := tracing.New(ctx, os.Getenv, "producer-test")
	if err != nil || !tp.On {
		t.Fatalf("tracing.New = %v, on %v; want an SDK provider", err, tp != nil && tp.On)
	}
	p := producer.New(h.client, producer.Options{TracerProvider: tp})
	if _, err := p.Publish(ctx, h.stream, producer.Event{Type: "flaky", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, h.stream, producer.Event{Type: "doomed", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(ctx); err != nil { // flushes the publish spans
		t.Fatal(err)
	}
	eventually(t, "flaky acknowledged and doomed dead-lettered", func() bool {
		return h.outcome("flaky", OutcomeAcked) == 1 && len(h.dlq()) == 1
	})
	if err := h.stop(); err != nil { // flushes the process spans
		t.Fatalf("Run = %v", err)
	}

	publish := recv.named("publish " + h.stream)
	if len(publish) != 2 {
		t.Fatalf("%d publish spans, want 2", len(publish))
	}
	pubOf := map[string]*tracepb.Span{} // by trace ID
	for _, s := range publish {
		if attr(s, "messaging.system") != "redis" || attr(s, "messaging.destination.name") != h.stream || attr(s, "messaging.operation.type") != "send" {
			t.Errorf("publish span attributes: %v", s.GetAttributes())
		}
		pubOf[string(s.GetTraceId())] = s
	}
	byType := map[string][]*tracepb.Span{}
	for _, s := range recv.named("process " + h.stream) {
		byType[attr(s, "streamworker.type")] = append(byType[attr(s, "streamworker.type")], s)
	}

	t.Run("RetriesInOneTrace", func(t *testing.T) {
		spans := byType["flaky"]
		if len(spans) != 3 {
			t.Fatalf("%d process spans of flaky, want 3 (one per attempt)", len(spans))
		}
		outcomes := map[string]string{}
		for _, s := range spans {
			pub := pubOf[string(s.GetTraceId())]
			if pub == nil {
				t.Fatalf("process span of attempt %s is not in a publish span's trace", attr(s, "streamworker.attempt"))
			}
			if !bytes.Equal(s.GetParentSpanId(), pub.GetSpanId()) {
				t.Errorf("attempt %s: parent span is not the publish span", attr(s, "streamworker.attempt"))
			}
			for k, want := range map[string]string{
				"messaging.system": "redis", "messaging.destination.name": h.stream,
				"messaging.consumer.group.name": cfg.Group, "messaging.operation.type": "process",
			} {
				if got := attr(s, k); got != want {
					t.Errorf("attempt %s: %s = %q, want %q", attr(s, "streamworker.attempt"), k, got, want)
				}
			}
			if attr(s, "messaging.message.id") == "" {
				t.Errorf("attempt %s: no messaging.message.id", attr(s, "streamworker.attempt"))
			}
			outcomes[attr(s, "streamworker.attempt")] = attr(s, "streamworker.outcome")
		}
		if string(spans[0].GetTraceId()) != string(spans[1].GetTraceId()) || string(spans[1].GetTraceId()) != string(spans[2].GetTraceId()) {
			t.Errorf("the attempts are in more than one trace")
		}
		want := map[string]string{"1": OutcomeRetried, "2": OutcomeRetried, "3": OutcomeAcked}
		for a, o := range want {
			if outcomes[a] != o {
				t.Errorf("attempt %s: outcome %q, want %q (all: %v)", a, outcomes[a], o, outcomes)
			}
		}
	})

	t.Run("DeadLetterKeepsTraceContext", func(t *testing.T) {
		spans := byType["doomed"]
		if len(spans) != 1 {
			t.Fatalf("%d process spans of doomed, want 1", len(spans))
		}
		s := spans[0]
		if pubOf[string(s.GetTraceId())] == nil {
			t.Fatalf("the process span of doomed is not in its publish span's trace")
		}
		if got := attr(s, "streamworker.outcome"); got != OutcomeDead {
			t.Errorf("outcome %q, want %q", got, OutcomeDead)
		}
		if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("status %v, want an error", s.GetStatus())
		}
		dl := h.dlq()[0]
		tp, _ := dl.Values[wire.FieldTraceparent].(string)
		traceID := trace.TraceID(s.GetTraceId()).String()
		if !strings.Contains(tp, "-"+traceID+"-") {
			t.Errorf("dead letter traceparent = %q, want trace %s", tp, traceID)
		}
		// A replay keeps it too: the replayed entry is the stream's last.
		if _, err := streamadmin.New(h.client).Replay(ctx, h.stream, []string{dl.ID}); err != nil {
			t.Fatalf("replay: %v", err)
		}
		last, err := h.client.XRevRangeN(ctx, h.stream, "+", "-", 1).Result()
		if err != nil || len(last) != 1 {
			t.Fatalf("XREVRANGE: %v", err)
		}
		if got, _ := last[0].Values[wire.FieldTraceparent].(string); got != tp {
			t.Errorf("replayed traceparent = %q, want %q", got, tp)
		}
		if !strings.Contains(logs.String(), "trace_id="+traceID) {
			t.Errorf("no log line with trace_id=%s:\n%s", traceID, logs.String())
		}
	})
}

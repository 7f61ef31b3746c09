package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"Unset", nil, false},
		{"Endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"TracesEndpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"Disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"DisabledFalse", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "false"}, true},
		{"OnlyServiceName", map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("Enabled = %v, want %v", got, tc.want)
			}
		})
	}
}

// Off, New returns a no-op provider whose Shutdown does nothing.
func TestNewOff(t *testing.T) {
	tp, err := New(context.Background(), func(string) string { return "" }, "s")
	if err != nil || tp.On {
		t.Fatalf("New = %v, on %v; want off", err, tp.On)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "x")
	if span.IsRecording() {
		t.Error("the no-op provider's span records")
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "c")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled,
	})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "in a span")
	log.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "trace_id="+sc.TraceID().String()) || !strings.Contains(lines[0], "span_id="+sc.SpanID().String()) {
		t.Errorf("line in a span without its IDs: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line outside a span has a trace_id: %s", lines[1])
	}
}

// traceSink is an OTLP/gRPC trace receiver on loopback that counts the
// spans it receives.
type traceSink struct {
	coltracepb.UnimplementedTraceServiceServer
	spans chan string
}

func (s *traceSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans <- sp.GetName()
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC.
func TestNewGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sink := &traceSink{spans: make(chan string, 10)}
	coltracepb.RegisterTraceServiceServer(srv, sink)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+l.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	tp, err := New(context.Background(), os.Getenv, "s")
	if err != nil || !tp.On {
		t.Fatalf("New = %v, on %v; want on", err, tp != nil && tp.On)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "over grpc")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-sink.spans:
		if name != "over grpc" {
			t.Errorf("received span %q, want %q", name, "over grpc")
		}
	default:
		t.Fatal("no span received over gRPC after the flush")
	}
}

func TestNewRefusesUnknownProtocol(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}
	_, err := New(context.Background(), func(k string) string { return env[k] }, "s")
	if err == nil || !strings.Contains(err.Error(), `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/json" is invalid: want http/protobuf or grpc`) {
		t.Errorf("New = %v, want the variable named with what is allowed", err)
	}
}

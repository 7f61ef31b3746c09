package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// With an OTLP endpoint set, send exports its publish span before it exits,
// and the entry carries the span's trace context in its traceparent field.
func TestSendTraced(t *testing.T) {
	var mu sync.Mutex
	var traceIDs []string // of the publish spans received
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(raw, &msg) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if strings.HasPrefix(s.GetName(), "publish ") {
						traceIDs = append(traceIDs, hex.EncodeToString(s.GetTraceId()))
					}
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SDK_DISABLED", "")

	srv := testredis.Shared(t)
	stream := testredis.Prefix(t) + "s"
	var out, errOut strings.Builder
	sio := stdio{
		in: strings.NewReader(""), out: &out, err: &errOut,
		getenv: func(k string) string {
			if k == "REDIS_URL" {
				return srv.URL()
			}
			return os.Getenv(k)
		},
		isTerminal: func(io.Writer) bool { return false },
	}
	if err := run(context.Background(), []string{"send", "--stream", stream, "--type", "t"}, sio); err != nil {
		t.Fatalf("send: %v; stderr %q", err, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(traceIDs) != 1 {
		t.Fatalf("%d publish spans received, want 1 (flushed before exit)", len(traceIDs))
	}
	entries, err := srv.Client(t).XRange(context.Background(), stream, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
	}
	tp, _ := entries[0].Values[wire.FieldTraceparent].(string)
	if !strings.Contains(tp, "-"+traceIDs[0]+"-") {
		t.Errorf("traceparent = %q, want trace %s", tp, traceIDs[0])
	}
}

package producer

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// Every way to publish makes a publish span and writes its trace context
// into each event's traceparent field, without changing the caller's
// metadata map.
func TestPublishTraceparent(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	client := srv.Client(t)
	rec := tracetest.NewSpanRecorder()
	p := New(client, Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	md := map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k": "v"}
	e := Event{Type: "t", Data: []byte(`{}`), Metadata: md}
	if _, err := p.Publish(ctx, stream, e); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(ctx, stream, []Event{e, e}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishItems(ctx, stream, []Item{{Event: e}}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishDelayed(ctx, stream, e, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if md["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" || len(md) != 2 {
		t.Errorf("the caller's metadata changed: %v", md)
	}
	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
	entries, err := client.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) != 4 {
		t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
	}
	want := []int{0, 1, 1, 2} // the span of each entry: Publish, the batch, PublishItems
	for i, en := range entries {
		sc := spans[want[i]].SpanContext()
		tp := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
		if got := en.Values[wire.FieldTraceparent]; got != tp {
			t.Errorf("entry %d: traceparent %v, want %s", i, got, tp)
		}
		if en.Values["k"] != "v" {
			t.Errorf("entry %d: metadata lost: %v", i, en.Values)
		}
	}
	for _, s := range spans {
		if !strings.HasPrefix(s.Name(), "publish ") || s.SpanKind().String() != "producer" {
			t.Errorf("span %q of kind %v", s.Name(), s.SpanKind())
		}
	}
	members, err := client.ZRange(ctx, wire.DelayedKey(stream), 0, -1).Result()
	if err != nil || len(members) != 1 || !strings.Contains(members[0], spans[3].SpanContext().TraceID().String()) {
		t.Errorf("delayed member %q does not carry the trace of its publish span (%v)", members, err)
	}
}

// With the default provider (no-op unless a program sets one) and no span
// in the context, an event is sent as it is, its own traceparent kept, and
// the publish span costs at most three small allocations (the no-op
// span and its context).
func TestPublishUntraced(t *testing.T) {
	p := New(nil, Options{})
	e := Event{Type: "t", Metadata: map[string]string{"traceparent": "x"}}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		ctx, span := p.startPublish(ctx, "s", 1)
		if got := traced(ctx, e); got.Metadata["traceparent"] != "x" {
			t.Fatalf("traceparent %q, want the event's own", got.Metadata["traceparent"])
		}
		endPublish(span, nil)
	})
	if allocs > 3 {
		t.Errorf("%v allocations per untraced publish span, want at most 3", allocs)
	}
	t.Logf("%v allocations per untraced publish span", allocs)
}

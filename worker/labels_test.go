package worker

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// A type that is not valid UTF-8 is dead-lettered like any unknown type.
// Prometheus refuses such a label value with a panic, and the metrics
// middleware runs outside the handler's panic recovery: used raw as a label,
// this message would kill the process on every delivery.
func TestInvalidUTF8TypeIsDeadLettered(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	mux := NewMux()
	mux.HandleFunc("known", func(context.Context, *Message) error { return nil })
	h := startWorker(t, srv, cfg, mux)
	h.publish("type", "\xff\xfe", "data", "x")
	h.publish("type", "known", "data", "y")
	eventually(t, "the invalid type dead-lettered and the known one acked", func() bool {
		return len(h.dlq()) == 1 && h.outcome("known", OutcomeAcked) == 1
	})
	if got := h.dlq()[0].Values[wire.FieldType]; got != "\xff\xfe" {
		t.Errorf("dead letter type = %q, want the bytes as sent", got)
	}
	if got := h.outcome(TypeLabelOther, OutcomeDead); got != 1 {
		t.Errorf("dead messages labelled %q = %d, want 1", TypeLabelOther, got)
	}
}

// Types come from producers: a thousand distinct unknown types, one that is
// not UTF-8 and one of 64 KB must not add a series each. They share one
// label value, a missing type another, and registered types keep theirs.
func TestUnknownTypesShareOneLabel(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	cfg.Concurrency = 32
	mux := NewMux()
	mux.HandleFunc("known", func(context.Context, *Message) error { return nil })
	h := startWorker(t, srv, cfg, mux)

	const unknown = 1000
	pipe := h.client.Pipeline()
	add := func(fields ...string) {
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: h.stream, Values: fields})
	}
	for i := range unknown {
		add("type", "unknown."+strconv.Itoa(i), "data", "x")
	}
	add("type", "\xc3\x28invalid", "data", "x")
	add("type", strings.Repeat("t", 64<<10), "data", "x")
	add("data", "no type at all")
	for range 5 {
		add("type", "known", "data", "y")
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantOther := unknown + 2
	eventually(t, "every unknown type dead-lettered and the known ones acked", func() bool {
		return h.outcome(TypeLabelOther, OutcomeDead) == wantOther && h.outcome(TypeLabelNone, OutcomeDead) == 1 &&
			h.outcome("known", OutcomeAcked) == 5
	})
	if n := len(h.dlq()); n != wantOther+1 {
		t.Errorf("dead letters = %d, want %d", n, wantOther+1)
	}

	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	series := map[string]int{}
	types := map[string]bool{}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
		series[mf.GetName()] += len(mf.GetMetric())
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" {
					types[l.GetValue()] = true
				}
			}
		}
	}
	for _, name := range []string{"streamworker_messages_total", "streamworker_handler_duration_seconds"} {
		if series[name] > 3 { // known, (other), (none)
			t.Errorf("%s has %d series, want at most 3", name, series[name])
		}
	}
	for typ := range types {
		if typ != "known" && typ != TypeLabelOther && typ != TypeLabelNone {
			t.Errorf("type label %.40q, want only known, %s and %s", typ, TypeLabelOther, TypeLabelNone)
		}
	}
	if text.Len() > 64<<10 {
		t.Errorf("the metrics page is %d bytes; it grows with producers' types", text.Len())
	}
}

func TestUnhandledTypeErrorShowsABoundedType(t *testing.T) {
	t.Parallel()
	mux := NewMux()
	mux.HandleFunc("known", func(context.Context, *Message) error { return nil })
	for _, tc := range []struct {
		name, typ, want string
	}{
		{"Short", "order.created", `no handler for message type "order.created"`},
		{"NotUTF8", "a\xffb", `no handler for message type "a\xffb"`},
		{"Long", strings.Repeat("t", 64<<10), `no handler for message type "` + strings.Repeat("t", maxShownType) + `…(65536 bytes)"`},
		{"LongCutInsideACharacter", strings.Repeat("t", maxShownType-1) + strings.Repeat("é", 100), `no handler for message type "` + strings.Repeat("t", maxShownType-1) + `…(327 bytes)"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mux.HandleMessage(context.Background(), &Message{Type: tc.typ})
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v\nwant    %s", err, tc.want)
			}
		})
	}
}

func TestMuxRefusesATypeThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "not UTF-8") {
			t.Errorf("recover() = %v, want a panic about UTF-8", v)
		}
	}()
	NewMux().HandleFunc("bad\xff", func(context.Context, *Message) error { return nil })
}

// A type in a log line is escaped and cut: a producer's bytes never reach
// the log raw, nor 64 KB of them.
func TestLoggingShowsAnEscapedBoundedType(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			var handler slog.Handler = slog.NewJSONHandler(&out, opts)
			if format == "text" {
				handler = slog.NewTextHandler(&out, opts)
			}
			h := Logging(slog.New(handler))(HandlerFunc(func(context.Context, *Message) error { return nil }))
			for _, typ := range []string{"\xff\xfe\x1b[2J", strings.Repeat("\xff", 64<<10)} {
				out.Reset()
				_ = h.HandleMessage(context.Background(), &Message{Type: typ})
				line := out.String()
				if !utf8.ValidString(line) || strings.Contains(line, "\x1b") || strings.Contains(line, "\xff") || len(line) > 2048 {
					t.Errorf("log line of %d bytes: %.300q", len(line), line)
				}
			}
		})
	}
}

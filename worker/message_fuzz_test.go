package worker

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/wire"
)

// FuzzNewMessage turns arbitrary fields into a Message, as a read or a
// claim does, and runs it through the Mux and the metrics: nothing panics,
// and Attempt, Type, Data, the size and the type label keep their
// invariants. raw is the entry's flat field/value list, NUL-separated; an
// odd last name is dropped, as a reply parser does.
func FuzzNewMessage(f *testing.F) {
	for _, seed := range []string{
		"type\x00known\x00data\x00{}",
		"type\x00known\x00data\x00x\x00attempt\x009223372036854775807",
		"type\x00known\x00attempt\x00-1",
		"type\x00known\x00attempt\x00abc",
		"type\x00known\x00attempt\x001e30",
		"type\x00known\x00attempt\x00+7\x00origin_id\x001-1",
		"type\x00known\x00attempt\x0099999999999999999999999999",
		"type\x00\xff\xfe\x00data\x00x",
		"type\x00" + strings.Repeat("t", 64<<10),
		"type\x00" + TypeLabelOther + "\x00data",
		"type\x00" + TypeLabelNone,
		"data\x00no type",
		"type\x00\x00data\x00\x00id\x00k\x00key\x00p\x00traceparent\x0000-1-2-01\x00extra\x00\xc3\x28",
		"type\x00known\x00type\x00other",
		"odd",
		"",
	} {
		f.Add("1700000000000-0", seed)
	}
	reg := prometheus.NewRegistry()
	mt := NewMetrics(reg)
	mux := NewMux()
	mux.HandleFunc("known", func(context.Context, *Message) error { return nil })
	mt.labelTypes(mux)
	h := mt.Instrument()(mux)

	f.Fuzz(func(t *testing.T, id, raw string) {
		tokens := strings.Split(raw, "\x00")
		fields := map[string]any{}
		for i := 0; i+1 < len(tokens); i += 2 {
			fields[tokens[i]] = tokens[i+1]
		}
		m := newMessages("s", []xEntry{{ID: id, Values: fields}}, time.Now())[0]
		one := newMessage("s", xEntry{ID: id, Values: fields})
		if m.Type != one.Type || m.Key != one.Key || !bytes.Equal(m.Data, one.Data) || m.Attempt != one.Attempt || m.size != one.size {
			t.Fatalf("newMessages and newMessage disagree: %+v, %+v", m, one)
		}

		typ, _ := fields[wire.FieldType].(string)
		data, hasData := fields[wire.FieldData].(string)
		if m.Type != typ || string(m.Data) != data || (hasData && m.Data == nil) {
			t.Fatalf("Type %q Data %q, want the fields %q %q", m.Type, m.Data, typ, data)
		}
		if key, _ := fields[wire.FieldKey].(string); m.Key != key {
			t.Fatalf("Key %q, want the key field %q", m.Key, key)
		}
		if m.Attempt < 1 || m.Attempt > maxAttempt {
			t.Fatalf("Attempt = %d, want it in [1, %d]", m.Attempt, maxAttempt)
		}
		if a, ok := fields[wire.FieldAttempt].(string); ok {
			n, err := strconv.ParseUint(a, 10, 64)
			switch {
			case err == nil && n >= 1 && n <= maxAttempt:
				if m.Attempt != int(n) {
					t.Fatalf("attempt %q: Attempt = %d, want %d", a, m.Attempt, n)
				}
			case err == nil && n == 0:
				if m.Attempt != 1 {
					t.Fatalf("attempt %q: Attempt = %d, want 1", a, m.Attempt)
				}
			}
		} else if m.Attempt != 1 {
			t.Fatalf("no attempt field: Attempt = %d, want 1", m.Attempt)
		}
		size, meta := 0, 0
		for k, v := range fields {
			size += len(k) + len(v.(string))
			switch k {
			case wire.FieldType, wire.FieldData, wire.FieldID, wire.FieldOriginID, wire.FieldAttempt, wire.FieldKey:
			default:
				meta++
				if got, ok := m.Metadata[k]; !ok || got != v {
					t.Fatalf("Metadata[%q] = %q, want %q", k, got, v)
				}
			}
		}
		if m.size != size || len(m.Metadata) != meta {
			t.Fatalf("size %d metadata %d, want %d and %d", m.size, len(m.Metadata), size, meta)
		}
		if o, _ := fields[wire.FieldOriginID].(string); (o != "" && m.OriginID != o) || (o == "" && m.OriginID != id) {
			t.Fatalf("OriginID = %q, want %q or the ID", m.OriginID, o)
		}

		label := mt.typeLabel(m.Type)
		if label != "known" && label != TypeLabelOther && label != TypeLabelNone {
			t.Fatalf("type label %q, want known, %s or %s", label, TypeLabelOther, TypeLabelNone)
		}
		if mt.typeLabel(label) != label {
			t.Fatalf("type label %q is not its own label", label)
		}
		if s := shownType(m.Type); len(s) > maxShownType+32 {
			t.Fatalf("shown type of %d bytes", len(s))
		}

		err := h.HandleMessage(context.Background(), m)
		switch {
		case typ == "":
			if !errors.Is(err, ErrNoType) {
				t.Fatalf("no type: err = %v", err)
			}
		case typ == "known":
			if err != nil {
				t.Fatalf("known type: err = %v", err)
			}
		default:
			if !errors.Is(err, ErrNoHandler) || len(err.Error()) > 64+4*maxShownType || !utf8.ValidString(err.Error()) {
				t.Fatalf("unknown type: err = %.200q", err)
			}
		}
		mt.Messages.WithLabelValues(m.Stream, m.Type, OutcomeDead).Inc()

		copied := m.copyFields(wire.FieldAttempt)
		if len(copied)%2 != 0 {
			t.Fatalf("copyFields gave an odd list of %d", len(copied))
		}
		back := map[string]string{}
		for i := 0; i < len(copied); i += 2 {
			back[copied[i]] = copied[i+1]
		}
		for k, v := range fields {
			if k == wire.FieldAttempt {
				if _, ok := back[k]; ok {
					t.Fatalf("copyFields kept the skipped field")
				}
				continue
			}
			if back[k] != v {
				t.Fatalf("copyFields[%q] = %q, want %q", k, back[k], v)
			}
		}
	})
}

package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// wideEntry is an entry with n metadata fields besides type and data.
func wideEntry(typ string, n int) []string {
	f := []string{wire.FieldType, typ, wire.FieldData, "payload"}
	for i := range n {
		f = append(f, "m"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	return f
}

// pairs turns a field list into a map, for comparing entries whose order is
// the runtime's.
func pairs(f []string) map[string]string {
	m := make(map[string]string, len(f)/2)
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}

// An entry too wide for a script to copy field by field (Lua's unpack stops
// near 8000 values) is dead-lettered whole at its first failure, retryable or
// not, and is never acknowledged without its copy.
func TestWideEntryIsDeadLetteredWhole(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, n := range []int{5000, 20000} {
		for _, permanent := range []bool{false, true} {
			t.Run("Fields"+strconv.Itoa(n)+map[bool]string{false: "Retryable", true: "Permanent"}[permanent], func(t *testing.T) {
				t.Parallel()
				cfg := testConfig(t, srv)
				mux := NewMux()
				mux.HandleFunc("wide", func(ctx context.Context, m *Message) error {
					if permanent {
						return Permanent(errors.New("refused"))
					}
					return errors.New("try later")
				})
				h := startWorker(t, srv, cfg, mux)
				entry := wideEntry("wide", n)
				id := h.publish(entry...)
				eventually(t, "dead-lettered", func() bool { return h.outcome("wide", OutcomeDead) == 1 })
				if p := h.pending(); p != 0 {
					t.Errorf("pending = %d, want 0", p)
				}
				dead := h.dlq()
				if len(dead) != 1 {
					t.Fatalf("dlq holds %d entries, want 1", len(dead))
				}
				d := dead[0].Values
				if d[wire.FieldType] != "wide" || d[wire.FieldOriginID] != id || d[wire.FieldGroup] != cfg.Group {
					t.Errorf("dead letter = type %v, origin_id %v, group %v", d[wire.FieldType], d[wire.FieldOriginID], d[wire.FieldGroup])
				}
				if e, _ := d[wire.FieldError].(string); !strings.Contains(e, map[bool]string{false: "not retried", true: "refused"}[permanent]) {
					t.Errorf("error = %q", e)
				}
				env, _ := d[wire.FieldEnvelope].(string)
				token, got, err := wire.DecodeEnvelope(env)
				if err != nil {
					t.Fatalf("envelope: %v", err)
				}
				want := pairs(append(entry, wire.FieldOriginID, id))
				if diff := cmp.Diff(want, pairs(got)); token != id || diff != "" {
					t.Errorf("envelope token %q (want %s), fields (-want +got):\n%s", token, id, diff)
				}
				if z := h.client.ZCard(context.Background(), wire.DelayedKey(h.stream)).Val(); z != 0 {
					t.Errorf("delayed set holds %d, want 0", z)
				}
			})
		}
	}
}

// A copy that cannot be written leaves the entry pending: the scripts write
// before they acknowledge.
func TestFailedCopyLeavesEntryPending(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	for _, tc := range []struct {
		name, outcome string
		err           error
		broken        func(stream string) string
	}{
		{"DeadLetter", OutcomeUnrecorded, Permanent(errors.New("refused")), wire.DeadLetterKey},
		{"Retry", OutcomeUnrecorded, errors.New("try later"), wire.DelayedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, srv)
			cfg.RetryInPlaceMax = 0 // every retry is a copy in the delayed set (a retry in place writes none)
			mux := NewMux()
			mux.HandleFunc("x", func(ctx context.Context, m *Message) error { return tc.err })
			h := startWorker(t, srv, cfg, mux)
			h.client.Set(context.Background(), tc.broken(h.stream), "not a stream or set", 0)
			h.publish("type", "x", "data", "d")
			eventually(t, "outcome unrecorded", func() bool { return h.outcome("x", tc.outcome) >= 1 })
			if p := h.pending(); p != 1 {
				t.Errorf("pending = %d, want the entry kept pending", p)
			}
		})
	}
}

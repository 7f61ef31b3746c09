package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// The attempt field is the producer's (or anyone's) to write. However it is
// forged, a message delivered WORKER_MAX_ATTEMPTS times without finishing —
// each time its consumer died — is dead-lettered when it is reclaimed, not
// run again: the crash-loop protection counts deliveries in Redis.
func TestForgedAttemptCannotDefeatTheCrashLoopProtection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, attempt string }{
		{"MaxInt64", "9223372036854775807"},
		{"BeyondInt64", "99999999999999999999999"},
		{"Negative", "-1"},
		{"MinInt64", "-9223372036854775808"},
		{"Zero", "0"},
		{"NotANumber", "abc"},
		{"Float", "1e30"},
		{"Empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testredis.Shared(t)
			cfg := testConfig(t, srv)
			cfg.MaxAttempts = 3
			cfg.ReclaimMinIdle = time.Second
			cfg.ReclaimInterval = 50 * time.Millisecond
			ctx := context.Background()
			c := srv.Client(t)
			stream := cfg.Streams[0]
			if err := c.XGroupCreateMkStream(ctx, stream, cfg.Group, "0").Err(); err != nil {
				t.Fatal(err)
			}
			id := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "poison", "attempt", tc.attempt}}).Val()
			// Delivered MaxAttempts times, each to a consumer that died with it.
			if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "dead1", Streams: []string{stream, ">"}, Count: 1}).Err(); err != nil {
				t.Fatal(err)
			}
			for _, consumer := range []string{"dead2", "dead3"} {
				if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: cfg.Group, Consumer: consumer, Messages: []string{id}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			var ran counter
			mux := NewMux()
			mux.HandleFunc("poison", func(ctx context.Context, m *Message) error {
				ran.inc(m.ID)
				return nil
			})
			h := startWorker(t, srv, cfg, mux)
			eventually(t, "the message dead-lettered", func() bool { return len(h.dlq()) == 1 })
			if n := ran.total(); n != 0 {
				t.Errorf("the handler ran %d times after %d deliveries, want 0", n, cfg.MaxAttempts)
			}
			dead := h.dlq()[0]
			if msg, _ := dead.Values[wire.FieldError].(string); !strings.Contains(msg, "abandoned: delivered 3 times") {
				t.Errorf("dead letter error %q, want it abandoned after 3 deliveries", msg)
			}
			if got := dead.Values[wire.FieldAttempts]; got != "3" {
				t.Errorf("dead letter attempts = %v, want 3", got)
			}
			if p := h.pending(); p != 0 {
				t.Errorf("pending = %d, want 0", p)
			}
		})
	}
}

// A forged attempt field never makes Attempt leave [1, maxAttempt], and
// never costs a message the attempts it has: a field that is not a positive
// integer counts as the first attempt.
func TestAttemptFieldIsParsedWithBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field string
		want  int
	}{
		{"1", 1},
		{"4", 4},
		{"+4", 1},
		{" 4", 1},
		{"04", 4},
		{"0", 1},
		{"-1", 1},
		{"-9223372036854775808", 1},
		{"abc", 1},
		{"1e30", 1},
		{"", 1},
		{"1000000", maxAttempt},
		{"1000001", maxAttempt},
		{"9223372036854775807", maxAttempt},
		{"99999999999999999999999", maxAttempt},
	} {
		m := newMessage("s", xEntry{ID: "1-0", Values: map[string]any{wire.FieldType: "t", wire.FieldAttempt: tc.field}})
		if m.Attempt != tc.want {
			t.Errorf("attempt field %q: Attempt = %d, want %d", tc.field, m.Attempt, tc.want)
		}
	}
}

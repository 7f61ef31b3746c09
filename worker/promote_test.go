package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

func TestPromoteMovesOnlyDueEntries(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	now := time.UnixMilli(1_700_000_000_000)
	add := func(token string, due time.Time, fields ...string) {
		c.ZAdd(ctx, DelayedKey(stream), redis.Z{Score: float64(due.UnixMilli()), Member: EncodeEnvelope(token, fields)})
	}
	add("a", now.Add(-time.Second), "type", "t", "data", "bin\x00ary:with:colons")
	add("b", now, "type", "t", "data", "")
	add("c", now.Add(time.Second), "type", "t", "data", "later")
	c.ZAdd(ctx, DelayedKey(stream), redis.Z{Score: 0, Member: "garbage"})

	p := NewPromoter(c, []string{stream}, time.Second, slog.New(slog.DiscardHandler), nil, nil)
	p.batch = 2 // several script calls for one pass
	p.now = func() time.Time { return now }
	moved, err := p.runOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if moved != 3 {
		t.Errorf("moved %d, want 3 (two due, one malformed)", moved)
	}
	got, _ := c.XRange(ctx, stream, "-", "+").Result()
	if len(got) != 2 || got[0].Values["data"] != "bin\x00ary:with:colons" || got[1].Values["data"] != "" {
		t.Errorf("stream = %v, want the two due entries, bytes intact", got)
	}
	if left := c.ZRange(ctx, DelayedKey(stream), 0, -1).Val(); len(left) != 1 {
		t.Errorf("delayed set = %q, want only the future entry", left)
	}
	dead, _ := c.XRange(ctx, DeadLetterKey(stream), "-", "+").Result()
	if len(dead) != 1 || dead[0].Values["envelope"] != "garbage" {
		t.Errorf("dlq = %v, want the malformed envelope", dead)
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	base, maxD := 100*time.Millisecond, time.Second
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 100 {
			d := backoff(attempt, base, maxD)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

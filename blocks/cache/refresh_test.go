package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock drives logical expiry; Redis TTLs still run on real time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// XFetch: far from expiry a hit never reloads; just before expiry a hit
// almost surely does, and gets the new value; with β = 0 it never does.
func TestEarlyRefresh(t *testing.T) {
	t.Parallel()
	for _, beta := range []float64{0, 1} {
		t.Run(fmt.Sprint("Beta", beta), func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{t: time.Now()}
			_, c, p := setup(t, &Options{EarlyRefresh: beta, Jitter: -1})
			c.now = clk.Now
			ctx := t.Context()
			key := p + "hot"
			l := &counter{fn: func(_ context.Context, call int64) ([]byte, error) {
				clk.Advance(time.Second) // the load takes a second: δ
				return []byte(fmt.Sprint("v", call)), nil
			}}
			if v, _ := c.Fetch(ctx, key, time.Hour, l.load); string(v) != "v1" {
				t.Fatalf("Fetch = %q", v)
			}
			for range 100 {
				if v, _ := c.Fetch(ctx, key, time.Hour, l.load); string(v) != "v1" {
					t.Fatalf("an hour from expiry, Fetch = %q; want v1", v)
				}
			}
			clk.Advance(time.Hour - time.Second - time.Millisecond) // 1ms before expiry
			var v []byte
			for range 20 {
				v, _ = c.Fetch(ctx, key, time.Hour, l.load)
				if string(v) != "v1" {
					break
				}
			}
			switch {
			case beta == 0 && (string(v) != "v1" || l.calls.Load() != 1):
				t.Fatalf("without XFetch: Fetch = %q after %d loads; want v1 after 1", v, l.calls.Load())
			case beta > 0 && (string(v) != "v2" || l.calls.Load() != 2):
				t.Fatalf("with XFetch: Fetch = %q after %d loads; want v2 after 2", v, l.calls.Load())
			}
		})
	}
}

// Stale-while-revalidate: past its TTL a value is served at once while one
// background load refreshes it.
func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Now()}
	_, c, p := setup(t, &Options{Stale: time.Hour, Jitter: -1})
	c.now = clk.Now
	ctx := t.Context()
	key := p + "hot"
	release := make(chan struct{})
	l := &counter{fn: func(_ context.Context, call int64) ([]byte, error) {
		if call > 1 {
			<-release
		}
		return []byte(fmt.Sprint("v", call)), nil
	}}
	if v, _ := c.Fetch(ctx, key, time.Minute, l.load); string(v) != "v1" {
		t.Fatalf("Fetch = %q", v)
	}
	clk.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if v, err := c.Fetch(ctx, key, time.Minute, l.load); err != nil || string(v) != "v1" {
				t.Errorf("stale Fetch = %q, %v; want v1 at once", v, err)
			}
		})
	}
	wg.Wait()
	close(release)
	waitFor(t, func() bool { v, _ := c.Get(ctx, key); return string(v) == "v2" })
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loader ran %d times; want 2 (one background refresh)", n)
	}
	// Past the stale window it is a miss (Redis expires it then).
	clk.Advance(3 * time.Hour)
	if _, err := c.Get(ctx, key); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get past the stale window = %v; want ErrMiss", err)
	}
}

// Close ends background refreshes and waits for them; Fetch then fails.
func TestClose(t *testing.T) {
	t.Parallel()
	rdb, _, p := setup(t, nil)
	clk := &fakeClock{t: time.Now()}
	c := New(rdb, &Options{Stale: time.Hour})
	c.now = clk.Now
	ctx := t.Context()
	key := p + "k"
	stuck := &counter{fn: func(ctx context.Context, call int64) ([]byte, error) {
		if call == 1 {
			return []byte("v1"), nil
		}
		<-ctx.Done() // a refresh that only Close ends
		return nil, ctx.Err()
	}}
	if _, err := c.Fetch(ctx, key, time.Minute, stuck.load); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	if v, _ := c.Fetch(ctx, key, time.Minute, stuck.load); string(v) != "v1" {
		t.Fatalf("stale Fetch = %q", v)
	}
	waitFor(t, func() bool { return stuck.calls.Load() == 2 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, p+"other", time.Minute, stuck.load); !errors.Is(err, ErrClosed) {
		t.Fatalf("Fetch after Close = %v; want ErrClosed", err)
	}
}

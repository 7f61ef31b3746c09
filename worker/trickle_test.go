package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/internal/testredis"
)

// readLog is a client hook that records the worker's XREADGROUP calls in
// order: "now" for a read without BLOCK, "wait" when a blocking read is
// sent and "got N" when it answers with N entries.
type readLog struct {
	mu     sync.Mutex
	events []string
}

func (l *readLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *readLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *readLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *readLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "xreadgroup" {
			return next(ctx, cmd)
		}
		blocking := slices.ContainsFunc(cmd.Args(), func(a any) bool { s, _ := a.(string); return strings.EqualFold(s, "block") })
		if !blocking {
			l.add("now")
			return next(ctx, cmd)
		}
		l.add("wait")
		err := next(ctx, cmd)
		n := 0
		if o, ok := cmd.(*sendonce.Cmd); ok {
			cmd = o.Cmder
		}
		if c, ok := cmd.(*redis.XStreamSliceCmd); ok {
			for _, s := range c.Val() {
				n += len(s.Messages)
			}
		}
		l.add(fmt.Sprintf("got %d", n))
		return err
	}
}

func (l *readLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A few entries that arrive together on a quiet stream are one round trip:
// the blocking read that brings them is followed by the next blocking read,
// not by a read without BLOCK that finds nothing (which, when only a read of
// one entry counted as the stream trickling, was a third of the reads at
// 5,000 msgs/s sent in small bursts).
func TestBurstOnQuietStreamIsOneRead(t *testing.T) {
	srv := testredis.Shared(t)
	cfg := testConfig(t, srv)
	log := &readLog{}
	client := srv.Client(t)
	client.AddHook(log)
	var handled atomic.Int32
	mux := NewMux()
	mux.HandleFunc("t", func(context.Context, *Message) error { handled.Add(1); return nil })
	h := startWorker(t, srv, cfg, mux, WithRedis(client))
	// One message first: the read that waits for it asks for one entry, and
	// once it is handled the stream trickles, the next read asking for all
	// the free slots.
	eventually(t, "the worker to wait on the empty stream", func() bool {
		return slices.Contains(log.snapshot(), "wait")
	})
	h.publish("type", "t")
	eventually(t, "the first message to run and the worker to wait again", func() bool {
		ev := log.snapshot()
		i := slices.Index(ev, "got 1")
		return handled.Load() == 1 && i >= 0 && slices.Contains(ev[i:], "wait")
	})
	// Then three in one transaction: the waiting read is served once, with
	// all three.
	ctx := context.Background()
	if _, err := h.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for range 3 {
			p.XAdd(ctx, &redis.XAddArgs{Stream: h.stream, Values: []string{"type", "t"}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the three messages to run", func() bool { return handled.Load() == 4 })
	var after []string
	eventually(t, "the next blocking read after the one that brought the three", func() bool {
		ev := log.snapshot()
		i := slices.Index(ev, "got 3")
		if i < 0 {
			return false
		}
		after = ev[i+1:]
		return slices.Contains(after, "wait")
	})
	if next := after[:slices.Index(after, "wait")]; len(next) > 0 {
		t.Errorf("after the read that brought 3 entries (of %d asked) the worker sent %q before its next blocking read; want nothing", cfg.Concurrency, next)
	}
}

// A read of one entry or none leaves the stream trickling whatever it asked
// for (with one free slot a read asks for one); a few that drain the stream
// do too; a full read, or a large one, does not: the next read goes without
// BLOCK, parsed from the raw reply.
func TestTrickling(t *testing.T) {
	for _, c := range []struct {
		got, asked int
		want       bool
	}{
		{0, 64, true}, {1, 1, true}, {1, 64, true}, {3, 64, true}, {trickleMost, 64, true},
		{3, 3, false}, {trickleMost + 1, 64, false}, {64, 64, false},
	} {
		if got := trickling(c.got, c.asked); got != c.want {
			t.Errorf("trickling(%d, %d) = %v, want %v", c.got, c.asked, got, c.want)
		}
	}
}

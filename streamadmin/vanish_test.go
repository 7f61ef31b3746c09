package streamadmin

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// beforePipeline is a go-redis hook that runs do once, before the first
// pipeline the client sends that starts with the command first: a real
// change to Redis at a known point between Status's round trips, where
// another client's write would land in production.
type beforePipeline struct {
	first string
	once  atomic.Bool
	do    func()
}

func (h *beforePipeline) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforePipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *beforePipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == h.first && h.once.CompareAndSwap(false, true) {
			h.do()
		}
		return next(ctx, cmds)
	}
}

// hooked returns an Admin on a client of its own, with h installed.
func hooked(t *testing.T, srv *testredis.Server, h *beforePipeline) *Admin {
	c := srv.Client(t)
	c.AddHook(h)
	return New(c)
}

// TestStatusShowsWhatVanishesWhileItRuns deletes a stream, replaces one with
// a string, or destroys a group between Status's round trips: the others
// are shown in full, the one that vanished says so in its row, and Status
// does not fail.
func TestStatusShowsWhatVanishesWhileItRuns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string // the first command of the round trip before which it vanishes
		do    func(f *fixture, victim string)
		group bool // the victim's group vanished, not the stream
	}{
		{name: "StreamDeletedAfterItsType", first: "xlen", do: func(f *fixture, v string) { f.c.Del(f.ctx, v) }},
		{name: "StreamReplacedAfterItsType", first: "xlen", do: func(f *fixture, v string) { f.c.Del(f.ctx, v); f.c.Set(f.ctx, v, "x", 0) }},
		{name: "StreamDeletedAfterItsGroups", first: "xinfo", do: func(f *fixture, v string) { f.c.Del(f.ctx, v) }},
		{name: "GroupDestroyedAfterItWasListed", first: "xinfo", do: func(f *fixture, v string) { f.c.XGroupDestroy(f.ctx, v, "g") }, group: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			victim, other := f.stream+"-victim", f.stream
			for _, s := range []string{victim, other} {
				f.c.XAdd(f.ctx, &redis.XAddArgs{Stream: s, Values: []string{"type", "a"}})
				f.c.XGroupCreate(f.ctx, s, "g", "0")
				f.c.XGroupCreate(f.ctx, s, "h", "0")
				f.c.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{s, ">"}, Block: -1})
			}
			admin := hooked(t, testredis.Shared(t), &beforePipeline{first: tc.first, do: func() { tc.do(f, victim) }})
			st, err := admin.Status(f.ctx, []string{victim, other})
			if err != nil {
				t.Fatalf("Status = %v, want the rows", err)
			}
			if len(st) != 2 {
				t.Fatalf("%d rows, want 2: %+v", len(st), st)
			}
			v, o := st[0], st[1]
			if o.Missing != nil || o.Length != 1 || len(o.Groups) != 2 || o.Groups[0].Pending != 1 || len(o.Groups[0].Consumers) != 1 {
				t.Errorf("the other stream = %+v, want it in full", o)
			}
			if tc.group {
				if v.Missing != nil || len(v.Groups) != 2 || !v.Groups[0].Deleted || v.Groups[1].Deleted || len(v.Groups[1].Consumers) != 0 {
					t.Errorf("victim = %+v, want group g marked deleted and h shown", v)
				}
				return
			}
			if !errors.Is(v.Missing, ErrDeleted) || !strings.Contains(v.Missing.Error(), victim) || v.Length != 0 || v.Groups != nil {
				t.Errorf("victim = %+v (missing: %v), want it marked deleted, naming it, without length or groups", v, v.Missing)
			}
		})
	}
}

// TestStatusAllShowsAStreamDeletedAfterTheListing: a stream listed by SCAN
// and gone when read was deleted while status ran: its row says so and it
// is no error.
func TestStatusAllShowsAStreamDeletedAfterTheListing(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	for _, s := range []string{"a", "b"} {
		c.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"type", "x"}})
	}
	admin := hooked(t, srv, &beforePipeline{first: "time", do: func() { c.Del(ctx, "a") }})
	st, err := admin.StatusAll(ctx)
	if err != nil {
		t.Fatalf("StatusAll = %v, want the rows", err)
	}
	if len(st) != 2 || st[0].Stream != "a" || !errors.Is(st[0].Missing, ErrDeleted) || st[1].Stream != "b" || st[1].Missing != nil || st[1].Length != 1 {
		t.Errorf("StatusAll = %+v, want a marked deleted and b in full", st)
	}
}

// TestStatusOfNamedStreamsThatAreNotThere: a stream named that does not
// exist, or a key that is not a stream, is an error naming it; the rows of
// the others come with it.
func TestStatusOfNamedStreamsThatAreNotThere(t *testing.T) {
	f := newFixture(t)
	f.add("type", "a")
	missing, str := f.stream+"-missing", f.stream+"-string"
	f.c.Set(f.ctx, str, "x", 0)
	st, err := f.admin.Status(f.ctx, []string{missing, f.stream, str})
	if !errors.Is(err, ErrNoStream) || !errors.Is(err, ErrNotStream) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), str) {
		t.Errorf("Status = %v, want ErrNoStream and ErrNotStream naming both keys", err)
	}
	if len(st) != 3 {
		t.Fatalf("%d rows, want 3", len(st))
	}
	if !errors.Is(st[0].Missing, ErrNoStream) || st[1].Missing != nil || st[1].Length != 1 || !errors.Is(st[2].Missing, ErrNotStream) {
		t.Errorf("rows = %+v", st)
	}
	if want := `key "` + str + `" is a string, not a stream`; st[2].Missing.Error() != want {
		t.Errorf("row of the string key: %q, want %q", st[2].Missing, want)
	}
}

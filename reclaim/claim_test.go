package reclaim

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/internal/testredis"
)

// bump delivers ids to consumer once more each (XCLAIM counts a delivery).
func (f *fixture) bump(consumer string, ids ...string) {
	f.t.Helper()
	if err := f.c.XClaim(context.Background(), &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: consumer, Messages: ids}).Err(); err != nil {
		f.t.Fatal(err)
	}
}

// deliveries returns the delivery count and owner of each pending entry.
func (f *fixture) deliveries() map[string]redis.XPendingExt {
	f.t.Helper()
	p, err := f.c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: f.stream, Group: "g", Start: "-", End: "+", Count: 1000}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	out := make(map[string]redis.XPendingExt, len(p))
	for _, e := range p {
		out[e.ID] = e
	}
	return out
}

func TestClaimCountsADeliveryOnlyForWhatRunsNow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ids := f.deliverTo("me", 6)
	f.bump("me", ids[3:5]...) // crashed twice: suspects
	f.c.XDel(ctx, f.stream, ids[5])
	f.c.XClaim(ctx, &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: "other", Messages: ids[2:3]})

	got, err := (Consumer{Client: f.c, Group: "g", Name: "me"}).Claim(ctx, f.stream, ids, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	var claimed []string
	for _, e := range got.Entries {
		claimed = append(claimed, e.ID)
		if e.Deliveries != 2 || e.Values["type"] != "t" {
			t.Errorf("claimed %s: deliveries %d, values %v; want 2 and the entry's fields", e.ID, e.Deliveries, e.Values)
		}
	}
	if !slices.Equal(claimed, ids[:2]) || !slices.Equal(got.Isolated, ids[3:5]) || !slices.Equal(got.Deleted, ids[5:]) {
		t.Errorf("claimed %v, isolated %v, deleted %v; want %v, %v, %v (and %s, another's, left alone)",
			claimed, got.Isolated, got.Deleted, ids[:2], ids[3:5], ids[5:], ids[2])
	}
	d := f.deliveries()
	for _, id := range ids[3:5] {
		if d[id].RetryCount != 2 {
			t.Errorf("suspect %s has %d deliveries, want 2: left uncounted", id, d[id].RetryCount)
		}
	}
	if d[ids[2]].Consumer != "other" || d[ids[2]].RetryCount != 2 {
		t.Errorf("another consumer's entry was touched: %+v", d[ids[2]])
	}
	if _, ok := d[ids[5]]; ok {
		t.Errorf("the deleted entry is still pending")
	}

	// A suspect claimed on its own turn (isolateAfter 0) counts a delivery.
	alone, err := (Consumer{Client: f.c, Group: "g", Name: "me"}).Claim(ctx, f.stream, ids[3:4], 0, 0)
	if err != nil || len(alone.Entries) != 1 || alone.Entries[0].Deliveries != 3 {
		t.Errorf("claiming a suspect alone: %+v %v, want it with 3 deliveries", alone, err)
	}
}

func TestClaimSkipsEntriesIdleLessThanMinIdle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.deliverTo("me", 2)
	got, err := (Consumer{Client: f.c, Group: "g", Name: "me"}).Claim(context.Background(), f.stream, ids, time.Hour, 2)
	if err != nil || len(got.Entries)+len(got.Isolated)+len(got.Deleted) != 0 {
		t.Errorf("Claim with an hour's min-idle took %+v (%v), want nothing", got, err)
	}
}

func TestReclaimHandsSuspectsOverUncounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.opts.IsolateAfter = 2
	ids := f.deliverTo("dead", 4)
	f.bump("dead", ids[1], ids[3])
	f.waitIdle(f.opts.MinIdle)
	sink := &slotSink{free: 10}
	res, err := f.reclaimer(sink).runOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Claimed != 4 || !slices.Equal(sink.delivered, []string{ids[0], ids[2]}) || !slices.Equal(sink.isolated, []string{ids[1], ids[3]}) {
		t.Errorf("claimed %d, delivered %v, isolated %v; want 4, %v, %v", res.Claimed, sink.delivered, sink.isolated, []string{ids[0], ids[2]}, []string{ids[1], ids[3]})
	}
	if sink.free != 8 {
		t.Errorf("free slots = %d, want 8: suspects take no slot until they run", sink.free)
	}
	d := f.deliveries()
	// The delivered ones: one earlier delivery and this one; the suspects:
	// their two earlier ones, this claim not counted.
	for _, id := range ids {
		if d[id].Consumer != "me" || d[id].RetryCount != 2 {
			t.Errorf("%s: consumer %s deliveries %d, want me, 2", id, d[id].Consumer, d[id].RetryCount)
		}
	}
}

func TestLeaseTellsTrimmedAndGoneFromLost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ids := f.deliverTo("me", 4)
	f.c.XClaim(ctx, &redis.XClaimArgs{Stream: f.stream, Group: "g", Consumer: "other", Messages: ids[1:2]})
	f.c.XDel(ctx, f.stream, ids[2])      // trimmed while running here
	f.c.XAck(ctx, f.stream, "g", ids[3]) // acknowledged elsewhere
	leased, err := (Consumer{Client: f.c, Group: "g", Name: "me"}).Lease(ctx, f.stream, ids)
	lost, trimmed, gone := leased.Lost, leased.Trimmed, leased.Gone
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lost, ids[1:2]) || !slices.Equal(trimmed, ids[2:3]) || !slices.Equal(gone, ids[3:4]) {
		t.Errorf("lost %v trimmed %v gone %v; want %v %v %v", lost, trimmed, gone, ids[1:2], ids[2:3], ids[3:4])
	}
}

// A claim whose connection breaks after Redis ran it fails, and is not
// resent: resent, a claim with a min-idle would skip the entries the first
// one took, their idle time reset, and report nothing taken.
func TestCutClaimIsNotResent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ids := f.deliverTo("me", 2)
	f.waitIdle(f.opts.MinIdle)
	proxy := testredis.NewCutProxy(t, testredis.Shared(t).Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()}) // go-redis's default MaxRetries
	t.Cleanup(func() { _ = client.Close() })
	// The script's run, not a NOSCRIPT reply (then nothing ran).
	proxy.Arm(&testredis.Cut{
		Cmd:   func(c []byte) bool { return bytes.Contains(c, []byte("eval")) }, // EVALSHA, or go-redis's EVAL after a NOSCRIPT
		Reply: func(r []byte) bool { return !bytes.HasPrefix(r, []byte("-NOSCRIPT")) },
	})
	got, err := (Consumer{Client: client, Group: "g", Name: "me"}).Claim(ctx, f.stream, ids, f.opts.MinIdle, 2)
	if err == nil || sendonce.Unsent(err) {
		t.Errorf("Claim through a cut connection = %+v, %v; want an error that may have been sent", got, err)
	}
	if proxy.Cuts() != 1 {
		t.Fatalf("the proxy cut %d commands, want 1", proxy.Cuts())
	}
	for id, p := range f.deliveries() {
		if p.RetryCount != 2 {
			t.Errorf("%s has %d deliveries, want 2: read, then claimed once", id, p.RetryCount)
		}
	}
}

// The same for a reclaim pass's XAUTOCLAIM: resent, it would skip what the
// first one took, and take later entries in their place.
func TestCutAutoclaimIsNotResent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.deliverTo("dead", 3)
	f.waitIdle(f.opts.MinIdle)
	proxy := testredis.NewCutProxy(t, testredis.Shared(t).Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	proxy.Arm(testredis.CutCommand("xautoclaim"))
	sink := &slotSink{free: 10}
	res, err := New(client, f.opts, sink, slog.New(slog.DiscardHandler), f.m, nil).runOnce(context.Background())
	if err == nil || sendonce.Unsent(err) {
		t.Errorf("a reclaim pass through a cut connection = %+v, %v; want an error that may have been sent", res, err)
	}
	if len(sink.delivered) != 0 || sink.free != 10 {
		t.Errorf("delivered %v with %d slots free, want nothing and 10", sink.delivered, sink.free)
	}
	d := f.deliveries()
	for _, id := range ids {
		if d[id].Consumer != "me" || d[id].RetryCount != 1 {
			t.Errorf("%s: consumer %s, deliveries %d; want me and 1: taken by the XAUTOCLAIM that ran, JUSTID", id, d[id].Consumer, d[id].RetryCount)
		}
	}
}

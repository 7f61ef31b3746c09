package producer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// Eight producers, each with its own connection, race to publish one id:
// exactly one adds an entry, the seven others are told it was a duplicate
// of that entry.
func TestPublishUniqueRacedByEightProducersAddsOne(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	for round := range 20 { // a race is only a race if it is run more than once
		id := "report-" + string(rune('a'+round))
		start := make(chan struct{})
		results := make([]Result, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range 8 {
			p := New(srv.Client(t), Options{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = p.PublishUnique(ctx, stream, Event{Type: "report.requested", Data: []byte(`{}`), ID: id}, time.Hour)
			}()
		}
		close(start)
		wg.Wait()
		added := 0
		var first string
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("producer %d: %v", i, errs[i])
			}
			if !r.Duplicate {
				added++
				first = r.ID
			}
		}
		if added != 1 {
			t.Fatalf("round %d: %d producers added the event, want exactly 1: %+v", round, added, results)
		}
		for i, r := range results {
			if r.ID != first || r.Stream != stream {
				t.Errorf("round %d: producer %d got %+v, want entry %s on %s", round, i, r, first, stream)
			}
		}
	}
	c := srv.Client(t)
	if n := c.XLen(ctx, stream).Val(); n != 20 {
		t.Errorf("stream has %d entries, want 20 (one per id)", n)
	}
}

func TestPublishUniqueMark(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	p := New(c, Options{MaxLen: 100})
	e := Event{Type: "t", Data: []byte(`{}`), ID: "k"}
	r, err := p.PublishUnique(ctx, stream, e, time.Minute)
	if err != nil || r.Duplicate || r.ID == "" {
		t.Fatalf("first publish = %+v, %v; want added", r, err)
	}
	mark := wire.UniqueKey(stream, "k")
	if ttl := c.PTTL(ctx, mark).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("mark %s has TTL %s, want (0, 1m]", mark, ttl)
	}
	if got := c.Get(ctx, mark).Val(); got != r.ID {
		t.Errorf("mark = %q, want the entry ID %q", got, r.ID)
	}
	// A plain Publish of the same id is not unique publishing: it adds.
	if _, err := p.Publish(ctx, stream, e); err != nil {
		t.Fatal(err)
	}
	if r2, err := p.PublishUnique(ctx, stream, e, time.Minute); err != nil || !r2.Duplicate || r2.ID != r.ID {
		t.Errorf("second unique publish = %+v, %v; want a duplicate of %s", r2, err, r.ID)
	}
	// Once the window is over (the mark gone), the id is added again.
	c.Del(ctx, mark)
	if r3, err := p.PublishUnique(ctx, stream, e, time.Minute); err != nil || r3.Duplicate || r3.ID == r.ID {
		t.Errorf("publish after the window = %+v, %v; want a new entry", r3, err)
	}
	got, _ := c.XRange(ctx, stream, "-", "+").Result()
	if len(got) != 3 || got[0].Values["type"] != "t" || got[0].Values["id"] != "k" || got[0].Values["data"] != "{}" {
		t.Errorf("entries = %v, want 3 of type t with id k", got)
	}
}

// In a mixed batch, unique items say which were duplicates; the others are
// sent as always.
func TestPublishItemsUnique(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	p := New(c, Options{})
	ev := func(id string) Event { return Event{Type: "t", Data: []byte(`{}`), ID: id} }
	res, err := p.PublishItems(ctx, stream, []Item{
		{Event: ev("a"), UniqueFor: time.Hour},
		{Event: ev("a"), UniqueFor: time.Hour},
		{Event: ev("a")},
		{Event: ev("b"), UniqueFor: time.Hour},
		{Event: ev("c"), Due: time.Now().Add(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDup := []bool{false, true, false, false, false}
	for i, r := range res {
		if r.Duplicate != wantDup[i] {
			t.Errorf("item %d: Duplicate = %v, want %v", i, r.Duplicate, wantDup[i])
		}
	}
	if res[1].ID != res[0].ID {
		t.Errorf("duplicate's ID = %q, want the first's %q", res[1].ID, res[0].ID)
	}
	if n := c.XLen(ctx, stream).Val(); n != 3 {
		t.Errorf("stream has %d entries, want 3", n)
	}
}

func TestPublishUniqueRefuses(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := "{" + testredis.Prefix(t) + "s}"
	p := New(c, Options{})
	for _, tc := range []struct {
		name string
		item Item
		want error
	}{
		{"NoID", Item{Event: Event{Type: "t"}, UniqueFor: time.Hour}, ErrUniqueNeedsID},
		{"Delayed", Item{Event: Event{Type: "t", ID: "x"}, UniqueFor: time.Hour, Due: time.Now().Add(time.Hour)}, ErrUniqueDelayed},
		{"Negative", Item{Event: Event{Type: "t", ID: "x"}, UniqueFor: -time.Second}, ErrUniqueWindow},
		{"NoType", Item{Event: Event{ID: "x"}, UniqueFor: time.Hour}, ErrNoType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.PublishItems(ctx, stream, []Item{tc.item}); !errors.Is(err, tc.want) {
				t.Errorf("PublishItems = %v, want %v", err, tc.want)
			}
		})
	}
	if n := c.Exists(ctx, stream).Val(); n != 0 {
		t.Errorf("a refused publish wrote the stream")
	}
}

// On a partitioned stream the mark is in the partition's slot, beside the
// partition the id routes to, so a resend lands on the same mark.
func TestPublishUniquePartitioned(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{Partitions: 4})
	e := Event{Type: "t", Data: []byte(`{}`), ID: "order-7"}
	r1, err := p.PublishUnique(ctx, stream, e, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.PublishUnique(ctx, stream, e, time.Hour)
	if err != nil || !r2.Duplicate || r2.Stream != r1.Stream {
		t.Fatalf("resend = %+v, %v; want a duplicate on %s", r2, err, r1.Stream)
	}
	want := wire.PartitionStream(stream, wire.PartitionFor("order-7", 4))
	mark := wire.UniqueKey(want, "order-7")
	if r1.Stream != want || c.Exists(ctx, mark).Val() != 1 || wire.Slot(mark) != wire.Slot(want) {
		t.Errorf("sent to %s with mark %s (exists %d), want %s in its slot", r1.Stream, mark, c.Exists(ctx, mark).Val(), want)
	}
}

// On a Redis Cluster the mark must share the stream's slot: a stream with a
// hash tag (or a partition) works, one without is refused before anything
// is sent.
func TestPublishUniqueOnCluster(t *testing.T) {
	t.Parallel()
	_, cc := testredis.OneNodeCluster(t)
	ctx := context.Background()
	prefix := testredis.Prefix(t)
	p := New(cc, Options{})
	e := Event{Type: "t", Data: []byte(`{}`), ID: "order-7"}
	for i, wantDup := range []bool{false, true} {
		if r, err := p.PublishUnique(ctx, "{"+prefix+"orders}", e, time.Hour); err != nil || r.Duplicate != wantDup {
			t.Fatalf("publish %d = %+v, %v; want Duplicate %v", i+1, r, err, wantDup)
		}
	}
	if r, err := New(cc, Options{Partitions: 4}).PublishUnique(ctx, prefix+"parts", e, time.Hour); err != nil || r.Duplicate {
		t.Errorf("publish to a partition = %+v, %v", r, err)
	}
	if _, err := p.PublishUnique(ctx, prefix+"untagged", e, time.Hour); !errors.Is(err, ErrUniqueSlot) {
		t.Errorf("publish to a stream without a hash tag = %v, want ErrUniqueSlot", err)
	}
}

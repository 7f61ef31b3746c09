package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// noRetryClient is a client as NewClient makes one, closed with the test.
func noRetryClient(t *testing.T, srv *testredis.Server) *redis.Client {
	t.Helper()
	c, err := NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Batches sent one after another without waiting land in the order sent,
// those with unique items (sent as PublishItems sends them) among the
// others, and each Pending reports its own batch as PublishItems would:
// appends, delays and unique appends together.
func TestSendItemsKeepsOrderAcrossBatches(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(noRetryClient(t, srv), Options{})
	if p.autopipeline() == nil {
		t.Fatal("a *redis.Client from NewClient has no ordered autopipeline")
	}
	const batches, size = 20, 50
	due := time.Now().Add(time.Hour)
	var pending []*Pending
	var wantData []any // what the stream should hold, in order
	for b := range batches {
		items := make([]Item, size)
		for i := range items {
			d := fmt.Sprint(b*size + i)
			switch i {
			case 7:
				items[i] = Item{Event: Event{Type: "later", Data: []byte(d)}, Due: due}
			case 9:
				if b%5 != 0 { // batches with a unique item go the other way
					items[i] = Item{Event: Event{Type: "t", Data: []byte(d)}}
					wantData = append(wantData, d)
					continue
				}
				items[i] = Item{Event: Event{Type: "once", ID: "u", Data: []byte(d)}, UniqueFor: time.Hour}
				if b == 0 {
					wantData = append(wantData, d)
				}
			default:
				items[i] = Item{Event: Event{Type: "t", Data: []byte(d)}}
				wantData = append(wantData, d)
			}
		}
		s, err := p.SendItems(ctx, stream, items)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, s)
	}
	var ids []string
	for b, s := range pending {
		res, err := s.Wait()
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if again, err2 := s.Wait(); err2 != nil || &again[0] != &res[0] {
			t.Errorf("batch %d: a second Wait gave other results (%v)", b, err2)
		}
		for i, r := range res {
			switch {
			case r.Stream != stream:
				t.Errorf("batch %d item %d went to %q", b, i, r.Stream)
			case i == 7 && r.ID != "":
				t.Errorf("batch %d: the delayed item has ID %q", b, r.ID)
			case i == 9 && b%5 == 0 && r.Duplicate != (b > 0):
				t.Errorf("batch %d: the unique item's Duplicate = %v", b, r.Duplicate)
			case i != 7 && !r.Duplicate:
				ids = append(ids, r.ID)
			}
		}
	}
	var gotIDs []string
	var gotData []any
	for _, e := range admin.XRange(ctx, stream, "-", "+").Val() {
		gotIDs, gotData = append(gotIDs, e.ID), append(gotData, e.Values["data"])
	}
	if diff := cmp.Diff(wantData, gotData); diff != "" {
		t.Errorf("stream's data, in order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids, gotIDs); diff != "" {
		t.Errorf("stream's IDs against those reported (-reported +stream):\n%s", diff)
	}
	if n := admin.ZCard(ctx, wire.DelayedKey(stream)).Val(); n != batches {
		t.Errorf("delayed set holds %d, want %d", n, batches)
	}
}

// A write Redis refuses fails in its own Result, as with PublishItems; the
// batch sent after it is not held back.
func TestSendItemsReportsEachFailedWrite(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	admin.Set(ctx, wire.DelayedKey(stream), "not a sorted set", 0)
	p := New(noRetryClient(t, srv), Options{})
	first, err := p.SendItems(ctx, stream, []Item{{Event: Event{Type: "a"}}, {Event: Event{Type: "b"}, Due: time.Now()}, {Event: Event{Type: "c"}}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.SendItems(ctx, stream, []Item{{Event: Event{Type: "d"}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := first.Wait()
	var berr *BatchError
	if !errors.As(err, &berr) || berr.Failed != 1 || berr.Total != 3 || berr.First != 1 || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("err = %v, want item 1 of 3 failed with WRONGTYPE", err)
	}
	if res[0].Err != nil || res[1].Err == nil || res[2].Err != nil || res[0].ID == "" || res[2].ID == "" {
		t.Errorf("results = %+v", res)
	}
	if _, err := second.Wait(); err != nil {
		t.Errorf("the batch after: %v", err)
	}
	if n := admin.XLen(ctx, stream).Val(); n != 3 {
		t.Errorf("stream holds %d entries, want 3", n)
	}
}

// Items are checked and routed before anything is sent: a bad one fails
// the call, and nothing of the batch is written.
func TestSendItemsChecksEverythingFirst(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(noRetryClient(t, srv), Options{MaxPayload: 4})
	s, err := p.SendItems(ctx, stream, []Item{{Event: Event{Type: "a"}}, {Event: Event{Type: "a", Data: []byte("12345")}}})
	if s != nil || !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "item 1:") {
		t.Errorf("SendItems = %v, %v; want no Pending and item 1 too large", s, err)
	}
	if n := admin.Exists(ctx, stream).Val(); n != 0 {
		t.Errorf("a refused batch wrote the stream")
	}
}

// On a Redis Cluster client each batch goes as PublishItems sends it, in
// the background, after the one before: order holds.
func TestSendItemsOnClusterKeepsOrder(t *testing.T) {
	t.Parallel()
	_, c := testredis.OneNodeCluster(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{})
	if p.autopipeline() != nil {
		t.Fatal("a cluster client got an autopipeline")
	}
	var pending []*Pending
	for b := range 5 {
		s, err := p.SendItems(ctx, stream, []Item{
			{Event: Event{Type: "t", Data: fmt.Appendf(nil, "%d", 2*b)}},
			{Event: Event{Type: "t", Data: fmt.Appendf(nil, "%d", 2*b+1)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, s)
	}
	var ids []string
	for _, s := range pending {
		res, err := s.Wait()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res[0].ID, res[1].ID)
	}
	entries := c.XRange(ctx, stream, "-", "+").Val()
	if len(entries) != 10 {
		t.Fatalf("%d entries, want 10", len(entries))
	}
	for i, e := range entries {
		if e.ID != ids[i] || e.Values["data"] != fmt.Sprint(i) {
			t.Errorf("entry %d = %s %v, want %s holding %d", i, e.ID, e.Values, ids[i], i)
		}
	}
}

// With REDIS_SCRIPTS=functions a client hook turns the unique script's EVAL
// into FCALL: a batch with unique items goes the way that allows it, and
// order holds across the two ways.
func TestSendItemsUniqueWithFunctions(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "fn", "on", ">pw", "~*", "&*", "+@all", "-eval", "-evalsha", "-eval_ro", "-evalsha_ro", "-script").Err(); err != nil {
		t.Fatal(err)
	}
	for _, l := range scriptfn.Libraries() {
		if err := admin.FunctionLoad(ctx, l.Code).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Redis{RedisURL: "redis://fn:pw@" + srv.Addr + "/0", RedisScripts: config.ScriptsFunctions}.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	p := New(c, Options{})
	stream := testredis.Prefix(t) + "s"
	var pending []*Pending
	for b := range 6 {
		it := Item{Event: Event{Type: "t", Data: fmt.Appendf(nil, "%d", b)}}
		if b%2 == 1 {
			it.Event.ID, it.UniqueFor = fmt.Sprint("u", b), time.Hour
		}
		s, err := p.SendItems(ctx, stream, []Item{it})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, s)
	}
	for b, s := range pending {
		if res, err := s.Wait(); err != nil || res[0].Duplicate {
			t.Fatalf("batch %d: %+v, %v", b, res, err)
		}
	}
	var data []any
	for _, e := range admin.XRange(ctx, stream, "-", "+").Val() {
		data = append(data, e.Values["data"])
	}
	if diff := cmp.Diff([]any{"0", "1", "2", "3", "4", "5"}, data); diff != "" {
		t.Errorf("stream's data (-want +got):\n%s", diff)
	}
}

// The next batch goes out while the replies of the one before are still on
// their way: SendItems does not wait for them.
func TestSendItemsDoesNotWaitForTheBatchBefore(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	h := newReplyHolder(t, srv.Addr)
	c, err := NewClient("redis://" + h.ln.Addr().String() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := New(c, Options{})
	send := func(typ string) *Pending {
		s, err := p.SendItems(ctx, stream, []Item{{Event: Event{Type: typ}}})
		if err != nil {
			t.Error(err)
		}
		return s
	}
	if _, err := send("warm-up").Wait(); err != nil { // the connection is made, its handshake answered
		t.Fatal(err)
	}
	h.hold.Store(true)
	first := send("first")
	sent := make(chan *Pending, 1)
	go func() { sent <- send("second") }()
	var second *Pending
	select {
	case second = <-sent:
	case <-time.After(time.Minute): // a hang guard: the replies are held until release
		t.Fatal("SendItems waited for the replies of the batch before")
	}
	for admin.XLen(ctx, stream).Val() != 3 { // both reached Redis, no reply read yet
	}
	h.releaseReplies()
	for i, s := range []*Pending{first, second} {
		if _, err := s.Wait(); err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
}

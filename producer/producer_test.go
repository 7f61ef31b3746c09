package producer

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func TestPublish(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{})
	id, err := p.Publish(ctx, stream, Event{Type: "t", Data: []byte(`{"a":1}`), ID: "k", Metadata: map[string]string{"traceparent": "00-x"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.XRange(ctx, stream, id, id).Result()
	if len(got) != 1 || got[0].Values["type"] != "t" || got[0].Values["data"] != `{"a":1}` || got[0].Values["id"] != "k" || got[0].Values["traceparent"] != "00-x" {
		t.Errorf("entry = %v", got)
	}
}

func TestPublishBatchIsOneRoundTripInOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{MaxLen: 1000})
	events := make([]Event, 250)
	for i := range events {
		events[i] = Event{Type: "t", Data: []byte{byte(i)}}
	}
	ids, err := p.PublishBatch(ctx, stream, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 250 || c.XLen(ctx, stream).Val() != 250 {
		t.Fatalf("ids=%d len=%d, want 250", len(ids), c.XLen(ctx, stream).Val())
	}
	got, _ := c.XRange(ctx, stream, "-", "+").Result()
	for i, e := range got {
		if e.ID != ids[i] || e.Values["data"] != string([]byte{byte(i)}) {
			t.Fatalf("entry %d = %v, want id %s in order", i, e, ids[i])
		}
	}
}

func TestRefusesBadEvents(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{MaxPayload: 10})
	_, err := p.Publish(ctx, stream, Event{Type: "t", Data: make([]byte, 11)})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "11 bytes") || !strings.Contains(err.Error(), "cap is 10 bytes") {
		t.Errorf("oversize: err = %v, want ErrTooLarge naming size and cap", err)
	}
	if _, err := p.Publish(ctx, stream, Event{Data: []byte("x")}); !errors.Is(err, ErrNoType) {
		t.Errorf("no type: err = %v, want ErrNoType", err)
	}
	wide := Event{Type: "t", ID: "i", Metadata: map[string]string{}}
	for i := range wire.MaxFields - 3 { // type, data and id make it MaxFields
		wide.Metadata["m"+strconv.Itoa(i)] = "v"
	}
	if _, err := p.Publish(ctx, stream, wide); err != nil {
		t.Errorf("%d pairs: err = %v, want it sent", wire.MaxFields, err)
	}
	wide.Key = "k"
	if _, err := p.Publish(ctx, stream, wide); !errors.Is(err, ErrTooManyFields) || !strings.Contains(err.Error(), "1001 field/value pairs") {
		t.Errorf("%d pairs: err = %v, want ErrTooManyFields naming the count", wire.MaxFields+1, err)
	}
	c.Del(ctx, stream)
	_, err = p.PublishBatch(ctx, stream, []Event{{Type: "ok"}, {Type: "t", Data: make([]byte, 11)}})
	if !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "event 1:") {
		t.Errorf("batch: err = %v, want event 1 named", err)
	}
	if n := c.Exists(ctx, stream).Val(); n != 0 {
		t.Errorf("a refused batch wrote %d keys; nothing may be sent", n)
	}
}

func TestPublishDelayedSchedulesUniqueEnvelopes(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{})
	due := time.Now().Add(time.Hour)
	for range 2 { // identical events stay two entries
		if err := p.PublishDelayed(ctx, stream, Event{Type: "t", Data: []byte("x")}, due); err != nil {
			t.Fatal(err)
		}
	}
	zs, _ := c.ZRangeWithScores(ctx, wire.DelayedKey(stream), 0, -1).Result()
	if len(zs) != 2 || int64(zs[0].Score) != due.UnixMilli() {
		t.Errorf("delayed set = %v, want 2 members scored %d", zs, due.UnixMilli())
	}
}

func TestNewClientNeverResendsWrites(t *testing.T) {
	c, err := NewClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// go-redis stores the -1 we set ("no retries") as 0; its default is 3.
	if got := c.Options().MaxRetries; got != 0 {
		t.Errorf("MaxRetries = %d, want no retries: a resent XADD whose reply was lost duplicates the event", got)
	}
	if _, err := NewClient("http://x"); err == nil {
		t.Error("NewClient accepted an http:// URL")
	}
}

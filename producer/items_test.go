package producer

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

func TestPublishItemsMixesAppendsAndDelays(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{})
	due := time.Now().Add(time.Hour)
	res, err := p.PublishItems(ctx, stream, []Item{
		{Event: Event{Type: "a", Data: []byte("1")}},
		{Event: Event{Type: "b", Data: []byte("2"), ID: "k"}, Due: due},
		{Event: Event{Type: "c", Data: []byte("3")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	entries := c.XRange(ctx, stream, "-", "+").Val()
	if len(entries) != 2 || res[0].ID != entries[0].ID || res[2].ID != entries[1].ID || res[1].ID != "" {
		t.Fatalf("results %+v, stream %v", res, entries)
	}
	if entries[0].Values["type"] != "a" || entries[1].Values["type"] != "c" {
		t.Errorf("stream = %v, want a then c", entries)
	}
	zs := c.ZRangeWithScores(ctx, wire.DelayedKey(stream), 0, -1).Val()
	if len(zs) != 1 || int64(zs[0].Score) != due.UnixMilli() || !strings.Contains(zs[0].Member.(string), "4:type1:b4:data1:22:id1:k") {
		t.Errorf("delayed set = %v", zs)
	}
}

func TestPublishItemsChecksEverythingFirst(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{MaxPayload: 4})
	_, err := p.PublishItems(ctx, stream, []Item{{Event: Event{Type: "a"}}, {Event: Event{Type: "a", Data: []byte("12345")}, Due: time.Now()}})
	if !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "item 1:") || !strings.Contains(err.Error(), "data is 5 bytes, the cap is 4 bytes") {
		t.Errorf("err = %v, want item 1 too large, naming size and cap", err)
	}
	if _, err := p.PublishItems(ctx, stream, []Item{{Event: Event{Data: []byte("x")}}}); !errors.Is(err, ErrNoType) {
		t.Errorf("err = %v, want ErrNoType", err)
	}
	if n := c.Exists(ctx, stream, wire.DelayedKey(stream)).Val(); n != 0 {
		t.Errorf("a refused batch wrote %d keys", n)
	}
}

// Each write of a batch succeeds or fails on its own; the results say which.
func TestBatchReportsEachFailedWrite(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	c.Set(ctx, stream, "not a stream", 0)
	p := New(c, Options{})
	res, err := p.PublishItems(ctx, stream, []Item{
		{Event: Event{Type: "a"}},
		{Event: Event{Type: "b"}, Due: time.Now()},
		{Event: Event{Type: "c"}},
	})
	var berr *BatchError
	if !errors.As(err, &berr) || berr.Failed != 2 || berr.Total != 3 || berr.First != 0 || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("err = %v, want a BatchError of 2 of 3 with WRONGTYPE", err)
	}
	if res[0].Err == nil || res[1].Err != nil || res[2].Err == nil {
		t.Errorf("results = %+v, want the appends failed and the delayed write done", res)
	}
	ids, err := p.PublishBatch(ctx, stream, []Event{{Type: "a"}, {Type: "b"}})
	if !errors.As(err, &berr) || berr.Failed != 2 || len(ids) != 2 || ids[0] != "" {
		t.Errorf("PublishBatch = %q, %v; want 2 failed writes reported", ids, err)
	}
}

func TestMaxLenTrimsApproximately(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{MaxLen: 10})
	for range 5 {
		events := make([]Event, 200)
		for i := range events {
			events[i] = Event{Type: "t"}
		}
		if _, err := p.PublishBatch(ctx, stream, events); err != nil {
			t.Fatal(err)
		}
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries by default), so
	// the stream keeps at least 10 and well under the 1000 sent.
	if n := c.XLen(ctx, stream).Val(); n < 10 || n > 300 {
		t.Errorf("length = %d after 1000 events with MaxLen 10, want trimmed to about 10", n)
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "REDIS_URL" {
				return v
			}
			return ""
		}
	}
	ctx := context.Background()
	for _, tc := range []struct{ name, env, flag string }{
		{"FromEnvironment", srv.URL(), ""},
		{"FlagOverridesEnvironment", "redis://127.0.0.1:1/0", srv.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Connect(env(tc.env), tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Errorf("ping: %v", err)
			}
		})
	}
	t.Run("DefaultIsTheWorkers", func(t *testing.T) {
		c, err := Connect(env(""), "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if addr := c.(*redis.Client).Options().Addr; addr != "127.0.0.1:6379" {
			t.Errorf("addr = %s, want the worker's default 127.0.0.1:6379", addr)
		}
		if r := c.(*redis.Client).Options().MaxRetries; r != 0 {
			t.Errorf("MaxRetries = %d, want none", r)
		}
	})
	t.Run("BadURLNamesTheSettingNotThePassword", func(t *testing.T) {
		_, err := Connect(env("http://user:secret@host/0"), "")
		if err == nil || !strings.HasPrefix(err.Error(), `REDIS_URL="http://user:xxxxx@host/0" is invalid`) || strings.Contains(err.Error(), "secret") {
			t.Errorf("err = %v, want REDIS_URL named and no password", err)
		}
		_, err = Connect(env(""), "redis://user:secret@host/x")
		if err == nil || !strings.HasPrefix(err.Error(), `--redis-url="redis://user:xxxxx@host/x" is invalid: want a database number`) || strings.Contains(err.Error(), "secret") {
			t.Errorf("err = %v, want --redis-url named and no password", err)
		}
	})
	t.Run("TLSSettingsAreTheWorkers", func(t *testing.T) {
		getenv := func(k string) string {
			return map[string]string{"REDIS_URL": "rediss://host:6380/0", "REDIS_TLS_CA": "/nonexistent/ca.pem"}[k]
		}
		_, err := Connect(getenv, "")
		if err == nil || !strings.HasPrefix(err.Error(), `REDIS_TLS_CA="/nonexistent/ca.pem" is invalid`) {
			t.Errorf("err = %v, want REDIS_TLS_CA read and checked", err)
		}
	})
}

// A delayed event is in the format the worker's promote loop decodes: the
// real runtime runs it once it is due.
func TestDelayedEventsRunInTheRuntime(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	got := make(chan *worker.Message, 4)
	startWorker(t, srv, c, stream, func(_ context.Context, m *worker.Message) error {
		got <- m
		return nil
	})
	p := New(c, Options{})
	if err := p.PublishDelayed(ctx, stream, Event{Type: "t", Data: []byte("one"), ID: "k1", Metadata: map[string]string{"traceparent": "00-a"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishItems(ctx, stream, []Item{{Event: Event{Type: "t", Data: []byte("two")}, Due: time.Now().Add(50 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]*worker.Message{}
	for range 2 {
		select {
		case m := <-got:
			seen[string(m.Data)] = m
		case <-time.After(10 * time.Second):
			t.Fatalf("delayed events did not run within 10s; ran: %v", seen)
		}
	}
	if m := seen["one"]; m == nil || m.IdempotencyKey != "k1" || m.Metadata["traceparent"] != "00-a" || m.Attempt != 1 {
		t.Errorf("first delayed event ran as %+v", m)
	}
	if seen["two"] == nil {
		t.Errorf("second delayed event did not run: %v", seen)
	}
}

// A batch whose events carry more fields than the arena of its XADDs
// guessed (metadata, id, key, MAXLEN) still sends each event whole, its
// own data and fields: every chunk of arguments is cut to its command.
func TestSendItemsEventsOfEveryShape(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	p := New(c, Options{MaxLen: 1000})
	items := make([]Item, 300)
	for i := range items {
		e := Event{Type: "t" + strconv.Itoa(i%7)}
		if i%3 != 0 {
			e.Data = []byte(strings.Repeat(strconv.Itoa(i), i%5))
		}
		if i%4 == 0 {
			e.ID, e.Key = "id-"+strconv.Itoa(i), "key-"+strconv.Itoa(i)
		}
		if i%10 == 0 {
			e.Metadata = map[string]string{}
			for j := range 40 {
				e.Metadata["m"+strconv.Itoa(j)] = strconv.Itoa(i * j)
			}
		}
		items[i] = Item{Event: e}
	}
	pending, err := p.SendItems(ctx, stream, items)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pending.Wait(); err != nil {
		t.Fatal(err)
	}
	entries := c.XRange(ctx, stream, "-", "+").Val()
	if len(entries) != len(items) {
		t.Fatalf("stream holds %d entries, want %d", len(entries), len(items))
	}
	for i, got := range entries {
		e := items[i].Event
		want := map[string]any{wire.FieldType: e.Type, wire.FieldData: string(e.Data)}
		if e.ID != "" {
			want[wire.FieldID], want[wire.FieldKey] = e.ID, e.Key
		}
		for k, v := range e.Metadata {
			want[k] = v
		}
		if !reflect.DeepEqual(got.Values, want) {
			t.Fatalf("entry %d = %v, want %v", i, got.Values, want)
		}
	}
}

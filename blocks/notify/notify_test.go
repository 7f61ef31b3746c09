package notify_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/internal/testredis"
)

// subscriber runs one Subscribe or PSubscribe call in the background.
type subscriber struct {
	t          *testing.T
	n          *notify.Notifier
	got        chan *notify.Notification
	subscribed chan bool // one value per OnSubscribe: resubscribed or not
	cancel     context.CancelFunc
	done       chan error
}

type subscribeFunc func(ctx context.Context, n *notify.Notifier, h notify.Handler) error

func channels(names ...string) subscribeFunc {
	return func(ctx context.Context, n *notify.Notifier, h notify.Handler) error {
		return n.Subscribe(ctx, h, names...)
	}
}

func patterns(names ...string) subscribeFunc {
	return func(ctx context.Context, n *notify.Notifier, h notify.Handler) error {
		return n.PSubscribe(ctx, h, names...)
	}
}

// startSubscriber subscribes with h, or with a handler that passes every
// notification to s.got when h is nil, and waits for the subscription.
func startSubscriber(t *testing.T, rdb redis.UniversalClient, opt notify.Options, subscribe subscribeFunc, h notify.Handler) *subscriber {
	t.Helper()
	s := &subscriber{t: t, got: make(chan *notify.Notification, 100), subscribed: make(chan bool, 100), done: make(chan error, 1)}
	opt.OnSubscribe = func(_ []string, resubscribed bool) { s.subscribed <- resubscribed }
	s.n = notify.New(rdb, &opt)
	if h == nil {
		h = notify.HandlerFunc(func(_ context.Context, m *notify.Notification) error {
			s.got <- m
			return nil
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- subscribe(ctx, s.n, h) }()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("Subscribe = %v, want nil when its context ends", err)
		}
	})
	s.waitSubscribed(false)
	return s
}

// stop cancels the subscription and returns what Subscribe returned; it
// is safe twice.
func (s *subscriber) stop() error {
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("Subscribe did not return within 10s of its context ending")
		return nil
	}
}

func (s *subscriber) waitSubscribed(resubscribed bool) {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case r := <-s.subscribed:
			if r == resubscribed {
				return
			}
		case err := <-s.done:
			s.t.Fatalf("Subscribe returned %v while waiting for the subscription", err)
		case <-timeout:
			s.t.Fatalf("not subscribed (resubscribed=%t) within 20s; stats %+v", resubscribed, s.n.Stats())
		}
	}
}

func (s *subscriber) receive() *notify.Notification {
	s.t.Helper()
	select {
	case m := <-s.got:
		return m
	case <-time.After(10 * time.Second):
		s.t.Fatalf("no notification within 10s; stats %+v", s.n.Stats())
		return nil
	}
}

type orderEvent struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ch := testredis.Prefix(t) + "orders"
	s := startSubscriber(t, rdb, notify.Options{}, channels(ch), nil)
	pub := notify.New(rdb, nil)
	ctx := context.Background()

	for _, e := range []orderEvent{{"A-1", 10}, {"A-2", 20}} {
		n, err := pub.Publish(ctx, ch, e)
		if err != nil || n != 1 {
			t.Fatalf("Publish = %d, %v; want 1 receiver", n, err)
		}
	}
	for _, want := range []string{`{"id":"A-1","total":10}`, `{"id":"A-2","total":20}`} {
		m := s.receive()
		if m.Channel != ch || m.Pattern != "" || string(m.Payload) != want {
			t.Errorf("got %s %q on %q, want %s on %q", m.Payload, m.Pattern, m.Channel, want, ch)
		}
	}
	if _, err := pub.Publish(ctx, ch, func() {}); err == nil {
		t.Error("Publish of a value JSON cannot encode succeeded")
	}
	if got := s.n.Stats(); got != (notify.Stats{Received: 2}) {
		t.Errorf("Stats = %+v, want 2 received", got)
	}
}

func TestPatternSubscribe(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	prefix := testredis.Prefix(t)
	s := startSubscriber(t, rdb, notify.Options{}, patterns(prefix+"orders.*"), nil)
	pub := notify.New(rdb, nil)
	ctx := context.Background()
	for _, ch := range []string{"users.created", "orders.created", "orders.paid"} {
		if _, err := pub.Publish(ctx, prefix+ch, ch); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 2 {
		m := s.receive()
		if m.Pattern != prefix+"orders.*" {
			t.Errorf("Pattern = %q, want %q", m.Pattern, prefix+"orders.*")
		}
		got = append(got, strings.TrimPrefix(m.Channel, prefix)+" "+string(m.Payload))
	}
	if diff := cmp.Diff([]string{`orders.created "orders.created"`, `orders.paid "orders.paid"`}, got); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
}

// A payload that does not decode, a handler error and a handler panic are
// each logged and counted; the subscription goes on.
func TestBadEventsAreCountedNotFatal(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ch := testredis.Prefix(t) + "orders"
	var logs syncBuffer
	got := make(chan orderEvent, 10)
	h := notify.JSON(func(_ context.Context, _ *notify.Notification, e orderEvent) error {
		switch e.ID {
		case "fail":
			return errors.New("no such order")
		case "panic":
			panic("boom")
		}
		got <- e
		return nil
	})
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s := startSubscriber(t, rdb, notify.Options{Logger: logger}, channels(ch), h)
	ctx := context.Background()
	pub := notify.New(rdb, nil)

	rdb.Publish(ctx, ch, "not json")
	rdb.Publish(ctx, ch, `{"id": 7}`) // a number where a string belongs
	_, _ = pub.Publish(ctx, ch, orderEvent{ID: "fail"})
	_, _ = pub.Publish(ctx, ch, orderEvent{ID: "panic"})
	_, _ = pub.Publish(ctx, ch, orderEvent{ID: "A-1", Total: 5})
	select {
	case e := <-got:
		if e != (orderEvent{ID: "A-1", Total: 5}) {
			t.Errorf("handled %+v, want A-1", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the good event after the bad ones was not handled; stats %+v", s.n.Stats())
	}
	if st := s.n.Stats(); st != (notify.Stats{Received: 5, DecodeErrors: 2, HandlerErrors: 2}) {
		t.Errorf("Stats = %+v, want 5 received, 2 decode errors, 2 handler errors", st)
	}
	out := logs.String()
	for _, want := range []string{"does not decode", "no such order", "handler panicked: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("log has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not json") {
		t.Errorf("log holds payload bytes:\n%s", out)
	}
}

// After the connection is lost — the server restarted, or the client
// killed — the subscription comes back by itself, OnSubscribe says it is a
// resubscription, and events flow again.
func TestResubscribesAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lose func(t *testing.T, srv *testredis.Server)
	}{
		{"ServerRestart", func(t *testing.T, srv *testredis.Server) {
			srv.Kill(t)
			srv.Restart(t)
		}},
		{"ClientKill", func(t *testing.T, srv *testredis.Server) {
			if err := srv.Client(t).Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testredis.Start(t)
			rdb := srv.Client(t)
			s := startSubscriber(t, rdb, notify.Options{HealthCheck: 200 * time.Millisecond}, channels("orders"), nil)
			pub := notify.New(rdb, nil)
			ctx := context.Background()
			if _, err := pub.Publish(ctx, "orders", "before"); err != nil {
				t.Fatal(err)
			}
			if m := s.receive(); string(m.Payload) != `"before"` {
				t.Fatalf("got %s, want \"before\"", m.Payload)
			}

			tt.lose(t, srv)
			s.waitSubscribed(true)
			if n, err := pub.Publish(ctx, "orders", "after"); err != nil || n != 1 {
				t.Fatalf("Publish after the resubscribe = %d, %v; want 1 receiver", n, err)
			}
			if m := s.receive(); string(m.Payload) != `"after"` {
				t.Fatalf("got %s, want \"after\"", m.Payload)
			}
			if st := s.n.Stats(); st.Lost < 1 || st.Resubscribed < 1 {
				t.Errorf("Stats = %+v, want a loss and a resubscription counted", st)
			}
		})
	}
}

// A connection that goes silent — packets dropped, no reset — is found by
// the health-check ping. CLIENT PAUSE holds the server's replies, as a
// half-open connection would.
func TestSilentConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	rdb := srv.Client(t)
	s := startSubscriber(t, rdb, notify.Options{HealthCheck: 100 * time.Millisecond}, channels("orders"), nil)
	admin := srv.Client(t)
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "600", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	s.waitSubscribed(true)
	if st := s.n.Stats(); st.Lost < 1 {
		t.Errorf("Stats = %+v, want the silent connection counted as lost", st)
	}
}

// Subscribe returns nil when its context ends, whether it is subscribed or
// still trying to reach Redis, and leaves no goroutine behind (TestMain
// runs goleak).
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("Subscribed", func(t *testing.T) {
		t.Parallel()
		rdb := testredis.Shared(t).Client(t)
		s := startSubscriber(t, rdb, notify.Options{}, channels(testredis.Prefix(t)+"orders"), nil)
		if err := s.stop(); err != nil {
			t.Errorf("Subscribe = %v, want nil", err)
		}
	})
	t.Run("RedisDown", func(t *testing.T) {
		t.Parallel()
		srv := testredis.Start(t)
		rdb := srv.Client(t)
		srv.Kill(t)
		n := notify.New(rdb, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Subscribe(ctx, notify.HandlerFunc(nil), "orders") }()
		deadline := time.Now().Add(10 * time.Second)
		for n.Stats().Lost < 2 { // it keeps trying
			if time.Now().After(deadline) {
				t.Fatalf("Stats = %+v, want repeated attempts while Redis is down", n.Stats())
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Subscribe did not return within 10s of its context ending")
		}
	})
}

// A subscription Redis refuses returns its error instead of retrying for
// ever.
func TestRefusedSubscriptionReturnsError(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	ctx := context.Background()
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "app", "on", ">secret", "~*", "&allowed", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "app", Password: "secret"})
	defer rdb.Close()
	n := notify.New(rdb, nil)
	done := make(chan error, 1)
	go func() { done <- n.Subscribe(ctx, notify.HandlerFunc(nil), "forbidden") }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("Subscribe to a forbidden channel = %v, want a NOPERM error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe to a forbidden channel did not return")
	}
	if err := n.PSubscribe(ctx, notify.HandlerFunc(nil)); err == nil {
		t.Error("PSubscribe without patterns succeeded")
	}
	if err := notify.New(rdb, &notify.Options{Sharded: true}).PSubscribe(ctx, notify.HandlerFunc(nil), "a.*"); !errors.Is(err, notify.ErrShardedPatterns) {
		t.Errorf("sharded PSubscribe = %v, want ErrShardedPatterns", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

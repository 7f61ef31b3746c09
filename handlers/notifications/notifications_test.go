package notifications_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/notifications"
	"github.com/streamworker/streamworker/worker"
)

func TestOverTheLimitIsDelayedThenDelivered(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	n := notifications.New(h.Redis, &notifications.Options{Prefix: h.Prefix, Limit: ratelimit.Limit{Rate: 2, Period: 300 * time.Millisecond}})
	mux := worker.NewMux()
	n.Register(mux)
	h.Start(mux)

	var mu sync.Mutex
	got := map[string][]string{}
	ready := make(chan struct{}, 1)
	sub := notify.New(h.Redis, &notify.Options{Logger: h.Logger, OnSubscribe: func([]string, bool) { ready <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.PSubscribe(ctx, notify.JSON(func(_ context.Context, m *notify.Notification, r notifications.Request) error {
			mu.Lock()
			got[m.Channel] = append(got[m.Channel], r.Title)
			mu.Unlock()
			return nil
		}), n.Channel("*"))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("subscriber: %v", err)
		}
	})
	<-ready

	var ids []string
	for _, title := range []string{"a1", "a2", "a3", "a4"} {
		ids = append(ids, h.Send(notifications.Type, notifications.Request{User: "ada", Title: title}))
	}
	ids = append(ids, h.Send(notifications.Type, notifications.Request{User: "bob", Title: "b1"}))
	delays := 0
	for _, id := range ids {
		r := h.Acked(id)
		delays += r.Delays
		if r.Retries != 0 {
			t.Errorf("message %s retried %d times: over the limit must be delayed, not failed", id, r.Retries)
		}
	}
	if delays == 0 {
		t.Error("no notification was delayed: ada sent 4 with a limit of 2")
	}
	if c := h.Counts(notifications.Type); c.Delayed == 0 || c.Dead != 0 || c.Retried != 0 || c.Acked != 5 {
		t.Errorf("counts = %+v, want 5 acked, some delayed, none retried or dead", c)
	}
	h.Eventually("every notification to reach the subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got[n.Channel("ada")]) == 4 && len(got[n.Channel("bob")]) == 1
	})

	// Failure path: a request without a user cannot be delivered: dead-lettered.
	h.DeadLettered(h.Send(notifications.Type, `{"title":"to nobody"}`))
}

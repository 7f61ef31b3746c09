package scores_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/handlers/handlertest"
	"github.com/streamworker/streamworker/handlers/notify"
	"github.com/streamworker/streamworker/handlers/scores"
	"github.com/streamworker/streamworker/worker"
)

// subscribe collects what is published on channel until the test ends.
func subscribe[T any](t *testing.T, h *handlertest.Harness, channel string) func() []T {
	t.Helper()
	var mu sync.Mutex
	var got []T
	ready := make(chan struct{})
	var once sync.Once
	n := notify.New(h.Redis, &notify.Options{Logger: h.Logger, OnSubscribe: func([]string, bool) { once.Do(func() { close(ready) }) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.Subscribe(ctx, notify.JSON(func(_ context.Context, _ *notify.Notification, ev T) error {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			return nil
		}), channel)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Subscribe = %v", err)
		}
	})
	select {
	case <-ready:
	case <-time.After(handlertest.WaitTimeout):
		t.Fatal("subscription not confirmed")
	}
	return func() []T {
		mu.Lock()
		defer mu.Unlock()
		return append([]T(nil), got...)
	}
}

func TestScoreSubmittedUpdatesTheBoardAndNotifiesRankChanges(t *testing.T) {
	t.Parallel()
	h := handlertest.New(t)
	day := time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	s := scores.New(h.Redis, &scores.Options{Prefix: h.Prefix, Now: func() time.Time { return day }, Logger: h.Logger})
	mux := worker.NewMux()
	s.Register(mux)
	h.Start(mux)
	received := subscribe[scores.RankChanged](t, h, s.Channel())

	// One at a time, so the order of rank changes is known.
	for _, sub := range []scores.Submission{{"alice", 10}, {"bob", 20}, {"alice", 5}, {"alice", 10}} {
		h.Acked(h.Send(scores.Type, sub))
	}
	board := h.Prefix + "leaderboard:daily:2026-11-25"
	want := []scores.RankChanged{
		{Board: board, User: "alice", OldRank: 0, NewRank: 1, Score: 10},
		{Board: board, User: "bob", OldRank: 0, NewRank: 1, Score: 20},
		// alice at 15 stays second: no notification.
		{Board: board, User: "alice", OldRank: 2, NewRank: 1, Score: 25},
	}
	h.Eventually("three rank changes", func() bool { return len(received()) >= len(want) })
	if diff := cmp.Diff(want, received()); diff != "" {
		t.Errorf("rank.changed (-want +got):\n%s", diff)
	}
	top, err := s.Today().Top(context.Background(), 10)
	if err != nil || len(top) != 2 || top[0].Member != "alice" || top[0].Score != 25 || top[1].Member != "bob" {
		t.Errorf("top = %+v, %v; want alice 25, bob 20", top, err)
	}
	if ttl := h.Redis.TTL(context.Background(), board).Val(); ttl <= 0 {
		t.Errorf("daily board TTL = %v, want it to expire by itself", ttl)
	}

	// Failure path: a bad submission is dead-lettered and changes nothing.
	for _, bad := range []string{`{"user":"alice","points":-5}`, `{"points":5}`, `nope`} {
		r := h.DeadLettered(h.Send(scores.Type, bad))
		if r.Retries != 0 {
			t.Errorf("%s retried %d times, want none", bad, r.Retries)
		}
	}
	if top, _ := s.Today().Top(context.Background(), 1); top[0].Score != 25 {
		t.Errorf("top after bad submissions = %+v", top)
	}
}

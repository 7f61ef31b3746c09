package scores_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/handlers/handlertest"
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

// clocks are the times the tests run at: now, and one year from now, so a
// test that only passes near the day it was written fails here first.
var clocks = []struct {
	name   string
	offset time.Duration
}{
	{"Now", 0},
	{"OneYearFromNow", 365 * 24 * time.Hour},
}

func TestScoreSubmittedUpdatesTheBoardAndNotifiesRankChanges(t *testing.T) {
	t.Parallel()
	for _, clk := range clocks {
		t.Run(clk.name, func(t *testing.T) {
			t.Parallel()
			h := handlertest.New(t)
			now := func() time.Time { return time.Now().Add(clk.offset) }
			s := scores.New(h.Redis, &scores.Options{Prefix: h.Prefix, Now: now, Logger: h.Logger})
			mux := worker.NewMux()
			s.Register(mux)
			h.Start(mux)
			received := subscribe[scores.RankChanged](t, h, s.Channel())

			// One at a time, so the order of rank changes is known.
			for _, sub := range []scores.Submission{{User: "alice", Points: 10}, {User: "bob", Points: 20}, {User: "alice", Points: 5}, {User: "alice", Points: 10}} {
				h.Acked(h.Send(scores.Type, sub))
			}
			board := s.Today().Key()
			if want := h.Prefix + "leaderboard:daily:" + now().UTC().Format(time.DateOnly); board != want {
				t.Errorf("today's board = %q, want %q", board, want)
			}
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
		})
	}
}

// A score counts on the board of the day it was achieved while that board
// is kept; a score for a day whose board has expired, or dated in the
// future, is dead-lettered with the reason and written nowhere.
func TestScoreSubmittedAtADay(t *testing.T) {
	t.Parallel()
	for _, clk := range clocks {
		t.Run(clk.name, func(t *testing.T) {
			t.Parallel()
			h := handlertest.New(t)
			now := func() time.Time { return time.Now().Add(clk.offset) }
			s := scores.New(h.Redis, &scores.Options{Prefix: h.Prefix, Now: now, Retain: 48 * time.Hour, Logger: h.Logger})
			mux := worker.NewMux()
			s.Register(mux)
			h.Start(mux)
			ctx := context.Background()

			yesterday := now().AddDate(0, 0, -1)
			h.Acked(h.Send(scores.Type, scores.Submission{User: "alice", Points: 7, At: yesterday}))
			if e, err := s.Day(yesterday).Rank(ctx, "alice"); err != nil || e.Score != 7 {
				t.Errorf("alice on yesterday's board = %+v, %v; want 7", e, err)
			}
			if n, _ := s.Today().Len(ctx); n != 0 {
				t.Errorf("today's board has %d members, want none", n)
			}

			for _, tc := range []struct {
				name   string
				at     time.Time
				reason string
			}{
				{"TooLate", now().AddDate(0, 0, -5), "too late for its day"},
				{"InTheFuture", now().Add(time.Hour), "more than 5m0s after now"},
			} {
				r := h.DeadLettered(h.Send(scores.Type, scores.Submission{User: "bob", Points: 3, At: tc.at}))
				if reason := fmt.Sprint(r.DeadLetter["error"]); !strings.Contains(reason, tc.reason) || r.Retries != 0 {
					t.Errorf("%s: dead letter error %q after %d retries, want %q and no retry", tc.name, reason, r.Retries, tc.reason)
				}
				if n := h.Redis.Exists(ctx, s.Day(tc.at).Key()).Val(); n != 0 {
					t.Errorf("%s: board %s exists, want nothing written", tc.name, s.Day(tc.at).Key())
				}
			}
		})
	}
}

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/handlers/notifications"
	"github.com/streamworker/streamworker/handlers/points"
	"github.com/streamworker/streamworker/handlers/reports"
	"github.com/streamworker/streamworker/handlers/scores"
	"github.com/streamworker/streamworker/handlers/sessions"
	"github.com/streamworker/streamworker/handlers/users"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
)

const demoAccounts = 10

// demoSeed writes what the events act on — starting balances, live
// sessions — and returns a realistic mix of n events and how many of each
// type were sent.
func demoSeed(ctx context.Context, rdb redis.UniversalClient, n int) ([]producer.Event, map[string]int, error) {
	ledger := points.New(rdb, nil)
	store := sessions.New(rdb, nil).Store()
	for i := range demoAccounts {
		if err := ledger.Grant(ctx, fmt.Sprintf("u%d", i), 100); err != nil {
			return nil, nil, fmt.Errorf("seeding balances: %w", err)
		}
		if err := store.Save(ctx, fmt.Sprintf("sess-%d", i), map[string]any{"user": fmt.Sprintf("u%d", i), "page": "/"}); err != nil {
			return nil, nil, fmt.Errorf("seeding sessions: %w", err)
		}
	}
	run := rand.Text()[:8] // transfer ids unique to this run
	want := map[string]int{}
	var events []producer.Event
	for i := range n {
		u := i % demoAccounts
		var e producer.Event
		switch i % 20 {
		case 0, 1, 2, 3:
			e = producer.Event{Type: users.Type, Data: fmt.Appendf(nil, `{"id":"u%d","name":"User %d","email":"u%d@example.com","version":%d}`, u, i, u, i)}
			if i%40 == 3 {
				e.Data = []byte(`{"name":"no id"}`) // dead-lettered
			}
		case 4, 5, 6:
			e = producer.Event{Type: points.Type, Data: fmt.Appendf(nil, `{"from":"u%d","to":"u%d","amount":%d}`, u, (u+1+i%7)%demoAccounts, 1+i%25)}
		case 19:
			e = producer.Event{Type: points.Type, Data: fmt.Appendf(nil, `{"from":"u%d","to":"u%d","amount":100000}`, u, (u+1)%demoAccounts)} // overdraft: dead-lettered
		case 7, 8, 9, 10:
			e = producer.Event{Type: scores.Type, Data: fmt.Appendf(nil, `{"user":"player%d","points":%d}`, i%8, 1+i%50)}
		case 11, 12, 13:
			e = producer.Event{Type: notifications.Type, Data: fmt.Appendf(nil, `{"user":"n%d","title":"message %d"}`, i%3, i)}
		case 14, 15, 16:
			e = producer.Event{Type: sessions.Type, Data: fmt.Appendf(nil, `{"session":"sess-%d","fields":{"page":"/item/%d"}}`, u, i)}
		case 17, 18:
			e = producer.Event{Type: reports.Type, Data: fmt.Appendf(nil, `{"report":"r%d","params":{"n":"%d"}}`, i%3, i)}
		}
		e.ID = fmt.Sprintf("demo-%s-%d", run, i)
		want[e.Type]++
		events = append(events, e)
	}
	return events, want, nil
}

// flakyStore is the demo's database having hiccups: every fourth write
// fails, so user.updated shows its retry path.
type flakyStore struct {
	users.Store
	calls, failed atomic.Int64
}

var errHiccup = errors.New("simulated database hiccup")

func (s *flakyStore) UpsertUser(ctx context.Context, u users.User) error {
	if s.calls.Add(1)%4 == 0 {
		s.failed.Add(1)
		return errHiccup
	}
	return s.Store.UpsertUser(ctx, u)
}

// demoSamples keeps the first few notifications the demo's subscribers got.
type demoSamples struct {
	mu    sync.Mutex
	rank  []any
	notes []any
}

func (s *demoSamples) add(to *[]any, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*to) < 3 {
		*to = append(*to, v)
	}
}

// demoReport prints sample results of every plugin.
func demoReport(ctx context.Context, w io.Writer, rdb redis.UniversalClient, b *builtins, flaky *flakyStore, samples *demoSamples) {
	fmt.Fprintln(w, "samples:")
	if b.scores != nil {
		if top, err := b.scores.Today().Top(ctx, 3); err == nil {
			for _, e := range top {
				fmt.Fprintf(w, "  leaderboard %s #%d %s %.0f\n", b.scores.Today().Key(), e.Rank, e.Member, e.Score)
			}
		}
	}
	samples.mu.Lock()
	for _, r := range samples.rank {
		ev := r.(scores.RankChanged)
		fmt.Fprintf(w, "  rank.changed received: %s from #%d to #%d (score %.0f)\n", ev.User, ev.OldRank, ev.NewRank, ev.Score)
	}
	for _, n := range samples.notes {
		fmt.Fprintf(w, "  notification received: %s\n", n)
	}
	samples.mu.Unlock()
	if b.users != nil {
		if u, err := b.users.GetUser(ctx, "u1"); err == nil {
			fmt.Fprintf(w, "  user u1 (cache-aside read): name=%q version=%d\n", u.Name, u.Version)
		}
		fmt.Fprintf(w, "  database hiccups retried: %d; cache invalidations failed: %d\n", flaky.failed.Load(), b.users.InvalidationFailures())
	}
	if b.points != nil {
		var total int64
		for i := range demoAccounts {
			n, _ := b.points.Balance(ctx, fmt.Sprintf("u%d", i))
			total += n
		}
		fmt.Fprintf(w, "  points: total over %d accounts = %d (conserved by every transfer)\n", demoAccounts, total)
	}
	if b.session != nil {
		if page, err := b.session.Store().Get(ctx, "sess-4", "page"); err == nil {
			fmt.Fprintf(w, "  session sess-4: page=%q, idle TTL %s\n", page, rdb.PTTL(ctx, "session:sess-4").Val().Round(1e9))
		}
	}
	if b.reports != nil {
		if body, err := b.reports.Store().Get(ctx, "r0"); err == nil {
			fmt.Fprintf(w, "  report r0: %s (stale writes refused: %d)\n", body, b.reports.StaleWrites())
		}
	}
	// The first dead letter of each type: which types' come first depends
	// on how the handlers' runs interleave, the first few in the stream
	// would show some types' and not others'.
	dead, err := rdb.XRangeN(ctx, wire.DeadLetterKey(demoStream), "-", "+", demoDeadShown).Result()
	if err == nil {
		shown := map[string]bool{}
		for _, e := range dead {
			typ, _ := e.Values["type"].(string) // "": an event without one
			if !shown[typ] {
				shown[typ] = true
				fmt.Fprintf(w, "  dead letter %s: type=%q error=%q attempts=%v\n", e.ID, typ, e.Values["error"], e.Values["attempts"])
			}
		}
	}
}

// demoDeadShown is how many of the demo's dead letters are looked at for
// the first of each type.
const demoDeadShown = 1000

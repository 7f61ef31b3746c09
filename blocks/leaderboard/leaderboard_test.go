package leaderboard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin for the DST cases, on machines without a zoneinfo database

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/leaderboard"
	"github.com/streamworker/streamworker/internal/testredis"
)

func newBoard(t testing.TB) (*leaderboard.Board, *redis.Client) {
	t.Helper()
	rdb := testredis.Shared(t).Client(t)
	return leaderboard.New(rdb, testredis.Prefix(t)+"board"), rdb
}

func set(t *testing.T, b *leaderboard.Board, scores map[string]float64) {
	t.Helper()
	for m, s := range scores {
		if err := b.Set(context.Background(), m, s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTopRanksByScoreThenName(t *testing.T) {
	t.Parallel()
	b, _ := newBoard(t)
	ctx := context.Background()
	set(t, b, map[string]float64{"dave": 50, "carol": 70, "alice": 70, "bob": 70, "erin": 0, "frank": -5})

	got, err := b.Top(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []leaderboard.Entry{
		{Rank: 1, Member: "alice", Score: 70}, // ties: ascending names
		{Rank: 2, Member: "bob", Score: 70},
		{Rank: 3, Member: "carol", Score: 70},
		{Rank: 4, Member: "dave", Score: 50},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Top(4) (-want +got):\n%s", diff)
	}
	got, _ = b.Range(ctx, 5, 10)
	want = []leaderboard.Entry{{Rank: 5, Member: "erin", Score: 0}, {Rank: 6, Member: "frank", Score: -5}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Range(5, 10) (-want +got):\n%s", diff)
	}
	if got, _ := b.Top(ctx, 0); len(got) != 0 {
		t.Errorf("Top(0) = %v, want nothing", got)
	}
	for _, w := range []leaderboard.Entry{{Rank: 2, Member: "bob", Score: 70}, {Rank: 5, Member: "erin", Score: 0}} {
		e, err := b.Rank(ctx, w.Member)
		if err != nil || e != w {
			t.Errorf("Rank(%q) = %+v, %v; want %+v", w.Member, e, err, w)
		}
	}
	if _, err := b.Rank(ctx, "zoe"); !errors.Is(err, leaderboard.ErrNotFound) {
		t.Errorf("Rank of a missing member = %v, want ErrNotFound", err)
	}
	if n, _ := b.Len(ctx); n != 6 {
		t.Errorf("Len = %d, want 6", n)
	}
	if err := b.Remove(ctx, "alice", "zoe"); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.Rank(ctx, "bob"); e.Rank != 1 {
		t.Errorf("Rank(bob) after removing alice = %d, want 1", e.Rank)
	}
}

// Concurrent increments all count.
func TestIncr(t *testing.T) {
	t.Parallel()
	b, _ := newBoard(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				if _, err := b.Incr(ctx, "alice", 1.5); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := b.Incr(ctx, "alice", 0)
	if err != nil || got != 1500 {
		t.Errorf("score after 1000 increments of 1.5 = %v, %v; want 1500", got, err)
	}
	if got, _ := b.Incr(ctx, "bob", -2); got != -2 {
		t.Errorf("Incr of a new member by -2 = %v, want -2", got)
	}
}

func TestAround(t *testing.T) {
	t.Parallel()
	b, _ := newBoard(t)
	ctx := context.Background()
	for i := range 10 { // m0 has 100 and ranks first; m9 has 10
		if err := b.Set(ctx, fmt.Sprintf("m%d", i), float64(100-10*i)); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(i int) leaderboard.Entry {
		return leaderboard.Entry{Rank: int64(i + 1), Member: fmt.Sprintf("m%d", i), Score: float64(100 - 10*i)}
	}
	entries := func(from, to int) []leaderboard.Entry {
		var out []leaderboard.Entry
		for i := from; i <= to; i++ {
			out = append(out, entry(i))
		}
		return out
	}
	tests := []struct {
		name   string
		member string
		n      int64
		want   []leaderboard.Entry
	}{
		{"Middle", "m5", 2, entries(3, 7)},
		{"NearTheTop", "m1", 3, entries(0, 4)},
		{"AtTheBottom", "m9", 2, entries(7, 9)},
		{"JustTheMember", "m4", 0, entries(4, 4)},
		{"MoreThanTheBoard", "m4", 50, entries(0, 9)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Around(ctx, tt.member, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Around(%q, %d) (-want +got):\n%s", tt.member, tt.n, diff)
			}
		})
	}
	if _, err := b.Around(ctx, "nobody", 2); !errors.Is(err, leaderboard.ErrNotFound) {
		t.Errorf("Around a missing member = %v, want ErrNotFound", err)
	}
}

// Rank reads the rank and the score from one state of the board. A member
// flipping between first (150) and second (50) is never reported first
// with 50 or second with 150, as two separate reads would sometimes do.
func TestRankAndScoreAreConsistent(t *testing.T) {
	t.Parallel()
	b, _ := newBoard(t)
	ctx := context.Background()
	set(t, b, map[string]float64{"rival": 100, "flip": 50})

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if err := b.Set(ctx, "flip", float64(50+100*(i%2))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 2000 {
		e, err := b.Rank(ctx, "flip")
		if err != nil {
			t.Fatal(err)
		}
		if (e.Rank == 1) != (e.Score == 150) {
			t.Errorf("Rank(flip) = %+v: rank and score from different states", e)
			break
		}
	}
	stop.Store(true)
	wg.Wait()
}

// clocks are the times the periodic tests run at: now, and one year from
// now, so a test that only passes near the day it was written fails here
// first. Redis runs on real time: the boards' own clocks are what move.
var clocks = []struct {
	name   string
	offset time.Duration
}{
	{"Now", 0},
	{"OneYearFromNow", 365 * 24 * time.Hour},
}

func TestPeriodicBoardKeyAndExpiry(t *testing.T) {
	t.Parallel()
	for _, clk := range clocks {
		t.Run(clk.name, func(t *testing.T) {
			t.Parallel()
			rdb := testredis.Shared(t).Client(t)
			ctx := context.Background()
			base := testredis.Prefix(t) + "leaderboard"
			now := time.Now().Add(clk.offset).UTC()
			clock := leaderboard.WithClock(func() time.Time { return now })

			b := leaderboard.NewPeriodic(rdb, base, leaderboard.Daily, now, 7*24*time.Hour, clock)
			if want := base + ":daily:" + now.Format(time.DateOnly); b.Key() != want {
				t.Errorf("Key = %q, want %q", b.Key(), want)
			}
			y, m, d := now.Date()
			wantExpiry := time.Date(y, m, d+8, 0, 0, 0, 0, time.UTC) // the day's end, plus a week
			if !b.ExpireAt().Equal(wantExpiry) {
				t.Errorf("ExpireAt = %v, want %v", b.ExpireAt(), wantExpiry)
			}
			if _, err := b.Incr(ctx, "alice", 10); err != nil {
				t.Fatal(err)
			}
			if err := b.Set(ctx, "bob", 5); err != nil {
				t.Fatal(err)
			}
			if got := rdb.PExpireTime(ctx, b.Key()).Val(); got != time.Duration(wantExpiry.UnixMilli())*time.Millisecond {
				t.Errorf("PEXPIRETIME = %v, want %v (Unix ms)", got.Milliseconds(), wantExpiry.UnixMilli())
			}
			if top, err := b.Top(ctx, 2); err != nil || len(top) != 2 || top[0].Member != "alice" {
				t.Errorf("Top(2) = %+v, %v; want alice then bob", top, err)
			}
		})
	}
	// A board without a period never expires.
	rdb := testredis.Shared(t).Client(t)
	a := leaderboard.New(rdb, testredis.Prefix(t)+"global")
	if err := a.Set(context.Background(), "alice", 1); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(context.Background(), a.Key()).Val(); ttl != -1 {
		t.Errorf("PTTL of an all-time board = %v, want none (-1)", ttl)
	}
}

// A board whose retention has passed refuses writes with ErrExpired and
// writes nothing, rather than losing them without a word.
func TestExpiredBoardRefusesWrites(t *testing.T) {
	t.Parallel()
	for _, clk := range clocks {
		t.Run(clk.name, func(t *testing.T) {
			t.Parallel()
			rdb := testredis.Shared(t).Client(t)
			ctx := context.Background()
			now := time.Now().Add(clk.offset)
			late := now.AddDate(0, 0, -10) // a week's retention ended two days ago
			b := leaderboard.NewPeriodic(rdb, testredis.Prefix(t)+"lb", leaderboard.Daily, late, 7*24*time.Hour,
				leaderboard.WithClock(func() time.Time { return now }))
			if _, err := b.Incr(ctx, "alice", 10); !errors.Is(err, leaderboard.ErrExpired) {
				t.Errorf("Incr on an expired board = %v, want ErrExpired", err)
			}
			if err := b.Set(ctx, "alice", 10); !errors.Is(err, leaderboard.ErrExpired) {
				t.Errorf("Set on an expired board = %v, want ErrExpired", err)
			}
			if n := rdb.Exists(ctx, b.Key()).Val(); n != 0 {
				t.Errorf("EXISTS %s = %d, want nothing written", b.Key(), n)
			}
		})
	}
}

// When the board's clock runs behind Redis's, Redis deletes the board as
// the write sets an expiry Redis sees as past; the write still reports
// ErrExpired instead of success.
func TestExpiredByTheRedisClock(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ctx := context.Background()
	lastHour := time.Now().Add(-time.Hour)
	slow := leaderboard.WithClock(func() time.Time { return lastHour }) // an hour behind
	b := leaderboard.NewPeriodic(rdb, testredis.Prefix(t)+"lb", leaderboard.Hourly, lastHour, 0, slow)
	if _, err := b.Incr(ctx, "alice", 1); !errors.Is(err, leaderboard.ErrExpired) {
		t.Errorf("Incr past Redis's expiry = %v, want ErrExpired", err)
	}
	if n := rdb.Exists(ctx, b.Key()).Val(); n != 0 {
		t.Errorf("EXISTS %s = %d, want the board gone", b.Key(), n)
	}
}

// The board of the hour that just ended, kept two seconds more: it goes
// away by itself.
func TestPeriodicBoardExpiresByItself(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	ctx := context.Background()
	lastHour := time.Now().Add(-time.Hour)
	_, end := leaderboard.Hourly.Bounds(lastHour)
	h := leaderboard.NewPeriodic(rdb, testredis.Prefix(t)+"lb", leaderboard.Hourly, lastHour, time.Since(end)+2*time.Second)
	if _, err := h.Incr(ctx, "alice", 1); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, h.Key()).Val(); ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("PTTL of the last hour's board = %v, want (0, 2s]", ttl)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Exists(ctx, h.Key()).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the last hour's board did not expire")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

func TestPeriodBuckets(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		p          leaderboard.Period
		t          time.Time
		bucket     string
		start, end time.Time
	}{
		{
			"Hourly", leaderboard.Hourly, time.Date(2026, 11, 25, 13, 45, 0, 0, time.UTC), "2026-11-25T13",
			time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC), time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC),
		},
		{
			"Daily", leaderboard.Daily, time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC), "2026-11-25",
			time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		},
		{
			"DailyIsTheLocalDay", leaderboard.Daily, time.Date(2026, 11, 25, 23, 30, 0, 0, time.UTC).In(berlin), "2026-11-26",
			time.Date(2026, 11, 26, 0, 0, 0, 0, berlin), time.Date(2026, 11, 27, 0, 0, 0, 0, berlin),
		},
		{
			"DailyOver23HourDSTDay", leaderboard.Daily, time.Date(2026, 3, 29, 12, 0, 0, 0, berlin), "2026-03-29",
			time.Date(2026, 3, 29, 0, 0, 0, 0, berlin), time.Date(2026, 3, 30, 0, 0, 0, 0, berlin),
		},
		{
			"Weekly", leaderboard.Weekly, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), "2026-W48",
			time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		},
		{
			"WeeklySunday", leaderboard.Weekly, time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC), "2026-W48",
			time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		},
		{
			"WeeklyAcrossNewYear", leaderboard.Weekly, time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC), "2026-W53",
			time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC),
		},
		{
			"Monthly", leaderboard.Monthly, time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), "2026-12",
			time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.p.Bounds(tt.t)
			got := []any{tt.p.Bucket(tt.t), start, end}
			want := []any{tt.bucket, tt.start, tt.end}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s of %v: bucket, start, end (-want +got):\n%s", tt.p, tt.t, diff)
			}
		})
	}
}

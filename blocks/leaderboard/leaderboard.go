// Package leaderboard owns ranked scores on a Redis sorted set: set or add
// to a member's score, the top N with rank and score, one member's rank
// and score, the members around one member, and boards for one period (a
// day, a week) that expire by themselves.
//
// Tie-break rule: a higher score ranks first; members with equal scores
// rank in ascending byte order of their names ("alice" above "bob"), on
// every call and every replica. Redis orders equal scores by member, but
// ZREVRANGE reverses that to descending order, which is rarely what a
// reader expects; so the board stores each score negated and reads with
// ZRANGE and ZRANK. (Where the earlier achiever should win a tie, put the
// time into the member name or the score.)
//
// The traps it avoids: a rank and a score read by two commands that see
// two different boards (they are read in one MULTI), neighbours found by
// reading the rank and then the range in two round trips (one script),
// ranks off by one (ranks here start at 1), and period boards written
// without an expiry, or with an EXPIRE relative to each write that keeps a
// busy board alive for ever (every write sets the same absolute EXPIREAT,
// in the same transaction).
//
// A write to a periodic board whose retention has already passed (a late
// event replayed days after its period) returns ErrExpired and writes
// nothing: Redis would delete the board as the write set its expiry, so the
// write would vanish without a word. The board checks its clock (WithClock)
// before writing, and Redis's own clock decides in the same transaction, so
// a clock skewed against Redis's cannot lose a write silently either.
package leaderboard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for a member that is not on the board.
var ErrNotFound = errors.New("leaderboard: member not found")

// ErrExpired is returned by a write to a periodic board whose retention has
// passed: nothing was written. A score for that period can no longer be
// kept; treat the event as permanently failed (or count and drop it), never
// as a success.
var ErrExpired = errors.New("leaderboard: board expired")

// Entry is one member's place on a board.
type Entry struct {
	// Rank is 1 for the highest score.
	Rank int64
	// Member is the member's name.
	Member string
	// Score is the member's score.
	Score float64
}

// Board is one leaderboard: a sorted set under one key. It is safe for
// concurrent use.
type Board struct {
	rdb      redis.UniversalClient
	key      string
	expireAt time.Time // zero: never
	now      func() time.Time
}

// Option configures a periodic board.
type Option func(*Board)

// WithClock makes the board read the time from now when it decides whether
// its retention has passed. Default: time.Now
func WithClock(now func() time.Time) Option {
	return func(b *Board) { b.now = now }
}

// New returns the board stored under key, which never expires.
func New(rdb redis.UniversalClient, key string) *Board {
	return &Board{rdb: rdb, key: key}
}

// NewPeriodic returns the board of base for the period p that contains t,
// under the key base:<period>:<bucket> — "leaderboard:daily:2026-11-25"
// for base "leaderboard", Daily and a time on that day. The period is read
// in t's location: pass t.UTC() for UTC days. Every write sets the board
// to expire retain after its period ends, so old boards go away by
// themselves; a write after that moment returns ErrExpired and writes
// nothing, rather than starting a board that never expires.
func NewPeriodic(rdb redis.UniversalClient, base string, p Period, t time.Time, retain time.Duration, opts ...Option) *Board {
	_, end := p.Bounds(t)
	b := &Board{rdb: rdb, key: base + ":" + p.String() + ":" + p.Bucket(t), expireAt: end.Add(retain), now: time.Now}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Key is the board's Redis key.
func (b *Board) Key() string { return b.key }

// ExpireAt is when a periodic board expires; zero for a board that does
// not.
func (b *Board) ExpireAt() time.Time { return b.expireAt }

// Set sets member's score, adding the member if it is new.
func (b *Board) Set(ctx context.Context, member string, score float64) error {
	err := b.write(ctx, func(p redis.Pipeliner) {
		p.ZAdd(ctx, b.key, redis.Z{Score: -score, Member: member})
	})
	if err != nil {
		return fmt.Errorf("leaderboard: setting %q on %s: %w", member, b.key, err)
	}
	return nil
}

// Incr adds by to member's score (a new member starts at 0) and returns
// the new score.
func (b *Board) Incr(ctx context.Context, member string, by float64) (float64, error) {
	var cmd *redis.FloatCmd
	err := b.write(ctx, func(p redis.Pipeliner) {
		cmd = p.ZIncrBy(ctx, b.key, -by, member)
	})
	if err != nil {
		return 0, fmt.Errorf("leaderboard: adding to %q on %s: %w", member, b.key, err)
	}
	return unneg(cmd.Val()), nil
}

// write runs f, and on a periodic board sets its expiry in the same
// transaction, so the board never exists without one. A board past its
// expiry returns ErrExpired: by the board's clock before anything is sent,
// or by Redis's when the board is gone at the end of the transaction (its
// PEXPIREAT was in the past for Redis, which deleted it).
func (b *Board) write(ctx context.Context, f func(redis.Pipeliner)) error {
	if b.expireAt.IsZero() {
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { f(p); return nil })
		return err
	}
	if now := b.now(); !now.Before(b.expireAt) {
		return fmt.Errorf("%w at %s (now %s)", ErrExpired, b.expireAt.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	var exists *redis.IntCmd
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		f(p)
		p.PExpireAt(ctx, b.key, b.expireAt)
		exists = p.Exists(ctx, b.key)
		return nil
	})
	if err != nil {
		return err
	}
	if exists.Val() == 0 {
		return fmt.Errorf("%w at %s by the Redis server's clock", ErrExpired, b.expireAt.Format(time.RFC3339))
	}
	return nil
}

// Remove takes members off the board.
func (b *Board) Remove(ctx context.Context, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := b.rdb.ZRem(ctx, b.key, args...).Err(); err != nil {
		return fmt.Errorf("leaderboard: removing from %s: %w", b.key, err)
	}
	return nil
}

// Len is the number of members on the board.
func (b *Board) Len(ctx context.Context) (int64, error) {
	n, err := b.rdb.ZCard(ctx, b.key).Result()
	if err != nil {
		return 0, fmt.Errorf("leaderboard: counting %s: %w", b.key, err)
	}
	return n, nil
}

// Top returns the n highest-ranked members, best first.
func (b *Board) Top(ctx context.Context, n int64) ([]Entry, error) {
	return b.Range(ctx, 1, n)
}

// Range returns the members ranked from..to (1-based, inclusive), best
// first: Range(ctx, 11, 20) is the second page of ten.
func (b *Board) Range(ctx context.Context, from, to int64) ([]Entry, error) {
	if from < 1 || to < from {
		return nil, nil
	}
	zs, err := b.rdb.ZRangeWithScores(ctx, b.key, from-1, to-1).Result()
	if err != nil {
		return nil, fmt.Errorf("leaderboard: reading %s: %w", b.key, err)
	}
	out := make([]Entry, len(zs))
	for i, z := range zs {
		out[i] = Entry{Rank: from + int64(i), Member: z.Member.(string), Score: unneg(z.Score)}
	}
	return out, nil
}

// Rank returns member's rank and score, read together in one MULTI so
// they belong to the same state of the board. It returns ErrNotFound for
// a member not on the board.
func (b *Board) Rank(ctx context.Context, member string) (Entry, error) {
	var rank *redis.IntCmd
	var score *redis.FloatCmd
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		rank = p.ZRank(ctx, b.key, member)
		score = p.ZScore(ctx, b.key, member)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("leaderboard: ranking %q on %s: %w", member, b.key, err)
	}
	return Entry{Rank: rank.Val() + 1, Member: member, Score: unneg(score.Val())}, nil
}

// aroundScript reads a member's rank and the members around it in one step.
// It touches one key, so it runs on any Redis Cluster node.
// Returns nil when the member is not on the board, else
// {rank of the first entry (0-based), {member, score, member, score, ...}}.
//
// KEYS[1] -> the board (sorted set, scores negated: best first in ZRANGE)
// ARGV[1] -> the member
// ARGV[2] -> how many members to return on each side of it
var aroundScript = redis.NewScript(`
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return false end
local n = tonumber(ARGV[2])
local first = rank - n
if first < 0 then first = 0 end
return {first, redis.call('ZRANGE', KEYS[1], first, rank + n, 'WITHSCORES')}
`)

// Around returns member with up to n members ranked directly above it and
// n directly below, best first, in one round trip. It returns ErrNotFound
// for a member not on the board.
func (b *Board) Around(ctx context.Context, member string, n int64) ([]Entry, error) {
	v, err := aroundScript.Run(ctx, b.rdb, []string{b.key}, member, max(n, 0)).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("leaderboard: reading around %q on %s: %w", member, b.key, err)
	}
	first, _ := v[0].(int64)
	flat, _ := v[1].([]any)
	out := make([]Entry, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		m, _ := flat[i].(string)
		s, _ := flat[i+1].(string)
		score, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("leaderboard: score %q of %q on %s: %w", s, m, b.key, err)
		}
		out = append(out, Entry{Rank: first + 1 + int64(i/2), Member: m, Score: unneg(score)})
	}
	return out, nil
}

// unneg turns a stored (negated) score back into the score, without
// producing -0.
func unneg(stored float64) float64 { return 0 - stored }

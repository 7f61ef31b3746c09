// Package scores is the built-in score.submitted plugin: it adds a submitted
// score to the member's total on the leaderboard of the day it was achieved
// (the submission's "at", or the day it is handled; a daily board that
// expires by itself) and publishes a rank.changed notification when the
// member's rank moved.
//
// A score for a day whose board has already expired (an event replayed or
// delayed past Options.Retain) cannot be kept: it is dead-lettered with
// leaderboard.ErrExpired as the reason, not acknowledged as if it counted.
// So is a score dated more than MaxSkew in the future.
//
// Delivery is at-least-once and an increment is not idempotent: send score
// events with an id and set WORKER_DEDUPE_WINDOW for exactly-once in
// practice. The notification is pub/sub, at-most-once: a signal for live
// views, not a record; failing to publish it is logged and counted, and does
// not retry the message (which would add the score twice).
//
// Keys: <prefix>leaderboard:daily:<YYYY-MM-DD> (package leaderboard);
// channel <prefix>rank.changed.
package scores

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/leaderboard"
	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/worker"
)

// Type is the message type the plugin handles.
const Type = "score.submitted"

// Submission is the payload of a score.submitted message.
type Submission struct {
	User   string  `json:"user"`
	Points float64 `json:"points"`
	// At is when the score was achieved: it picks the day's board (UTC).
	// Zero: the day the message is handled.
	At time.Time `json:"at,omitzero"`
}

// MaxSkew is how far in the future a submission's At may be (producers'
// clocks run ahead of the worker's) before it is refused.
const MaxSkew = 5 * time.Minute

// RankChanged is the notification published on the rank.changed channel.
type RankChanged struct {
	Board   string  `json:"board"`
	User    string  `json:"user"`
	OldRank int64   `json:"old_rank"` // 0: not on the board before
	NewRank int64   `json:"new_rank"`
	Score   float64 `json:"score"`
}

// Options configure Scores.
type Options struct {
	// Prefix is put in front of every key and channel. Default: ""
	Prefix string
	// Retain is how long a day's board is kept after the day ends.
	// Default: 48h
	Retain time.Duration
	// Now is the clock; days are UTC. Default: time.Now
	Now func() time.Time
	// Notifier publishes rank.changed. Default: notify.New(rdb, nil)
	Notifier *notify.Notifier
	// Logger receives failed publishes. Default: discard
	Logger *slog.Logger
}

// Scores handles score.submitted.
type Scores struct {
	rdb       redis.UniversalClient
	opt       Options
	logger    *slog.Logger
	pubFailed atomic.Uint64
}

// New returns Scores on rdb; opt may be nil.
func New(rdb redis.UniversalClient, opt *Options) *Scores {
	s := &Scores{rdb: rdb}
	if opt != nil {
		s.opt = *opt
	}
	if s.opt.Retain <= 0 {
		s.opt.Retain = 48 * time.Hour
	}
	if s.opt.Now == nil {
		s.opt.Now = time.Now
	}
	if s.opt.Notifier == nil {
		s.opt.Notifier = notify.New(rdb, nil)
	}
	s.logger = s.opt.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("component", "scores")
	return s
}

// Register registers the score.submitted handler on mux.
func (s *Scores) Register(mux *worker.Mux) { mux.HandleFunc(Type, s.handle) }

// Channel is the channel rank.changed notifications are published on.
func (s *Scores) Channel() string { return s.opt.Prefix + "rank.changed" }

// Today is today's board.
func (s *Scores) Today() *leaderboard.Board { return s.Day(s.opt.Now()) }

// Day is the board of the UTC day containing t.
func (s *Scores) Day(t time.Time) *leaderboard.Board {
	return leaderboard.NewPeriodic(s.rdb, s.opt.Prefix+"leaderboard", leaderboard.Daily, t.UTC(), s.opt.Retain, leaderboard.WithClock(s.opt.Now))
}

// PublishFailures is how many rank.changed notifications could not be sent.
func (s *Scores) PublishFailures() uint64 { return s.pubFailed.Load() }

func (s *Scores) handle(ctx context.Context, m *worker.Message) error {
	var sub Submission
	if err := json.Unmarshal(m.Data, &sub); err != nil {
		return worker.Permanent(fmt.Errorf("decoding score: %w", err))
	}
	if sub.User == "" || sub.Points <= 0 {
		return worker.Permanent(fmt.Errorf("invalid score: user %q, points %v (want a user and positive points)", sub.User, sub.Points))
	}
	board := s.Today()
	if !sub.At.IsZero() {
		if now := s.opt.Now(); sub.At.After(now.Add(MaxSkew)) {
			return worker.Permanent(fmt.Errorf("invalid score: at %s is more than %s after now (%s)",
				sub.At.Format(time.RFC3339), MaxSkew, now.Format(time.RFC3339)))
		}
		board = s.Day(sub.At)
	}
	before, err := board.Rank(ctx, sub.User)
	if err != nil && !errors.Is(err, leaderboard.ErrNotFound) {
		return fmt.Errorf("reading rank: %w", err)
	}
	if _, err := board.Incr(ctx, sub.User, sub.Points); errors.Is(err, leaderboard.ErrExpired) {
		return worker.Permanent(fmt.Errorf("score of %q too late for its day (retained %s): %w", sub.User, s.opt.Retain, err))
	} else if err != nil {
		return fmt.Errorf("adding score: %w", err) // nothing written: retrying is safe
	}
	// From here the score counts: nothing below returns an error, or a retry
	// would add it twice.
	after, err := board.Rank(ctx, sub.User)
	if err != nil {
		s.logger.Warn("score added; rank not read, no rank.changed sent", "user", sub.User, "error", err)
		s.pubFailed.Add(1)
		return nil
	}
	if after.Rank == before.Rank {
		return nil
	}
	ev := RankChanged{Board: board.Key(), User: sub.User, OldRank: before.Rank, NewRank: after.Rank, Score: after.Score}
	if _, err := s.opt.Notifier.Publish(ctx, s.Channel(), ev); err != nil {
		s.pubFailed.Add(1)
		s.logger.Warn("score added; rank.changed not published", "user", sub.User, "error", err)
	}
	return nil
}

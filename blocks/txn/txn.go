// Package txn runs optimistic transactions on Redis: WATCH the keys, read
// them, decide, and write with MULTI/EXEC, which Redis refuses if a watched
// key changed meanwhile; then read again and retry, a bounded number of
// times with jittered backoff.
//
// It owns the traps of hand-written WATCH loops: retrying forever (or not at
// all) on conflict, retrying in lockstep with the other losers, and telling
// apart the three ways a transaction ends without writing — the caller's
// business rule refused it (ErrRefused: retrying cannot help), every
// attempt lost a conflict (ErrTooManyConflicts: retrying later may), or
// Redis failed. On Redis Cluster every key of a transaction must be in one
// hash slot; Run checks the watched ones (give them one hash tag with
// keys.Tag) so a single-node test finds what only a cluster would.
package txn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
)

var (
	// ErrTooManyConflicts is returned by Run when every attempt found a
	// watched key changed by another client. Nothing was written; the
	// contention may pass, so retrying later can succeed.
	ErrTooManyConflicts = errors.New("txn: too many conflicts")
	// ErrRefused matches the errors made by Refuse: the transaction's own
	// rule declined it. Nothing was written and retrying cannot help.
	ErrRefused = errors.New("txn: refused")
)

// Refuse marks reason as a business-rule refusal: return it from a
// transaction function and Run returns it at once, without retrying or
// writing. The result matches both ErrRefused and reason with errors.Is.
func Refuse(reason error) error {
	return &refusal{reason: reason}
}

type refusal struct{ reason error }

func (r *refusal) Error() string {
	if r.reason == nil {
		return ErrRefused.Error()
	}
	return ErrRefused.Error() + ": " + r.reason.Error()
}

func (r *refusal) Unwrap() []error {
	if r.reason == nil {
		return []error{ErrRefused}
	}
	return []error{ErrRefused, r.reason}
}

// Options tunes a Runner.
type Options struct {
	// MaxAttempts is how many times the function runs before Run gives up
	// with ErrTooManyConflicts. Default: 10.
	MaxAttempts int
	// MinBackoff is the longest first wait after a conflict; each further
	// conflict doubles it, up to MaxBackoff. Each wait is drawn at random
	// below its bound (full jitter), so the losers of one conflict do not
	// collide again. Default: 1ms.
	MinBackoff time.Duration
	// MaxBackoff caps the wait after a conflict. Default: 100ms.
	MaxBackoff time.Duration
}

func (o *Options) init() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 100 * time.Millisecond
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
}

// Runner runs optimistic transactions on one Redis (a single node,
// Sentinel or Cluster).
type Runner struct {
	rdb redis.UniversalClient
	opt Options
}

// New returns a Runner on rdb; opt may be nil for the defaults.
func New(rdb redis.UniversalClient, opt *Options) *Runner {
	r := &Runner{rdb: rdb}
	if opt != nil {
		r.opt = *opt
	}
	r.opt.init()
	return r
}

// Run watches the watched keys and calls fn, as rdb.Watch does, until fn's writes
// commit: fn reads through tx, decides, and writes with tx.TxPipelined,
// whose EXEC fails with redis.TxFailedErr if a watched key changed since
// the WATCH. Run then waits a jittered backoff and calls fn again, up to
// MaxAttempts times; fn must therefore have no effect outside tx.
//
// Run returns nil once the writes committed (or fn returned nil without
// writing); fn's error as it is, without retrying, when it is not a
// conflict — use Refuse for a business rule's refusal; an error matching
// ErrTooManyConflicts when the attempts ran out; and an error matching
// keys.ErrCrossSlot, before touching Redis, when they span hash slots.
// Keys that fn writes but does not watch must share the slot too.
func (r *Runner) Run(ctx context.Context, fn func(tx *redis.Tx) error, watched ...string) error {
	if len(watched) == 0 {
		return errors.New("txn: no keys to watch")
	}
	if err := keys.SameSlot(watched...); err != nil {
		return fmt.Errorf("txn: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err := r.rdb.Watch(ctx, fn, watched...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
		if attempt == r.opt.MaxAttempts {
			return fmt.Errorf("%w: %d attempts on %q", ErrTooManyConflicts, attempt, watched)
		}
		t := time.NewTimer(r.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("txn: after %d conflicts on %q: %w", attempt, watched, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff is the wait after the n-th conflict: uniform in [0, min·2^(n-1)],
// the bound capped at MaxBackoff.
func (r *Runner) backoff(n int) time.Duration {
	bound := r.opt.MaxBackoff
	if n < 32 && r.opt.MinBackoff<<(n-1) < bound {
		bound = r.opt.MinBackoff << (n - 1)
	}
	return rand.N(bound + 1)
}

// Package ratelimitmw is worker middleware that holds messages to a rate
// limit: a message over its limit is delayed — rescheduled at the
// limiter's retry-after, with worker.Delay (waiting in the worker, its entry
// pending, when that is within WORKER_RETRY_IN_PLACE_MAX; else as a copy in
// the stream's :delayed set) — instead of failed. A failure would burn one of its attempts per turn away and
// dead-letter a message whose only fault is arriving in a busy second;
// sleeping in the handler would hold a handler slot and the message's lease.
//
// It lives with the handlers, apart from the ratelimit building block
// (blocks/ratelimit), because it wraps worker.Handler: the limiters depend on
// go-redis only.
package ratelimitmw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/streamworker/streamworker/blocks/ratelimit"
	"github.com/streamworker/streamworker/worker"
)

// Options configure the middleware.
type Options struct {
	// Key names the limit a message counts against. Default: its type, so
	// the limit is shared by every worker handling that type.
	Key func(m *worker.Message) string
	// FailOpen runs the handler when the limiter cannot answer (Redis is
	// unreachable). Default: false: the limiter's error is returned, and
	// the runtime retries the message with backoff.
	FailOpen bool
}

// New returns middleware that admits each message through limiter under
// limit. A message over the limit returns worker.Delay(retryAfter + jitter):
// it runs again then at the same attempt, waiting in place or as a copy in
// the :delayed set (worker.Delay). Up to a tenth of the retry-after is added at random, so messages
// turned away together do not all come back together. opt may be nil.
func New(limiter ratelimit.Limiter, limit ratelimit.Limit, opt *Options) worker.Middleware {
	var o Options
	if opt != nil {
		o = *opt
	}
	if o.Key == nil {
		o.Key = func(m *worker.Message) string { return m.Type }
	}
	return func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
			key := o.Key(m)
			res, err := limiter.AllowN(ctx, key, limit, 1)
			if err != nil {
				if o.FailOpen {
					return next.HandleMessage(ctx, m)
				}
				return fmt.Errorf("rate limit %q: %w", key, err)
			}
			if !res.Allowed {
				wait := res.RetryAfter + rand.N(res.RetryAfter/10+time.Millisecond)
				return worker.Delay(wait, &LimitedError{Key: key, Limit: limit, RetryAfter: res.RetryAfter})
			}
			return next.HandleMessage(ctx, m)
		})
	}
}

// LimitedError is the reason given to worker.Delay for a message over its
// limit; errors.As finds it in the error the handler chain returns.
type LimitedError struct {
	Key        string
	Limit      ratelimit.Limit
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("rate limit %q (%s) reached; retry after %s", e.Key, e.Limit, e.RetryAfter.Round(time.Millisecond))
}

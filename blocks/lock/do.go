package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Do obtains the lock named key for ttl (retrying as opt says), runs fn
// under it and releases it when fn returns. While fn runs the lock is
// refreshed every ttl/3, so fn may take longer than ttl; a short ttl only
// bounds how long others wait after this process dies.
//
// If the lock is lost while fn runs — another holder has it, or refreshes
// failed until it could expire — fn's context is cancelled with cause
// ErrLost, before the lock's expiry when Redis is unreachable, and Do's
// error matches ErrLost even if fn returned nil: work that needed the lock
// did not have it throughout. fn should pass its context to everything it
// does and write to the protected resource with lk.Fence().
//
// Do returns fn's error, joined with ErrLost or a failure to release.
func (l *Locker) Do(ctx context.Context, key string, ttl time.Duration, opt *Options,
	fn func(ctx context.Context, lk *Lock) error,
) error {
	lk, err := l.Obtain(ctx, key, ttl, opt)
	if err != nil {
		return err
	}
	fnCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		lk.keepAlive(ctx, ttl, stop, cancel)
	}()
	fnErr := fn(fnCtx, lk)
	close(stop)
	<-stopped

	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
	defer relCancel()
	relErr := lk.Release(relCtx)
	if cause := context.Cause(fnCtx); errors.Is(cause, ErrLost) {
		return errors.Join(fnErr, cause)
	}
	if errors.Is(relErr, ErrNotHeld) {
		// Expired between the last refresh and fn's return.
		return errors.Join(fnErr, fmt.Errorf("%w: %w", ErrLost, relErr))
	}
	return errors.Join(fnErr, relErr)
}

// keepAlive refreshes the lock every ttl/3 until stop closes, and calls lost
// when the lock is gone or cannot be refreshed before it may expire.
func (lk *Lock) keepAlive(ctx context.Context, ttl time.Duration, stop <-chan struct{}, lost context.CancelCauseFunc) {
	interval := max(ttl/3, time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// Refresh even when ctx ends: fn still runs until it returns, and
		// holds the lock until then.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), interval)
		err := lk.Refresh(rctx, ttl)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, ErrNotHeld):
			lost(fmt.Errorf("%w: %w", ErrLost, err))
			return
		case time.Now().Add(interval).After(lk.heldUntil()):
			// No further chance to refresh before the lock may expire:
			// stop fn while the lock still holds.
			lost(fmt.Errorf("%w: %q may expire before it can be refreshed: %w", ErrLost, lk.key, err))
			return
		}
	}
}

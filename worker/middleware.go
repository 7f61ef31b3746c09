package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// PanicError is a handler panic turned into an error; it carries the stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack) }

// Recover turns a panic in the wrapped handler into a *PanicError, so that a
// panicking message is retried and dead-lettered like any failure instead of
// killing the process.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next.HandleMessage(ctx, m)
		})
	}
}

// Timeout bounds each call with a context deadline. A handler that returns an
// error after the deadline gets an error that says so.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next.HandleMessage(ctx, m)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("handler timed out after %s: %w", d, err)
			}
			return err
		})
	}
}

// Logging logs each message at debug level: its ID, type, attempt, duration
// and error. Payload bytes are never logged.
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			if !logger.Enabled(ctx, slog.LevelDebug) {
				return next.HandleMessage(ctx, m)
			}
			start := time.Now()
			err := next.HandleMessage(ctx, m)
			logger.LogAttrs(ctx, slog.LevelDebug, "handled message",
				slog.String("stream", m.Stream), slog.String("id", m.ID), slog.String("type", shownType(m.Type)),
				slog.Int("attempt", m.Attempt), slog.Duration("duration", time.Since(start)),
				slog.Any("error", err))
			return err
		})
	}
}

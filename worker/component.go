package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// component is one of the runtime's background loops: the ack flusher, the
// lease loop, a fetcher, the partitions, the reclaimer, the suspects' loop
// and the promoter. Run works until ctx ends and returns once it has
// stopped.
type component interface {
	Run(ctx context.Context) error
}

// componentFunc makes a loop of the runtime a component.
type componentFunc func(ctx context.Context) error

func (f componentFunc) Run(ctx context.Context) error { return f(ctx) }

// started is a group of components, each on a goroutine of its own, stopped
// together.
type started struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start runs each of cs on a goroutine of its own until parent ends or stop
// is called. A component that fails has its error logged; the others go on.
func start(parent context.Context, logger *slog.Logger, cs ...component) *started {
	ctx, cancel := context.WithCancel(parent)
	s := &started{cancel: cancel}
	for _, c := range cs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("background loop failed", "error", err)
			}
		}()
	}
	return s
}

// stop ends the components' context and waits until every one has returned.
// It is safe to call twice.
func (s *started) stop() {
	s.cancel()
	s.wg.Wait()
}

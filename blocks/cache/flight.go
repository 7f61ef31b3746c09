package cache

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// flight runs one load per key at a time in this process, as
// golang.org/x/sync/singleflight does, but aware of contexts: the load runs
// in a goroutine of its own with a context that keeps the first caller's
// values and ends only when every caller waiting for it has left (or the
// cache closes). So each caller can stop waiting when its own context ends,
// and one impatient caller does not fail everyone else's load.
type flight struct {
	base   context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	calls  map[string]*call
	closed bool
}

type call struct {
	done    chan struct{}
	val     []byte
	err     error
	waiters int
	cancel  context.CancelFunc
}

func newFlight() *flight {
	base, cancel := context.WithCancel(context.Background())
	return &flight{base: base, cancel: cancel, calls: make(map[string]*call)}
}

// do returns the result of fn for key, running fn unless a call for key is
// in flight already, and each caller gets its own copy of the bytes.
func (f *flight) do(ctx context.Context, key string, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, ErrClosed
	}
	c := f.calls[key]
	if c == nil {
		c = f.launch(ctx, key, 0, fn)
	}
	c.waiters++
	f.mu.Unlock()

	select {
	case <-c.done:
		return bytes.Clone(c.val), c.err
	case <-ctx.Done():
		f.mu.Lock()
		if c.waiters--; c.waiters == 0 {
			// Nobody wants the result any more: stop the load, and let
			// the next caller start a fresh one instead of joining it.
			if f.calls[key] == c {
				delete(f.calls, key)
			}
			c.cancel()
		}
		f.mu.Unlock()
		return nil, ctx.Err()
	}
}

// start runs fn for key in the background, bounded by timeout, unless a
// call for key is in flight already.
func (f *flight) start(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) ([]byte, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.calls[key] != nil {
		return
	}
	c := f.launch(ctx, key, timeout, fn)
	c.waiters++ // never leaves: only the timeout or close ends it
}

// launch starts fn for key; f.mu is held.
func (f *flight) launch(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) ([]byte, error)) *call {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if timeout > 0 {
		var cancelTimeout context.CancelFunc
		lctx, cancelTimeout = context.WithTimeout(lctx, timeout)
		cancelBoth := cancel
		cancel = func() { cancelTimeout(); cancelBoth() }
	}
	stop := context.AfterFunc(f.base, cancel)
	c := &call{done: make(chan struct{}), cancel: cancel}
	f.calls[key] = c
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		c.val, c.err = protect(lctx, fn)
		stop()
		cancel()
		f.mu.Lock()
		if f.calls[key] == c {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		close(c.done)
	}()
	return c
}

// protect runs fn, turning a panic into an error: fn runs on a goroutine of
// the cache's, where no caller's recover could catch it.
func protect(ctx context.Context, fn func(context.Context) ([]byte, error)) (val []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cache: load panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx)
}

func (f *flight) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

// waiters is how many callers wait for key's call; for tests.
func (f *flight) waiters(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.calls[key]; c != nil {
		return c.waiters
	}
	return 0
}

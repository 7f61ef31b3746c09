package worker

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// liveness tracks the runtime's loops for /healthz: each loop beats at least
// every few seconds while it runs; one that stops beating is stuck.
type liveness struct {
	mu    sync.Mutex
	beats map[string]*beat
}

// beat is one loop's heartbeat.
type beat struct{ last atomic.Int64 }

// beat records that the loop is alive now.
func (b *beat) beat() { b.last.Store(time.Now().UnixNano()) }

// newLiveness returns an empty liveness.
func newLiveness() *liveness { return &liveness{beats: map[string]*beat{}} }

// Register adds a loop, alive from now on.
func (l *liveness) Register(name string) *beat {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &beat{}
	b.beat()
	l.beats[name] = b
	return b
}

// Check returns an error naming every loop silent for longer than stale.
func (l *liveness) Check(stale time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var stuck []string
	now := time.Now()
	for name, b := range l.beats {
		if age := now.Sub(time.Unix(0, b.last.Load())); age > stale {
			stuck = append(stuck, fmt.Sprintf("%s (silent %s)", name, age.Round(time.Second)))
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("stuck loops: %s", strings.Join(stuck, ", "))
}

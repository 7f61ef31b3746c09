package worker

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Liveness tracks the runtime's loops for /healthz: each loop beats at least
// every few seconds while it runs; one that stops beating is stuck.
type Liveness struct {
	mu    sync.Mutex
	beats map[string]*Beat
}

// Beat is one loop's heartbeat.
type Beat struct{ last atomic.Int64 }

// Beat records that the loop is alive now.
func (b *Beat) Beat() { b.last.Store(time.Now().UnixNano()) }

// NewLiveness returns an empty Liveness.
func NewLiveness() *Liveness { return &Liveness{beats: map[string]*Beat{}} }

// Register adds a loop, alive from now on.
func (l *Liveness) Register(name string) *Beat {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &Beat{}
	b.Beat()
	l.beats[name] = b
	return b
}

// Check returns an error naming every loop silent for longer than stale.
func (l *Liveness) Check(stale time.Duration) error {
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

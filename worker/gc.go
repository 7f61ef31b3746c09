package worker

import (
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector target the daemon runs with when
// neither GOGC nor GOMEMLIMIT is set. A worker's live heap is a few
// megabytes (the messages in flight), so at Go's default of 100 it collects
// every few megabytes of allocation: hundreds of times a second at full
// speed, which profiles show as the largest cost per message after the
// protocol itself. 400 collects a quarter as often for a few more megabytes
// of memory (the heap grows to five times the live heap instead of twice).
const DefaultGCPercent = 400

// SetGCDefault sets the garbage collector target to DefaultGCPercent unless
// the environment (GOGC or GOMEMLIMIT, read through getenv) already says how
// to collect, and returns the target in effect. Main calls it; a program
// that embeds the runtime may, as it affects the whole process.
func SetGCDefault(getenv func(string) string) int {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return gcPercent()
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}

// gcPercent is the garbage collector target in effect (-1: off).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

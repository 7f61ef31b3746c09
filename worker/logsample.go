package worker

import (
	"sync"
	"time"
)

// Failures are logged a few a second of each kind, not one line each. When
// a dependency goes down every message fails, and a line per failure is
// thousands of lines a second: the log pipeline's load at the worst time,
// and, formatted as JSON, about a third of what the worker spends on a
// failure. The first failLogBurst lines a second of each stream (each
// partition of a partitioned one), type label and outcome are logged; the
// others are counted, and the next line logged of that kind says how many
// were left out (not_logged). Those left out in a kind's last busy second
// are not told of until it fails again: streamworker_messages_total counts
// every one, and the dead-letter stream holds every dead letter.
const (
	failLogBurst = 10
	failLogEvery = time.Second
)

// logSampler lets through the first burst lines of each kind in each
// window of every, and counts the rest.
type logSampler struct {
	burst int
	every time.Duration
	label func(typ string) string // the metrics' type label: producers' types do not grow the map
	now   func() time.Time

	mu    sync.Mutex
	kinds map[labelKey]*logWindow
}

type logWindow struct {
	start   time.Time // when the window began
	logged  int       // lines let through in it
	skipped int       // lines left out since the last one let through
}

func newLogSampler(label func(string) string) *logSampler {
	return &logSampler{burst: failLogBurst, every: failLogEvery, label: label, now: time.Now, kinds: map[labelKey]*logWindow{}}
}

// allow reports whether a line about a message of stream and typ with
// outcome is to be logged, and, when it is, how many lines of its kind were
// left out before it.
func (s *logSampler) allow(stream, typ, outcome string) (ok bool, skipped int) {
	k := labelKey{stream, s.label(typ), outcome}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now() // under the lock: a time read before it could be older than a window another caller started
	w := s.kinds[k]
	if w == nil {
		if len(s.kinds) >= maxCachedLabels { // streams come from the callers of Handle too
			return true, 0
		}
		w = &logWindow{start: now}
		s.kinds[k] = w
	}
	if d := now.Sub(w.start); d >= s.every || d < 0 {
		w.start, w.logged = now, 0
	}
	if w.logged >= s.burst {
		w.skipped++
		return false, 0
	}
	w.logged++
	skipped, w.skipped = w.skipped, 0
	return true, skipped
}

// notLogged is the attributes that say how many lines were left out before
// this one: none when none were.
func notLogged(skipped int, attrs ...any) []any {
	if skipped > 0 {
		attrs = append(attrs, "not_logged", skipped)
	}
	return attrs
}

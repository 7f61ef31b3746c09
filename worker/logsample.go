package worker

import (
	"context"
	"log/slog"
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
// were left out (not_logged); when none comes by the end of the second, a
// line of its own does (failures not logged), and at shutdown every count
// still untold is. streamworker_messages_total counts every one, and the
// dead-letter stream holds every dead letter.
const (
	failLogBurst = 10
	failLogEvery = time.Second
)

// logSampler lets through the first burst lines of each kind in each
// window of every, and counts the rest.
type logSampler struct {
	burst  int
	every  time.Duration
	label  func(typ string) string // the metrics' type label: producers' types do not grow the map
	report func(k labelKey, n int) // logs that n lines of kind k were left out, when no line of the kind said so
	now    func() time.Time

	mu      sync.Mutex
	kinds   map[labelKey]*logWindow
	timer   *time.Timer // calls flush when a window with lines left out ends
	armed   bool        // timer is set
	due     time.Time   // for when, on the clock of now
	stopped bool
}

type logWindow struct {
	start   time.Time // when the window began
	logged  int       // lines let through in it
	skipped int       // lines left out since the last one let through
}

func newLogSampler(label func(string) string, report func(k labelKey, n int)) *logSampler {
	s := &logSampler{burst: failLogBurst, every: failLogEvery, label: label, report: report, now: time.Now, kinds: map[labelKey]*logWindow{}}
	s.timer = time.AfterFunc(time.Hour, s.flush)
	s.timer.Stop()
	return s
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
		if end := w.start.Add(s.every); !s.stopped && (!s.armed || end.Before(s.due)) {
			s.armed, s.due = true, end
			s.timer.Reset(end.Sub(now))
		}
		return false, 0
	}
	w.logged++
	skipped, w.skipped = w.skipped, 0
	return true, skipped
}

// flush reports the lines left out of the windows that have ended, unless a
// line of their kind has, and sets the timer for the next such window to
// end.
func (s *logSampler) flush() { s.tell(false) }

// stop reports every count of lines left out still untold, and lets no
// timer fire again. The runtime calls it once no failure can come.
func (s *logSampler) stop() { s.tell(true) }

// tell reports the counts of lines left out of the windows that have ended
// (all of them when stopping) and sets the timer for the next.
func (s *logSampler) tell(stopping bool) {
	type told struct {
		k labelKey
		n int
	}
	var out []told
	s.mu.Lock()
	if s.stopped { // stop has told every count: a timer that fired as it ran has nothing to do
		s.mu.Unlock()
		return
	}
	if stopping {
		s.stopped = true
		s.timer.Stop()
	}
	now := s.now()
	next := time.Duration(-1)
	for k, w := range s.kinds {
		if w.skipped == 0 {
			continue
		}
		if d := w.start.Add(s.every).Sub(now); d > 0 && !stopping {
			if next < 0 || d < next {
				next = d
			}
			continue
		}
		out = append(out, told{k, w.skipped})
		w.skipped = 0
	}
	s.armed = next >= 0 && !s.stopped
	if s.armed {
		s.due = now.Add(next)
		s.timer.Reset(next)
	}
	s.mu.Unlock()
	for _, t := range out {
		s.report(t.k, t.n)
	}
}

// notLogged is the attributes that say how many lines were left out before
// this one: none when none were.
func notLogged(skipped int, attrs ...any) []any {
	if skipped > 0 {
		attrs = append(attrs, "not_logged", skipped)
	}
	return attrs
}

// failuresNotLogged logs that n failure lines of kind k were left out: at
// the level of the lines it stands for.
func (r *engine) failuresNotLogged(k labelKey, n int) {
	level := slog.LevelInfo
	if k.outcome == OutcomeDead {
		level = slog.LevelWarn
	}
	r.logger.Log(context.Background(), level, "failures not logged", "stream", k.stream, "type", k.typ, "outcome", k.outcome, "not_logged", n)
}

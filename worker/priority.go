package worker

import (
	"slices"
	"time"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// Priorities across streams (WORKER_STREAMS weights, WORKER_PRIORITY). When
// handler slots are contended, the semaphore asks the priorities which
// waiting fetcher is served next:
//
//   - weighted: the stream whose slots granted so far, divided by its
//     weight, are the fewest (start-time fair queuing on slot counts). Over
//     a run with every stream backlogged each stream's share of the slots
//     follows its weight; a stream behind its share — one that was between
//     reads when slots came free — is served first once it asks again, so it
//     catches up. A stream that had nothing to read starts again level with
//     the streams that had (its count is raised to theirs), so an idle
//     stream neither reserves slots nor saves up credit. Every stream with
//     work waiting gets its share: none starves. Free slots are held for a
//     stream behind its share while its read is on its way (up to holdFor),
//     else a stream read in large batches would get slots only in the
//     moments it waits for them.
//   - strict: the stream of the highest weight (equal weights in the order
//     of WORKER_STREAMS) that asks; and while a higher stream has entries to
//     read (its last read was full), no lower stream is served at all, even
//     while that stream's read is on its way (up to strictHoldFor: a read
//     that waits in Redis because other workers drained the stream lets the
//     lower streams go on).
//
// The reclaimer, the suspects' loop and a partition's take-over are served
// before any stream: their work is already pending, bounded, and must not
// wait behind a backlog. Without weights (and WORKER_PRIORITY weighted) the
// semaphore has no priorities and serves waiters first come, first served,
// with no cost of this file on the path.
//
// The partitions of a logical stream share its class: the weight is the
// logical stream's, whichever partitions this worker reads.
type priorities struct {
	classes []*slotClass
	strict  bool
	now     func() time.Time
}

// holdFor bounds how long free slots are held for a stream whose read is on
// its way: weighted, about a loaded round trip; strict, longer, since
// serving a lower stream then is what strict order rules out. A read that
// waits in Redis (the stream was drained by other workers meanwhile) must
// not keep the other streams from slots for a whole block period.
const (
	holdFor       = 20 * time.Millisecond
	strictHoldFor = 250 * time.Millisecond
)

// slotClass is one logical stream's standing with the priorities. Every
// field but name, weight and rank is guarded by the semaphore's mutex.
type slotClass struct {
	name   string  // the WORKER_STREAMS entry
	weight float64 // at least 1
	rank   int     // strict order: 0 is served first

	pass       float64   // slots granted / weight, raised when the class wakes from idle
	waiting    int       // its fetchers waiting for slots
	backlogged int       // its fetchers whose last read was full
	granted    time.Time // when it was last granted slots (its read was sent then)
}

// newPriorities builds the priorities of cfg and the class of each stream
// key read (a partition's is its logical stream's), or nil when cfg has none.
func newPriorities(cfg config.Config) (*priorities, map[string]*slotClass) {
	if !cfg.Prioritised() {
		return nil, nil
	}
	p := &priorities{strict: cfg.Priority == config.PriorityStrict, now: time.Now}
	byKey := map[string]*slotClass{}
	for _, s := range cfg.Streams {
		c := &slotClass{name: s, weight: float64(cfg.Weight(s))}
		p.classes = append(p.classes, c)
		if cfg.Partitions > 1 {
			for _, k := range wire.PartitionStreams(s, cfg.Partitions) {
				byKey[k] = c
			}
		} else {
			byKey[s] = c
		}
	}
	ranked := slices.Clone(p.classes)
	slices.SortStableFunc(ranked, func(a, b *slotClass) int { return int(b.weight - a.weight) })
	for i, c := range ranked {
		c.rank = i
	}
	return p, byKey
}

func (c *slotClass) active() bool { return c.waiting > 0 || c.backlogged > 0 }

// activate raises the pass of c, about to ask for slots or found backlogged,
// to the lowest of the active classes when c was idle: credit is not saved
// up while a stream has nothing to read.
func (p *priorities) activate(c *slotClass) {
	if c == nil || c.active() {
		return
	}
	low, found := 0.0, false
	for _, o := range p.classes {
		if o != c && o.active() && (!found || o.pass < low) {
			low, found = o.pass, true
		}
	}
	if found && low > c.pass {
		c.pass = low
	}
}

// grant charges n slots to c.
func (p *priorities) grant(c *slotClass, n int) {
	if c != nil {
		c.pass += float64(n) / c.weight
		c.granted = p.now()
	}
}

// mayTake reports whether c may take free slots now, ahead of the streams
// not waiting for slots because their read is on its way: not while such a
// stream has entries to read and is, with strict priority, higher, or,
// weighted, behind c in its share. Slots held so are taken as soon as that
// read is handed out, a round trip later; without the hold a stream would
// get slots only while it waits, which a stream read in large batches does
// a small part of the time.
func (p *priorities) mayTake(c *slotClass) bool {
	return p.heldFor(c) == 0
}

// heldFor is how much longer the slots are held back from c for another
// stream (0: not held).
func (p *priorities) heldFor(c *slotClass) time.Duration {
	if c == nil {
		return 0
	}
	var now time.Time
	var left time.Duration
	for _, o := range p.classes {
		if o == c || o.backlogged == 0 || o.waiting > 0 {
			continue
		}
		if p.strict && o.rank < c.rank || !p.strict && o.pass < c.pass {
			if now.IsZero() {
				now = p.now()
			}
			hold := holdFor
			if p.strict {
				hold = strictHoldFor
			}
			if d := o.granted.Add(hold).Sub(now); d > left {
				left = d
			}
		}
	}
	return left
}

// pick returns the index of the waiter served next, or -1 when the slots are
// held for another stream's read on its way (mayTake).
func (p *priorities) pick(ws []*slotWaiter) int {
	best := p.bestIndex(ws)
	if best < 0 || ws[best].class != nil && !p.mayTake(ws[best].class) {
		return -1
	}
	return best
}

// best is the class of the waiter pick would serve but for holds.
func (p *priorities) best(ws []*slotWaiter) *slotClass {
	if i := p.bestIndex(ws); i >= 0 {
		return ws[i].class
	}
	return nil
}

func (p *priorities) bestIndex(ws []*slotWaiter) int {
	best := -1
	for i, w := range ws {
		if w.class == nil {
			return i
		}
		if best < 0 {
			best = i
			continue
		}
		b := ws[best].class
		if p.strict && w.class.rank < b.rank || !p.strict && w.class.pass < b.pass {
			best = i
		}
	}
	return best
}

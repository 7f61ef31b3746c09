package worker

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A quiet stream's messages, and a busy one's fast handlers, run on its
// fetcher.
//
// At low load a read brings one message, or a few, at a time. Handed to
// the handler goroutines, they woke a goroutine, and often a thread for it,
// per read, and their acknowledgements took a round trip of their own (the
// ack loop's): on two cores the runtime's CPU per message was 1.6× a loop
// that reads, handles and acknowledges in turn (bench: the latency phase).
// So when a read drained the stream with at most loneMost messages and no
// handler is behind on others, the fetcher runs them itself, one after
// another, on a worker state of its own, and their acknowledgements go with
// its next read, in one pipeline (readAcking). These are the lone messages.
//
// A busy stream's full reads go the same way when their handlers are fast:
// expected to take at most half as long as the read that brought them, and
// at most batchMost (fastBatch). Handed over, a batch of handlers of a
// microsecond cost more in wake-ups, the ack loop's round trips and a
// second core than the handlers themselves. Slower handlers keep running
// side by side on the handler goroutines. To measure them, a probe runs a
// read's first loneMost on the fetcher and hands the rest over, at the
// start and every batchProbeEvery while they are found too slow.
//
// A handler that turns out slow must not hold the stream's reads up: once
// a read's lone messages have run for inlineFor, the hatch hands those not
// started yet to the handler goroutines, the acknowledgements held of those
// that succeeded to the ack loop, and moves the fetch loop to a new
// goroutine; the one running the handler ends once the handler is done.
// The fetcher's worker state is busy meanwhile, and reads go through the
// handler goroutines until it is free again. A lone message is on a
// worker state like any running message (engine.workers): its lease is
// renewed, and shutdown hands it over at the deadline and waits for it
// (engine.lone).
//
// The hatch's timer is not set per read: setting a timer due sooner than
// every other one wakes the thread that sleeps in the network poller (or
// starts one), about as dear as the hand-off saved; so does each firing.
// Once set, it fires every inlineFor while lone messages come, and rests
// after idleChecks firings that found none had run. A handler that turned
// out slow is likely to be slow again: for loneOff after a hatch, the
// fetcher runs none, and a slow handler holds the stream's reads up for
// inlineFor at most once in that time. Each hatch that follows another,
// with no lone run finished within inlineFor between them, doubles that
// time, up to loneOffMost: a stream whose handlers all turned slow is held
// up for inlineFor once a minute, not once a second.
//
// A stream with priorities runs none this way: it shares its slots with
// the others by the order reads are made. Each of a stream's two fetchers
// (fetchLoop) has an inliner and a worker state of its own, and so does a
// partition's fetcher.
//
// On a partition with per-key order (ordered.go), a read's messages pass
// the key's order gate first, as they do to the handler goroutines: the
// fetcher runs the first of each key, and after each the next of its key
// (chain), which goes to the end of the lone messages, so the hatch hands
// it over with them. A message that fails and is retried in place is not
// waited for here: its wait and its retry go to a handler goroutine on its
// slot (Message.retryDue), and its key's later messages wait behind it
// there. A partition given up and taken again gets a new fetch loop while a
// handler the hatch left running may still run on its worker state: that
// loop runs no lone message until it is done (workerState.lone).

// inlineFor is how long a read's lone messages run on the fetcher before
// the fetch loop moves to a new goroutine: the most a message waits unread,
// or unstarted behind the others of its read, for a handler that turns out
// slow. It is also the hatch's period while lone messages come, and each
// firing costs a thread's wake-up or two: at 5 ms (200 firings a second)
// they were about a tenth of the consumer's CPU at 5,000 msgs/s (bench: the
// latency phase); at 20 ms they fire a quarter as often.
const inlineFor = 20 * time.Millisecond

// idleChecks is how many times in a row the hatch's timer finds that no
// lone message ran since it last fired before it rests.
const idleChecks = 20

// loneOff is how long a fetcher runs no lone message after one turned out
// slow (engine.loneOff); loneOffMost, how long after hatches in a row.
const (
	loneOff     = time.Second
	loneOffMost = time.Minute
)

// loneMost is the most messages a read that drained the stream may bring
// for them to run on the fetcher whatever their handlers' speed: a few that
// came together, not a batch whose last would wait for all the others (a
// batch runs there only when its handlers are measured fast, fastBatch). It
// is also how many of a batch a probe of the handlers runs there.
const loneMost = trickleMost

// The fetch loop's state as the hatch sees it.
const (
	roleFetching int32 = iota // reading, or anything but running lone messages
	roleInline                // running lone messages
	roleHanded                // the hatch moved the fetch loop to a new goroutine
)

// inliner is a fetcher's means to run lone messages.
type inliner struct {
	r       *engine
	w       *workerState // runs the lone messages, one at a time: seen by the leases and the shutdown
	busy    *atomic.Bool // w runs lone messages (workerState.lone): a partition's next fetch loop runs none on w until the last one's are done
	role    atomic.Int32
	base    time.Time     // the zero of started and off: a monotonic reading, a second before the loop began
	started atomic.Int64  // when the lone messages running started, ns since base; 0: none run
	runs    atomic.Uint64 // how many times lone messages started to run
	seen    atomic.Uint64 // runs when the hatch's timer last fired (check)
	idle    atomic.Int32  // how many times in a row the timer found runs unchanged
	off     atomic.Int64  // until when no lone message runs, ns since base; 0: none is off
	offFor  atomic.Int64  // how long the next hatch turns lone messages off, ns; 0: engine.loneOff (hatches in a row double it)
	armed   atomic.Bool   // the hatch's timer is set
	hatch   *time.Timer   // calls check
	over    atomic.Bool   // the fetch loop has ended: the timer is not set again
	ended   chan struct{} // closed when the fetch loop ends
	resume  func()        // runs the fetch loop on the hatch's goroutine
	perMsg  atomic.Int64  // how long a message took to run here, ns: a moving average of the runs; 0 until one ran
	probing bool          // the lone messages are a probe's (fastBatch): set by takeLone once it holds busy, read by runLone before it clears it
	probeAt atomic.Int64  // when a probe (a batch's first loneMost) may next run here, ns since base

	mu   sync.Mutex
	lone []*Message // the lone messages taken; lone[next:] are not started yet
	next int

	// held are the acknowledgements of lone messages that succeeded, to go
	// with the next read, in its round trip (readAcking). While busy is
	// set, the goroutine running lone messages adds to them, and the hatch
	// (handOver) and then that goroutine (flushHeld) take them, all under
	// mu; while it is clear, the fetch loop alone has them.
	held     []ackReq
	args     map[string][]any // the XACK arguments' scratch (flushAcks)
	maxBlock time.Duration    // the longest BLOCK of a read sent with acknowledgements; 0: none is
}

// runInline runs the fetcher's loop for its stream in a way that lets lone
// messages run on it (fetchLoop, for a stream with a worker state of its
// own), and returns once the loop has ended.
func (f *fetcher) runInline(ctx context.Context, w *workerState) {
	in := &inliner{r: f.r, w: w, busy: &w.lone, base: time.Now().Add(-time.Second), ended: make(chan struct{}), args: map[string][]any{}, maxBlock: pipelineBlock(f.r.client, f.r.cfg.Block)}
	in.resume = func() {
		if f.run(ctx) {
			if !in.busy.Load() { // else the goroutine running lone messages sends its own
				f.flushHeld()
			}
			close(in.ended)
		}
	}
	in.hatch = time.AfterFunc(time.Hour, in.check)
	in.hatch.Stop()
	f.in = in
	go in.resume()
	<-in.ended
	in.over.Store(true)
	in.hatch.Stop() // a check running now finds over set, or stops at its next firing
}

// check is the hatch's timer. When a read's lone messages have run for
// inlineFor, those not started yet go to the handler goroutines and the
// fetch loop to a new goroutine (handOver); when they have run for less,
// the timer is set for the rest of their inlineFor. Else it is set for
// another inlineFor, unless no lone message has run for idleChecks
// firings: then it rests until one does (runLone).
func (in *inliner) check() { in.checkAt(time.Now()) }

// checkAt is check at the time now.
func (in *inliner) checkAt(now time.Time) {
	if in.over.Load() {
		return
	}
	runs := in.runs.Load() // before started: a run that starts after is seen by disarm
	if s := in.started.Load(); s != 0 {
		ran := time.Duration(in.since(now) - s)
		if ran < in.period() {
			in.hatch.Reset(in.period() - ran)
			return
		}
		// Unless those lone messages ended meanwhile and the next read's
		// started: theirs have not run for inlineFor.
		if in.started.Load() == s && in.role.CompareAndSwap(roleInline, roleHanded) {
			in.off.Store(in.since(now) + in.turnOff())
			in.handOver()
		}
		in.disarm(runs) // no lone message runs until this one ends
		return
	}
	if in.seen.Swap(runs) != runs {
		in.idle.Store(0)
	} else if in.idle.Add(1) >= idleChecks {
		in.disarm(runs)
		return
	}
	in.hatch.Reset(in.period())
}

// period is inlineFor, or the engine's hatchAt where a test set one.
func (in *inliner) period() time.Duration {
	if d := in.r.hatchAt; d > 0 {
		return d
	}
	return inlineFor
}

// disarm lets the hatch's timer rest, unless lone messages started to run
// since it last looked (runs) and may have found it set.
func (in *inliner) disarm(runs uint64) {
	in.armed.Store(false)
	if in.runs.Load() != runs && in.armed.CompareAndSwap(false, true) {
		in.hatch.Reset(in.period())
	}
}

// turnOff returns how long a hatch turns lone messages off: engine.loneOff,
// doubled for each hatch before it since a lone run last finished within
// inlineFor (runLone), up to loneOffMost (or engine.loneOff when longer).
func (in *inliner) turnOff() int64 {
	d := in.offFor.Load()
	if d == 0 {
		d = int64(in.r.loneOff)
	}
	in.offFor.Store(min(2*d, max(int64(loneOffMost), int64(in.r.loneOff))))
	return d
}

// ranInTime notes that lone messages finished within inlineFor: the next
// hatch turns them off for engine.loneOff again.
func (in *inliner) ranInTime() {
	if in.offFor.Load() != 0 {
		in.offFor.Store(0)
	}
}

// handOver hands the lone messages not started yet to the handler
// goroutines, and the acknowledgements held to the ack loop, and runs the
// fetch loop on a new goroutine. Held until the slow handler returned, the
// acknowledgements would wait where a reclaim cannot see them
// (notAckWaiting), their entries unleased: once idle past the min-idle, a
// reclaimer would run them again.
func (in *inliner) handOver() {
	in.mu.Lock()
	rest := slices.Clone(in.lone[in.next:])
	clear(in.lone[in.next:])
	in.next = len(in.lone)
	acks := slices.Clone(in.held)
	clear(in.held)
	in.held = in.held[:0]
	in.mu.Unlock()
	for _, m := range rest {
		m.held = nil // acknowledged by the ack loop, as the handler goroutines' are
	}
	in.r.jobs.push(rest...)
	go in.resume() // first: it leaves held alone while busy is set, and need not wait for room in the ack loop
	for _, a := range acks {
		in.r.ack(a)
	}
}

// hold keeps the acknowledgement of a lone message that succeeded for the
// next read (held).
func (in *inliner) hold(a ackReq) {
	in.mu.Lock()
	in.held = append(in.held, a)
	in.mu.Unlock()
}

// since is t on the clock of started and off: monotonic, so that a step of
// the wall clock neither holds a slow handler's stream up nor hands a fast
// one over.
func (in *inliner) since(t time.Time) int64 { return int64(t.Sub(in.base)) }

// resting reports whether the fetcher runs no lone message now: one
// turned out slow less than loneOff ago.
func (in *inliner) resting() bool {
	off := in.off.Load()
	if off == 0 {
		return false
	}
	if in.since(time.Now()) < off {
		return true
	}
	in.off.CompareAndSwap(off, 0)
	return false
}

// takeLone reports whether a read's messages to run now, run, are to run
// on the fetcher: the read, of asked entries, brought got and all were
// admitted (handed; on an ordered partition those behind their key's
// running message wait in the order gate, not in run), either draining the
// stream with at most loneMost or as a batch fast enough to (fastBatch),
// and no handler is behind, fewer than WORKER_CONCURRENCY
// handlers run (a message in a read-ahead slot waits for a handler
// goroutine) and the fetcher's worker state is free. It then holds one of
// the WORKER_CONCURRENCY and the worker state, and the shutdown waits for
// it. Not for loneOff after one turned out slow. True means it has taken
// all of run: a probe's (fastBatch) first loneMost run on the fetcher and
// the rest it has pushed to the job queue. False: it pushed none.
func (f *fetcher) takeLone(run []*Message, handed, got, asked int) bool {
	if f.in == nil || len(run) == 0 || handed != got || !f.r.jobs.empty() || f.in.resting() {
		return false
	}
	var rest []*Message // a probe's messages left to the handler goroutines
	probe := false
	if got >= asked || got > loneMost {
		var fast bool
		if fast, probe = f.in.fastBatch(got, f.took); !fast && !probe {
			return false
		}
		if probe && len(run) > loneMost {
			run, rest = run[:loneMost], run[loneMost:]
		}
	}
	if !f.r.running.tryTake() {
		return false
	}
	if !f.in.busy.CompareAndSwap(false, true) {
		f.r.running.give()
		return false
	}
	if probe {
		f.in.probeAt.Store(f.in.since(time.Now()) + int64(batchProbeEvery))
	}
	f.in.probing = probe
	f.r.lone.Add(1)
	for _, m := range run {
		m.held = f.in
	}
	f.in.mu.Lock()
	f.in.lone, f.in.next = append(f.in.lone[:0], run...), 0
	f.in.mu.Unlock()
	f.lone = true
	f.r.jobs.push(rest...)
	return true
}

// fastBatch reports whether a read's n messages, a batch rather than a
// few that drained the stream, are to run on the fetcher (fast): when they
// are expected (perMsg) to take at most half as long as the read that
// brought them took (took), and at most batchMost. Handing a batch of fast
// handlers to the handler goroutines cost more than the handlers: wake-ups
// of goroutines and threads, a round trip of the ack loop, and a second
// core kept busy for work of a few microseconds; run here, their
// acknowledgements go with the next read, in its round trip, as in a loop
// that reads, handles and acknowledges in turn (bench: worker CPU per
// message consuming, 25 to 40% less). Handlers slower than that keep
// running side by side on the handler goroutines, where a read brought in
// meanwhile does not wait for them. Otherwise, until a run has measured
// them and once every batchProbeEvery after, it reports a probe due: the
// batch's first loneMost messages are to run here, to measure them, and
// the rest on the handler goroutines. took is 0 for a read that waited
// (BLOCK), failed, or was not parsed raw (a Redis Cluster's, whose
// acknowledgements cannot go with the next read): no batch of it runs
// here.
func (in *inliner) fastBatch(n int, took time.Duration) (fast, probe bool) {
	if took <= 0 {
		return false, false
	}
	if per := in.perMsg.Load(); per > 0 && n > 0 && per <= min(int64(took)/2, int64(batchMost))/int64(n) {
		return true, false
	}
	return false, in.since(time.Now()) >= in.probeAt.Load()
}

// batchMost is the longest a batch is expected to run on the fetcher: well
// inside inlineFor, so that the hatch hands over only handlers slower than
// they were measured.
const batchMost = inlineFor / 4

// batchProbeEvery is how often a batch's first messages run on the fetcher
// to measure its handlers anew once they were found too slow to (fastBatch).
const batchProbeEvery = time.Second

// measured folds a run of n messages that took d into perMsg: a faster run
// at once, a slower one a quarter of the way, as the hatch hands over
// handlers that turn out slow.
func (in *inliner) measured(n int, d time.Duration) {
	if n <= 0 {
		return
	}
	x := max(int64(d)/int64(n), 1)
	if old := in.perMsg.Load(); old > 0 && x > old {
		x = old + (x-old)/4
	}
	in.perMsg.Store(x)
}

// take takes the next lone message to run, nil when none is left.
func (in *inliner) take() *Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.next == len(in.lone) {
		return nil
	}
	m := in.lone[in.next]
	in.lone[in.next] = nil
	in.next++
	return m
}

// chain adds m, the next message of a key whose last one ran here, to the
// lone messages, or once the hatch moved the fetch loop on, hands it to the
// handler goroutines as it did the lone messages not started.
func (in *inliner) chain(m *Message) {
	in.mu.Lock()
	if in.role.Load() != roleHanded { // set before handOver takes mu: it hands m over with the others
		m.held = in
		in.lone = append(in.lone, m)
		in.mu.Unlock()
		if in.r.chained != nil {
			in.r.chained()
		}
		return
	}
	in.mu.Unlock()
	in.r.jobs.push(m)
}

// runLone runs the lone messages taken, and reports whether this goroutine
// still runs the fetch loop: false when the hatch moved it.
func (f *fetcher) runLone() bool {
	r, in := f.r, f.in
	f.lone = false
	in.role.Store(roleInline)
	in.runs.Add(1) // before armed is read: see disarm
	began := in.since(time.Now())
	in.started.Store(began)
	if !in.armed.Load() && in.armed.CompareAndSwap(false, true) {
		in.hatch.Reset(in.period())
	}
	ran := 0
	for m := in.take(); m != nil; m = in.take() {
		r.process(in.w, m)
		if r.ahead != nil {
			r.ahead.done()
		}
		ran++
		if r.order == nil {
			r.sem.release(1)
			continue
		}
		next, held := r.order.doneInline(m) // ordered.go
		if held {
			m.held, m.retryDue = nil, true // its retry's acknowledgement goes to the ack loop
			r.jobs.push(m)
			continue
		}
		r.sem.release(1)
		switch {
		case next == nil:
		case in.probing:
			r.jobs.push(next) // a probe runs a read's first loneMost here, not their keys' later ones
		default:
			in.chain(next)
		}
	}
	in.started.Store(0)
	in.measured(ran, time.Duration(in.since(time.Now())-began))
	r.running.give()
	// The role first: once busy is clear, the loop's new goroutine may run
	// lone messages of its own, and the role be roleInline again.
	mine := in.role.CompareAndSwap(roleInline, roleFetching)
	if !mine {
		f.flushHeld() // the loop went on without this goroutine
	} else {
		in.ranInTime()
	}
	in.busy.Store(false)
	r.lone.Done()
	return mine
}

// flushHeld queues the held acknowledgements for the ack loop. Only their
// owner calls it (inliner.held): the fetch loop, or the goroutine running
// lone messages when the hatch moved the loop on (under mu, as the hatch
// takes them too).
func (f *fetcher) flushHeld() {
	in := f.in
	if in == nil {
		return
	}
	in.mu.Lock()
	acks := in.held
	in.held = nil
	in.mu.Unlock()
	for _, a := range acks { // outside mu: add waits while the ack loop is full
		f.r.ack(a)
	}
	clear(acks)
	in.mu.Lock()
	if in.held == nil { // the buffer again, for the next ones
		in.held = acks[:0]
	}
	in.mu.Unlock()
}

// releaseHeld hands the held acknowledgements, if the fetch loop holds
// any, to the ack loop: the loop is about to wait, or to read another way.
func (f *fetcher) releaseHeld() {
	if f.holding() {
		f.flushHeld()
	}
}

// holding reports whether the fetch loop holds acknowledgements to send
// with its next read.
func (f *fetcher) holding() bool {
	return f.in != nil && !f.in.busy.Load() && len(f.in.held) > 0
}

// readAcking is read (blocking, or not when block is negative) with the
// held acknowledgements sent first, in one pipeline: a quiet stream's
// message, or a busy stream's batch run on the fetcher, costs one round
// trip, as in a loop that sends each XACK with its next XREADGROUP. When
// the XACKs fail, the acknowledgements go to the ack loop, which retries
// them.
//
// The read's reply is parsed from its raw bytes (xread.go), not by
// go-redis into a map per entry: in a pipeline go-redis gives it the
// client's read timeout, which maxBlock leaves room for, as it does its
// own XReadGroup there. A pipeline holding a raw command is not retried by
// go-redis on a broken connection; the fetch loop retries the read, and
// the ack loop the acknowledgements.
func (f *fetcher) readAcking(ctx context.Context, n int, block time.Duration, sent time.Time) ([]*Message, error) {
	r, in, stream := f.r, f.in, f.s.name
	pipe := r.client.Pipeline()
	cmds := r.queueAcks(ctx, pipe, in.held, in.args)
	// A blocking read is sized for as many entries as the last read
	// brought: a quiet stream's reads bring a few of the n asked for, and a
	// buffer that falls short doubles. One without BLOCK, a busy stream's,
	// for the n asked for, as readNow sizes it.
	size := n
	if block >= 0 {
		size = min(n, max(1, f.last))
	}
	buf := &replyBuf{b: make([]byte, 0, f.sizes.reply(stream, size))}
	read := r.xreadCmd(ctx, buf, stream, n, min(block, in.maxBlock))
	_ = pipe.Process(ctx, read)
	_, _ = pipe.Exec(ctx) // each command's own result is looked at
	if err := r.acked(cmds, in.held, in.args); err != nil {
		r.metrics.redisError(OpAck)
		f.flushHeld()
	} else {
		clear(in.held)
		in.held = in.held[:0]
	}
	if err := read.Err(); err != nil {
		return nil, err
	}
	return parseReply(stream, buf.b, sent, f.types, &f.sizes)
}

// pipelineBlock is the longest BLOCK a read may have in a pipeline on c:
// go-redis gives a pipeline its client's read timeout, not the BLOCK
// added that it gives a blocking command of its own, so the read must
// answer a second inside it. 0 when it cannot (a read timeout of a second
// or less, or a client of Redis Cluster, which reads differently).
func pipelineBlock(c redis.UniversalClient, block time.Duration) time.Duration {
	rc, ok := c.(*redis.Client)
	if !ok {
		return 0
	}
	switch rt := rc.Options().ReadTimeout; {
	case rt <= 0: // no deadline
		return block
	case rt > time.Second:
		return min(block, rt-time.Second)
	default:
		return 0
	}
}

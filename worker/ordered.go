package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/streamworker/streamworker/reclaim"
)

// Per-key order on partitioned streams. A partition is read by one consumer
// at a time (partition.go), so the messages of a key reach one process, in
// stream order. The gate keeps that order through the handler pool: while a
// message of a key runs, the later ones of the key wait here, each on the
// handler slot it was read with, and the handler goroutine that finishes one
// runs the next (engine.work). A partition's fetcher that runs a read's
// messages itself (inline.go) does the same: it runs the first of each key,
// and each key's next after it. Messages without a key, and every message on
// an unpartitioned stream, pass straight through: the gate is nil then.
//
// A keyed message that fails is retried in place: it stays pending (its
// lease renewed), its goroutine waits the backoff and runs it again, and the
// key's later messages wait behind it. A fetcher does not wait: it hands the
// wait and the retry to a handler goroutine (doneInline). A retried copy sent through the
// stream's delayed set would come back behind them. When its attempts run
// out, or for a Permanent error, it is dead-lettered to its partition's
// dead-letter stream as any message is, and the key goes on.
//
// A key whose turn is given up — its partition is being handed to another
// worker, or the process is shutting down while a message of the key waits
// to be retried — is blocked: what is queued for it is left pending, not
// run, so that the next owner, which runs the pending entries first, runs
// them in order.

// gateDeps are what the gate needs of the runtime.
type gateDeps struct {
	consumer            reclaim.Consumer                 // leases of the messages waiting or held for a retry
	logger              *slog.Logger                     // the runtime's
	failLogs            *logSampler                      // the runtime's: a few lines a second of each kind of failure
	count               func(m *Message, outcome string) // counts an outcome
	freeSlots           func(n int)                      // releases handler slots
	leaseEvery          time.Duration                    // how often a waiting message's lease is renewed
	maxAttempts         int                              // WORKER_MAX_ATTEMPTS
	retryBase, retryMax time.Duration                    // the retry backoff
}

// orderGate serialises the messages of each key of the partitioned streams.
type orderGate struct {
	gateDeps

	mu       sync.Mutex
	keys     map[gateKey]*keyTurn // keys with a message running, or held for a retry
	spare    []*keyTurn           // reused turns: a key's turn is short-lived
	parts    map[string]*gatePart // by partition stream key; the map itself is fixed, its values' fields are guarded by mu
	unleased map[*Message]bool    // waiting messages no longer pending (trimmed, or acknowledged elsewhere)
	stop     chan struct{}        // closed at shutdown: retries in place give up
	stopOnce sync.Once
}

type gateKey struct{ stream, key string }

// keyTurn is a key whose message runs (or waits to be retried in place), or
// a key given up while its partition is handed over.
type keyTurn struct {
	waiting []*Message // read after the running one, in read order, each holding its slot
	active  bool       // a message of the key runs, or waits to be retried
	blocked bool       // given up: later messages of the key stay pending, unrun

	held      bool          // the message that runs failed and is retried in place
	retryIn   time.Duration // after this long
	attempt   int           // as this attempt
	sleeping  *Message      // the message waiting for its retry, leased like the waiting ones
	sleepLost bool          // sleeping was claimed by another consumer meanwhile
}

// gatePart is what the gate knows of one partition.
type gatePart struct {
	leaving   chan struct{}   // closed while the partition is being given up
	abandoned map[string]bool // IDs left pending for the next owner
	taken     int             // how many times the partition was taken (reset)
}

func newOrderGate(d gateDeps, partitions []string) *orderGate {
	g := &orderGate{
		gateDeps: d, keys: map[gateKey]*keyTurn{}, parts: make(map[string]*gatePart, len(partitions)),
		unleased: map[*Message]bool{}, stop: make(chan struct{}),
	}
	for _, p := range partitions {
		g.parts[p] = &gatePart{leaving: make(chan struct{}), abandoned: map[string]bool{}}
	}
	return g
}

// ordered reports whether stream is a partition whose keys the gate keeps
// in order; false on a nil gate.
func (g *orderGate) ordered(stream string) bool {
	if g == nil {
		return false
	}
	_, ok := g.parts[stream]
	return ok
}

// partitionKey is the message's partition key, "" for none.
func partitionKey(m *Message) string { return m.Key }

// admit filters a read's messages, in place, down to those that may run now.
// The others wait behind the running message of their key, holding their
// slots, and run after it where it ran (done, doneInline); those of a blocked key are
// left pending and their slots released. On a nil gate it returns batch.
func (g *orderGate) admit(batch []*Message) []*Message {
	var dropped []*Message
	out := batch[:0]
	g.mu.Lock()
	for _, m := range batch {
		key := partitionKey(m)
		if key == "" || g.parts[m.Stream] == nil {
			out = append(out, m)
			continue
		}
		k := gateKey{m.Stream, key}
		switch t := g.keys[k]; {
		case t == nil:
			t = g.newTurn()
			t.active = true
			g.keys[k] = t
			out = append(out, m)
		case t.blocked:
			dropped = append(dropped, m)
			g.abandonLocked(m)
		case !t.active:
			t.active = true
			out = append(out, m)
		default:
			t.waiting = append(t.waiting, m)
		}
	}
	g.mu.Unlock()
	g.drop(dropped)
	return out
}

// done is called by the handler goroutine that ran m, once its outcome is
// recorded. It returns the message to run next on that goroutine: nil; the
// next message of m's key, which holds a slot of its own; or, with again
// set, m's retry in place after its backoff, which holds m's slot.
func (g *orderGate) done(m *Message) (next *Message, again bool) {
	k, t := g.turnOf(m)
	if t == nil {
		return nil, false
	}
	if t.held {
		t.held = false
		return g.retry(k, t, m)
	}
	return g.nextLocked(k, t), false
}

// doneInline is done for a message run on a fetcher (inline.go), which
// does not wait out a backoff: when m is held for a retry in place, it
// returns held set and the retry is left to a handler goroutine, m keeping
// its slot (Message.retryDue). Otherwise it returns the next message of m's
// key, or nil, as done does.
func (g *orderGate) doneInline(m *Message) (next *Message, held bool) {
	k, t := g.turnOf(m)
	if t == nil {
		return nil, false
	}
	if t.held {
		// Leased like a message waiting for its retry (renewLeases) while
		// it waits for a handler goroutine, as retry then leases it.
		t.sleeping, t.sleepLost = m, false
		g.mu.Unlock()
		return nil, true
	}
	return g.nextLocked(k, t), false
}

// turnOf returns m's key and its turn with g.mu held; t is nil, and g.mu
// not held, when m has no key or its key no turn.
func (g *orderGate) turnOf(m *Message) (k gateKey, t *keyTurn) {
	key := partitionKey(m)
	if key == "" {
		return k, nil
	}
	k = gateKey{m.Stream, key}
	g.mu.Lock()
	if t = g.keys[k]; t == nil {
		g.mu.Unlock()
	}
	return k, t
}

// nextLocked pops the next message of key k, whose running message is
// done, and unlocks g.mu. A key with nothing waiting is forgotten; a blocked
// key's waiting messages are left pending, and the key stays blocked until
// its partition is taken again.
func (g *orderGate) nextLocked(k gateKey, t *keyTurn) *Message {
	if t.blocked {
		t.active = false
		dropped := t.waiting
		t.waiting = nil
		for _, w := range dropped {
			g.abandonLocked(w)
		}
		g.mu.Unlock()
		g.drop(dropped)
		return nil
	}
	if len(t.waiting) == 0 {
		delete(g.keys, k)
		g.freeTurn(t)
		g.mu.Unlock()
		return nil
	}
	// A short queue is shifted down rather than resliced: a queue that
	// moves its start along its array has no room left at the end after a
	// few keys' turns, and its next append allocates (a third of an
	// allocation per message in the order phase's workload). A long one, a
	// hot key's, is resliced: shifted, each turn would copy all of it.
	next := t.waiting[0]
	t.waiting[0] = nil
	if n := len(t.waiting) - 1; n <= shiftMost {
		copy(t.waiting, t.waiting[1:])
		t.waiting[n] = nil
		t.waiting = t.waiting[:n]
	} else {
		t.waiting = t.waiting[1:]
	}
	delete(g.unleased, next)
	g.mu.Unlock()
	return next
}

// shiftMost is the longest queue of a key's waiting messages that is shifted
// down when its next one starts (keyTurn.waiting).
const shiftMost = 32

// retry waits out m's backoff, with g.mu held on entry (and released), and
// returns m's retry. When the partition is being handed over or the process
// stops meanwhile, it gives the key up: m and the key's later messages stay
// pending for the next owner. When m is no longer this consumer's (claimed
// by another, trimmed, acknowledged elsewhere) the key goes on without it.
func (g *orderGate) retry(k gateKey, t *keyTurn, m *Message) (*Message, bool) {
	wait, attempt := t.retryIn, t.attempt
	p := g.parts[m.Stream]
	leaving, taken := p.leaving, p.taken
	if t.sleeping != m { // else it waited for this goroutine leased, and sleepLost holds what the lease loop found
		t.sleeping, t.sleepLost = m, false
	}
	g.mu.Unlock()

	// Its lease is renewed now and then every lease period (renewLeases)
	// until it runs again.
	ours := g.renewOne(m)
	stopped := false
	timer := time.NewTimer(wait)
	if ours {
		select {
		case <-timer.C:
		case <-leaving:
			stopped = true
		case <-g.stop:
			stopped = true
		}
	}
	timer.Stop()

	g.mu.Lock()
	t.sleeping = nil
	ours = ours && !t.sleepLost
	switch {
	case p.taken != taken:
		// The partition was given up and taken again meanwhile: its take-over
		// claimed m again, and that copy waits behind it.
		g.count(m, OutcomeHandedOver)
		return g.nextLocked(k, t), false
	case ours && !stopped && !t.blocked:
		again := *m
		again.Attempt = attempt
		again.done = nil    // closed by the first run
		again.effects = nil // the failed run's: a retry commits only its own (effects.go)
		g.mu.Unlock()
		return &again, true
	case !ours && !stopped && !t.blocked:
		g.count(m, OutcomeLeaseLost)
		return g.nextLocked(k, t), false
	}
	// Given up: m stays pending, and so do the key's later messages.
	t.blocked = true
	g.abandonLocked(m)
	g.count(m, OutcomeHandedOver)
	return g.nextLocked(k, t), false
}

// confirmLate runs confirm, the confirmation of m (a keyed message that
// waited a lease period behind its key) as this consumer's, until Redis
// answers it, every confirmEvery at first and backing off to a second, and
// reports whether m is to run. Left out while Redis does not answer, m would
// run only once a reclaim pass found it, after its key's later messages.
// When the partition is being handed over or the process stops meanwhile,
// it gives the key up: m and the key's later messages stay pending for the
// next owner.
func (g *orderGate) confirmLate(m *Message, confirm func() (bool, error)) bool {
	g.mu.Lock()
	p := g.parts[m.Stream]
	leaving, taken := p.leaving, p.taken
	g.mu.Unlock()
	for wait := confirmEvery; ; wait = min(2*wait, time.Second) {
		ok, err := confirm()
		if err == nil {
			return ok
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
			continue
		case <-leaving:
		case <-g.stop:
		}
		timer.Stop()
		g.mu.Lock()
		// Given up: m stays pending, and so do the key's later messages;
		// unless the partition was taken again meanwhile, whose take-over
		// claimed m again and runs that copy after it.
		if p.taken == taken {
			if t := g.keys[gateKey{m.Stream, partitionKey(m)}]; t != nil {
				t.blocked = true
			}
			g.abandonLocked(m)
		}
		g.mu.Unlock()
		g.count(m, OutcomeHandedOver)
		return false
	}
}

// confirmEvery is how soon confirmLate first tries again.
const confirmEvery = 50 * time.Millisecond

// renewOne renews the lease of m, about to wait for its retry, and reports
// whether it is still this consumer's to retry. On a Redis error it is kept:
// the next lease pass tries again.
func (g *orderGate) renewOne(m *Message) bool {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sent := time.Now()
	leased, err := g.consumer.Lease(ctx, m.Stream, []string{m.ID})
	if err != nil {
		g.logger.Warn("renewing the lease of a message to retry failed", "stream", m.Stream, "id", m.ID, "error", err)
		return true
	}
	if leased.State(m.ID) != reclaim.Renewed {
		g.logger.Warn("a failed message is no longer this consumer's to retry (claimed by another, trimmed or acknowledged)",
			"stream", m.Stream, "id", m.ID, "type", shownType(m.Type))
		return false
	}
	g.mu.Lock()
	m.readAt = sent
	g.mu.Unlock()
	return true
}

// hold takes over the failure of a keyed message on a partitioned stream
// that may be tried again: it is retried in place once its goroutine calls
// done. It reports false when the failure goes the usual way instead: no
// key, a Permanent error, or the attempts used up (dead-lettered to the
// partition's dead-letter stream). While the partition is being handed
// over, or at shutdown, the message is left pending for the next owner.
func (g *orderGate) hold(m *Message, err error) bool {
	key := partitionKey(m)
	if key == "" {
		return false
	}
	var de *DelayError
	isDelay := errors.As(err, &de)
	if IsPermanent(err) || (m.Attempt >= g.maxAttempts && !isDelay) {
		return false
	}
	delay, next, outcome := backoff(m.Attempt, g.retryBase, g.retryMax), m.Attempt+1, OutcomeRetried
	if isDelay {
		delay, next, outcome = de.After, m.Attempt, OutcomeDelayed
	}
	p := g.parts[m.Stream]
	if p == nil {
		return false
	}
	k := gateKey{m.Stream, key}
	g.mu.Lock()
	t := g.keys[k]
	var leaving bool
	select {
	case <-p.leaving:
		leaving = true
	case <-g.stop:
		leaving = true
	default:
	}
	if t == nil || t.blocked || leaving {
		// Left pending for whoever takes the partition next.
		if t != nil {
			t.blocked = true
		}
		g.abandonLocked(m)
		g.mu.Unlock()
		g.count(m, OutcomeHandedOver)
		return true
	}
	t.held, t.retryIn, t.attempt = true, delay, next
	g.mu.Unlock()
	if outcome == OutcomeDelayed {
		g.logger.Debug("message delayed in place", "stream", m.Stream, "id", m.ID, "type", shownType(m.Type), "run_in", delay.Round(time.Millisecond), "reason", err.Error())
	} else if ok, skipped := g.failLogs.allow(m.Stream, m.Type, outcome); ok {
		g.logger.Info("message failed; retrying in place, its key waits", notLogged(skipped, "stream", m.Stream, "id", m.ID, "type", shownType(m.Type),
			"attempt", m.Attempt, "retry_in", delay.Round(time.Millisecond), "error", firstLine(err.Error()))...)
	}
	g.count(m, outcome)
	return true
}

// renewLeases renews the leases of the messages waiting here for a lease
// period or more, so that no reclaim pass takes them while they wait. A
// message another consumer has claimed meanwhile is not run; one no longer
// pending (trimmed, or acknowledged elsewhere) runs unleased, as a running
// handler of such an entry goes on.
func (g *orderGate) renewLeases() {
	due := time.Now().Add(-g.leaseEvery)
	byStream := map[string][]*Message{}
	g.mu.Lock()
	for _, t := range g.keys {
		if m := t.sleeping; m != nil && !m.readAt.After(due) {
			byStream[m.Stream] = append(byStream[m.Stream], m)
		}
		for _, m := range t.waiting {
			if !m.readAt.After(due) && !g.unleased[m] {
				byStream[m.Stream] = append(byStream[m.Stream], m)
			}
		}
	}
	g.mu.Unlock()
	for stream, ms := range byStream {
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.ID
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		sent := time.Now()
		leased, err := g.consumer.Lease(ctx, stream, ids)
		cancel()
		if err != nil {
			g.logger.Warn("renewing the leases of waiting messages failed", "stream", stream, "count", len(ids), "error", err)
			continue
		}
		var dropped []*Message
		g.mu.Lock()
		for _, m := range ms {
			switch state := leased.State(m.ID); {
			case state == reclaim.Lost:
				if g.unqueueLocked(m) {
					dropped = append(dropped, m)
				} else if t := g.keys[gateKey{m.Stream, partitionKey(m)}]; t != nil && t.sleeping == m {
					t.sleepLost = true
				}
			case !g.queuedLocked(m):
				// Started meanwhile: its runner has its lease.
			case state == reclaim.Trimmed || state == reclaim.Gone:
				g.unleased[m] = true
			default:
				m.readAt = sent
			}
		}
		g.mu.Unlock()
		if len(dropped) > 0 {
			g.logger.Warn("waiting messages were claimed by another consumer; not running them", "stream", stream, "count", len(dropped))
			for _, m := range dropped {
				g.count(m, OutcomeLeaseLost)
			}
			g.release(dropped)
		}
	}
}

// queuedLocked reports whether m waits here: behind its key's running
// message, or for its retry.
func (g *orderGate) queuedLocked(m *Message) bool {
	t := g.keys[gateKey{m.Stream, partitionKey(m)}]
	return t != nil && (t.sleeping == m || slices.Contains(t.waiting, m))
}

// unqueueLocked takes m out of its key's waiting list, if it is there.
func (g *orderGate) unqueueLocked(m *Message) bool {
	t := g.keys[gateKey{m.Stream, partitionKey(m)}]
	if t == nil {
		return false
	}
	for i, w := range t.waiting {
		if w == m {
			t.waiting = append(t.waiting[:i], t.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// abandon gives up every key of partition: its fetching has stopped and it
// is being handed over. Messages waiting are left pending, unrun, and so is
// one waiting for its retry; those running finish. Their IDs are returned by
// abandoned until the partition is taken again (reset).
func (g *orderGate) abandon(partition string) {
	var dropped []*Message
	g.mu.Lock()
	p := g.parts[partition]
	select {
	case <-p.leaving:
	default:
		close(p.leaving)
	}
	for k, t := range g.keys {
		if k.stream != partition {
			continue
		}
		t.blocked = true
		for _, m := range t.waiting {
			g.abandonLocked(m)
		}
		dropped = append(dropped, t.waiting...)
		t.waiting = nil
	}
	g.mu.Unlock()
	g.drop(dropped)
}

// abandoned reports whether id, of partition, was left pending on purpose
// since the partition was last taken.
func (g *orderGate) abandoned(partition, id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.parts[partition].abandoned[id]
}

// reset forgets what the gate knew of partition, which this consumer has
// just taken (again). A key whose message still runs here (taken back
// before that message finished) keeps its turn, so that the take-over's
// messages of the key run after it.
func (g *orderGate) reset(partition string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, t := range g.keys {
		if k.stream != partition {
			continue
		}
		if t.active {
			t.blocked = false
			continue
		}
		delete(g.keys, k)
	}
	for m := range g.unleased {
		if m.Stream == partition {
			delete(g.unleased, m)
		}
	}
	p := g.parts[partition]
	p.leaving, p.abandoned = make(chan struct{}), map[string]bool{}
	p.taken++
}

// shutdown makes retries in place give up: the process is stopping.
func (g *orderGate) shutdown() {
	g.stopOnce.Do(func() { close(g.stop) })
}

func (g *orderGate) abandonLocked(m *Message) {
	if p := g.parts[m.Stream]; p != nil {
		p.abandoned[m.ID] = true
	}
	delete(g.unleased, m)
}

// drop leaves messages that were waiting pending, unrun: counted as handed
// over, their slots released.
func (g *orderGate) drop(ms []*Message) {
	if len(ms) == 0 {
		return
	}
	for _, m := range ms {
		g.count(m, OutcomeHandedOver)
	}
	g.release(ms)
}

// release frees the slots of waiting messages that will not run here, and
// tells whoever waits for one of them (a suspect's runner) that it is over.
func (g *orderGate) release(ms []*Message) {
	for _, m := range ms {
		if m.done != nil {
			close(m.done)
		}
	}
	g.freeSlots(len(ms))
}

func (g *orderGate) newTurn() *keyTurn {
	if n := len(g.spare); n > 0 {
		t := g.spare[n-1]
		g.spare = g.spare[:n-1]
		return t
	}
	return &keyTurn{}
}

func (g *orderGate) freeTurn(t *keyTurn) {
	if len(g.spare) < 1024 {
		*t = keyTurn{waiting: t.waiting[:0]}
		g.spare = append(g.spare, t)
	}
}

package worker

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/reclaim"
	"github.com/streamworker/streamworker/wire"
)

// Acknowledgements are written by one loop in batches. Handlers append to a
// buffer; the loop waits a moment (ackLinger) after the first one arrives, or
// until ackFlushAt have gathered, and sends the whole buffer in one pipeline.
// An acknowledgement a little late costs nothing (the entry just stays
// pending a millisecond longer); one round trip per few hundred messages
// instead of per few dozen is a large share of a no-op handler's cost.
//
// On a Redis Cluster the batch is split by the primary that serves each
// stream's slot, and each primary's share goes out on a lane of its own, a
// goroutine with its own deadline per call (ackTimeout): a primary that
// died holds up only its own acknowledgements, which wait and are retried
// (with those that arrive meanwhile) while the other lanes go on. Entries
// whose acknowledgement waits are known (waiting): the reclaimer does not
// run them again.
const (
	ackLinger  = 2 * time.Millisecond
	ackFlushAt = 512  // send at once when this many are waiting
	ackMax     = 4096 // handlers wait for room beyond this (Redis is failing)
	ackTimeout = 2 * time.Second
)

type ackReq struct {
	stream, id, typ string
	dedupe          string // dedupe key to mark, or ""
	outcome         string
}

// ackBuffer is where handlers leave acknowledgements for the ack loop.
type ackBuffer struct {
	mu    sync.Mutex
	lanes map[string]*ackLane // per primary (one, "", off a cluster); only the ack loop adds to it
	room  sync.Cond           // signalled when the loop takes the buffer
	buf   []ackReq
	ended bool          // the loop has stopped: nothing more is written
	kick  chan struct{} // wakes the loop: first ack of a batch, or ackFlushAt reached
}

func newAckBuffer() *ackBuffer {
	b := &ackBuffer{buf: make([]ackReq, 0, ackFlushAt), kick: make(chan struct{}, 1), lanes: map[string]*ackLane{}}
	b.room.L = &b.mu
	return b
}

// add queues a. After the loop has ended (a handler that ignored the
// shutdown deadline) the entry stays pending.
func (b *ackBuffer) add(a ackReq) {
	b.mu.Lock()
	for len(b.buf) >= ackMax && !b.ended {
		b.room.Wait()
	}
	if b.ended {
		b.mu.Unlock()
		return
	}
	b.buf = append(b.buf, a)
	n := len(b.buf)
	b.mu.Unlock()
	if n == 1 || n == ackFlushAt {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *ackBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// take swaps the buffer for spare (emptied) and returns what was queued.
func (b *ackBuffer) take(spare []ackReq) []ackReq {
	b.mu.Lock()
	out := b.buf
	b.buf = spare[:0]
	b.mu.Unlock()
	b.room.Broadcast()
	return out
}

// end takes what is left and makes later adds no-ops.
func (b *ackBuffer) end() []ackReq {
	b.mu.Lock()
	out := b.buf
	b.buf, b.ended = nil, true
	b.mu.Unlock()
	b.room.Broadcast()
	return out
}

// waiting returns the IDs of stream's entries whose handler succeeded and
// whose acknowledgement is not written yet: queued, or on a lane being sent
// or waiting for a retry. It is for the reclaimer, rarely; it costs the hot
// path nothing.
func (b *ackBuffer) waiting(stream string) map[string]bool {
	out := map[string]bool{}
	add := func(list []ackReq) {
		for _, a := range list {
			if a.stream == stream {
				out[a.id] = true
			}
		}
	}
	b.mu.Lock()
	add(b.buf)
	lanes := make([]*ackLane, 0, len(b.lanes))
	for _, l := range b.lanes {
		lanes = append(lanes, l)
	}
	b.mu.Unlock()
	for _, l := range lanes {
		l.mu.Lock()
		add(l.queue)
		add(l.sending)
		l.mu.Unlock()
	}
	return out
}

// notAckWaiting drops from claimed entries those whose handler succeeded
// here and whose acknowledgement is waiting (a primary that does not
// answer): they were done, and running them again would only duplicate
// them. The acknowledgement on its way ends their pending state.
func (r *engine) notAckWaiting(stream string, entries []reclaim.Entry) []reclaim.Entry {
	if len(entries) == 0 {
		return entries
	}
	done := r.acks.waiting(stream)
	if len(done) == 0 {
		return entries
	}
	out := entries[:0]
	for _, e := range entries {
		if !done[e.ID] {
			out = append(out, e)
		}
	}
	if n := len(entries) - len(out); n > 0 {
		r.logger.Info("claimed entries already handled here, their acknowledgement waiting; not run again", "stream", stream, "count", n)
	}
	return out
}

// ack queues an acknowledgement for the ack loop.
func (r *engine) ack(a ackReq) { r.acks.add(a) }

// ackNow writes one acknowledgement at once, for a message that must be
// settled before the next one runs; on a Redis error it is queued instead.
func (r *engine) ackNow(a ackReq) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := r.flushAcks(ctx, []ackReq{a}, nil); err != nil {
		r.ack(a)
	}
}

// ackLoop takes acknowledgements in batches and hands each to the lane of
// the primary it goes to, until ctx ends; then the lanes flush what is left
// and stop.
func (r *engine) ackLoop(ctx context.Context) error {
	stop := ctx.Done()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var lanes sync.WaitGroup
	defer func() {
		r.acks.mu.Lock()
		all := make([]*ackLane, 0, len(r.acks.lanes))
		for _, l := range r.acks.lanes {
			all = append(all, l)
		}
		r.acks.mu.Unlock()
		for _, l := range all {
			l.close()
		}
		lanes.Wait()
	}()
	var batch, spare []ackReq
	for {
		select {
		case <-r.acks.kick:
		case <-stop:
			if rest := r.acks.end(); len(rest) > 0 {
				r.route(rest, &lanes)
			}
			return nil
		}
		if r.acks.len() < ackFlushAt {
			linger.Reset(ackLinger)
			select {
			case <-r.acks.kick:
			case <-linger.C:
			case <-stop:
			}
			linger.Stop()
		}
		batch, spare = r.acks.take(spare), batch
		if len(batch) > 0 {
			r.route(batch, &lanes)
		}
	}
}

// ackNode is the primary that acknowledgements of stream go to: its
// address on a Redis Cluster (as the client's slot map has it now), else "".
func (r *engine) ackNode(stream string) string {
	if r.cluster == nil {
		return ""
	}
	c, err := r.cluster.c.MasterForKey(context.Background(), stream)
	if err != nil {
		return "?" // no slot map yet: a lane of its own, routed again on its retry
	}
	return c.Options().Addr
}

// route hands batch to the lanes of the primaries it goes to, starting a
// lane for a primary not seen before. The lanes copy what they are given.
func (r *engine) route(batch []ackReq, lanes *sync.WaitGroup) {
	if r.cluster == nil {
		r.lane("", lanes).push(batch)
		return
	}
	split := map[string][]ackReq{}
	node := map[string]string{}
	for _, a := range batch {
		n, ok := node[a.stream]
		if !ok {
			n = r.ackNode(a.stream)
			node[a.stream] = n
		}
		split[n] = append(split[n], a)
	}
	for n, list := range split {
		r.lane(n, lanes).push(list)
	}
}

// lane returns the lane of node, started if new; one started after the
// loop has ended is closed from the start (it flushes and stops).
func (r *engine) lane(node string, lanes *sync.WaitGroup) *ackLane {
	r.acks.mu.Lock()
	defer r.acks.mu.Unlock()
	if l, ok := r.acks.lanes[node]; ok {
		return l
	}
	l := &ackLane{node: node, kick: make(chan struct{}, 1), done: make(chan struct{}), args: map[string][]any{}}
	if r.acks.ended {
		l.closed = true
		close(l.done)
	}
	r.acks.lanes[node] = l
	lanes.Add(1)
	go func() {
		defer lanes.Done()
		r.runLane(l, lanes)
	}()
	return l
}

// ackLane writes the acknowledgements of one primary.
type ackLane struct {
	node string
	kick chan struct{}
	done chan struct{} // closed by close: flush what is left, then stop

	mu      sync.Mutex
	queue   []ackReq // waiting for the next write
	sending []ackReq // being written, or waiting for a retry
	closed  bool

	args map[string][]any // the lane's scratch: the XACK arguments per stream
}

func (l *ackLane) push(list []ackReq) {
	l.mu.Lock()
	l.queue = append(l.queue, list...)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *ackLane) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
}

// next moves what is queued to sending, after what is there already (a
// failed write's), and returns it.
func (l *ackLane) next() []ackReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sending = append(l.sending, l.queue...)
	l.queue = l.queue[:0]
	return l.sending
}

// sent drops what was written.
func (l *ackLane) sent() {
	l.mu.Lock()
	l.sending = l.sending[:0]
	l.mu.Unlock()
}

// runLane writes what comes to l, retrying with backoff while its primary
// fails, and takes what arrives meanwhile into the next try. On a cluster, a
// failure has the slot map reloaded and what failed routed again: after a
// failover it goes to the promoted replica's lane. At close it flushes what
// is left with a few last tries.
func (r *engine) runLane(l *ackLane, lanes *sync.WaitGroup) {
	failures := 0
	for {
		select {
		case <-l.kick:
		case <-l.done:
			if batch := l.next(); len(batch) > 0 {
				r.flushFinal(batch)
			}
			l.sent()
			return
		}
		batch := l.next()
		if len(batch) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := r.flushAcks(ctx, batch, l.args)
		cancel()
		if err == nil {
			failures = 0
			l.sent()
			continue
		}
		failures++
		r.metrics.redisError(OpAck)
		r.cluster.failed(err)
		wait := retryWait(failures)
		r.logger.Error("acknowledging messages failed; retrying", "node", l.node, "count", len(batch), "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-l.done:
			continue // the final flush above
		case <-time.After(wait):
		}
		if r.cluster != nil {
			// Routed again: after a failover it goes to the lane of the
			// promoted replica (or back here, if nothing changed).
			moved := append([]ackReq(nil), batch...)
			l.sent()
			r.route(moved, lanes)
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// flushFinal makes a last few attempts at shutdown with fresh contexts.
func (r *engine) flushFinal(batch []ackReq) {
	var err error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err = r.flushAcks(ctx, batch, nil)
		cancel()
		if err == nil {
			return
		}
		r.metrics.redisError(OpAck)
		sleepCtx(context.Background(), retryWait(i+1))
	}
	r.logger.Error("acknowledgements lost at shutdown; those messages stay pending and will be delivered again",
		"count", len(batch), "error", err)
}

// flushAcks sends a batch in one pipeline: dedupe marks first, then one XACK
// per stream with every ID. Success is decided by each XACK's own result:
// a dedupe mark Redis refuses for want of memory is left out (it only
// narrows the dedupe window for that entry) rather than holding the
// acknowledgement back. The outcome counters are bumped once per run of
// equal labels, not once per message. args, when not nil, is the caller's
// scratch space for each stream's XACK arguments, reused from batch to
// batch, emptied once the pipeline has run so that they keep no batch
// alive. The IDs go in as pointers into batch, which lives until then:
// go-redis's XAck boxed each ID as an interface value, an allocation per
// message.
func (r *engine) flushAcks(ctx context.Context, batch []ackReq, args map[string][]any) error {
	pipe := r.client.Pipeline()
	if args == nil {
		args = make(map[string][]any, 1)
	}
	cmds := r.queueAcks(ctx, pipe, batch, args)
	_, _ = pipe.Exec(ctx) // each command's own result is looked at below
	return r.acked(cmds, batch, args)
}

// ackCmds are the commands of a batch of acknowledgements in a pipeline.
type ackCmds struct {
	acks  []*redis.IntCmd
	marks []*redis.StatusCmd
}

// queueAcks adds batch's dedupe marks and XACKs to pipe (flushAcks).
func (r *engine) queueAcks(ctx context.Context, pipe redis.Pipeliner, batch []ackReq, args map[string][]any) ackCmds {
	var marks []*redis.StatusCmd
	for i := range batch {
		a := &batch[i]
		if a.dedupe != "" {
			marks = append(marks, pipe.Set(ctx, a.dedupe, wire.DedupeMark, r.cfg.DedupeWindow))
		}
		list := args[a.stream]
		if len(list) == 0 {
			list = append(list, "xack", &a.stream, &r.cfg.Group)
		}
		args[a.stream] = append(list, &a.id)
	}
	var acks []*redis.IntCmd
	for _, list := range args {
		if len(list) > 0 {
			c := redis.NewIntCmd(ctx, list...)
			_ = pipe.Process(ctx, c) // queues it
			acks = append(acks, c)
		}
	}
	return ackCmds{acks: acks, marks: marks}
}

// acked reads the results of a batch's commands once its pipeline has run
// (flushAcks), and empties args.
func (r *engine) acked(cmds ackCmds, batch []ackReq, args map[string][]any) error {
	acks, marks := cmds.acks, cmds.marks
	for s, list := range args {
		clear(list)
		args[s] = list[:0]
	}
	for _, c := range acks {
		if err := c.Err(); err != nil {
			return err
		}
	}
	refused := false
	for _, c := range marks {
		if err := c.Err(); err != nil {
			if r.health.noted(err) { // probe.go
				refused = true
				continue
			}
			return err
		}
	}
	if len(marks) > 0 && !refused {
		r.health.wrote()
	}
	for i := 0; i < len(batch); {
		a, n := batch[i], 1
		for i+n < len(batch) && batch[i+n].stream == a.stream && batch[i+n].typ == a.typ && batch[i+n].outcome == a.outcome {
			n++
		}
		r.metrics.finished(a.stream, a.typ, a.outcome, n)
		i += n
	}
	return nil
}

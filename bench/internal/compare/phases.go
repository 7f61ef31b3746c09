package compare

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// throughput runs every system Runs times, interleaved (run 1 of each, then
// run 2 of each, ...) so that a noisy minute on a shared machine spreads
// over all of them. Each run starts from an empty Redis: a produce child
// publishes Msgs messages, then a consume child consumes that backlog until
// the system shows all acknowledged.
func (h *harness) throughput(ctx context.Context, res *Results) {
	entries := h.entries()
	res.Throughput = make([]Throughput, len(entries))
	for i, name := range entries {
		res.Throughput[i].System = name
	}
	for run := 1; run <= h.opts.Runs; run++ {
		for i, name := range entries {
			if ctx.Err() != nil {
				return
			}
			t := &res.Throughput[i]
			if err := h.throughputRun(ctx, name, t); err != nil {
				h.fail("throughput run %d of %s: %v", run, name, err)
				continue
			}
			p, c := t.Produce[len(t.Produce)-1], t.Consume[len(t.Consume)-1]
			fmt.Fprintf(h.log, "  run %d/%d %-9s produce %9.0f msgs/s %6.1f µs/msg %5.0f MiB | consume %9.0f msgs/s %6.1f µs/msg %5.0f MiB | Redis %4.0f B/msg | load %.1f\n",
				run, h.opts.Runs, name, p.Rate(), p.CPUPerMsg(), mib(p.PeakRSS), c.Rate(), c.CPUPerMsg(), mib(c.PeakRSS),
				t.StoredBytes[len(t.StoredBytes)-1], loadAverage())
		}
	}
}

func (h *harness) throughputRun(ctx context.Context, name string, t *Throughput) error {
	if err := h.flush(ctx); err != nil {
		return err
	}
	before, err := h.usedMemory(ctx)
	if err != nil {
		return err
	}
	cfg := h.config(name)
	p, err := h.spawn(ctx, job{System: systemOf(name), Kind: jobProduce, Config: cfg, N: h.opts.Msgs, Payload: h.opts.Payload}, nil)
	if err != nil {
		return err
	}
	after, err := h.usedMemory(ctx)
	if err != nil {
		return err
	}
	c, err := h.spawn(ctx, job{System: systemOf(name), Kind: jobConsume, Config: cfg, N: h.opts.Msgs, Payload: h.opts.Payload}, nil)
	if err != nil {
		return err
	}
	t.Produce = append(t.Produce, p.Measurement)
	t.Consume = append(t.Consume, c.Measurement)
	t.StoredBytes = append(t.StoredBytes, float64(after-before)/float64(h.opts.Msgs))
	return nil
}

// latency offers LatencyRate messages per second for LatencyDuration to
// each system, Runs times, interleaved as in throughput: a listening child
// consumes and records, per message, the time from the sender's clock read
// just before its send call (XADD, Enqueue, Publish) to the start of the
// handler; a sending child paces the messages. Both children run on this
// machine, so they share one clock.
func (h *harness) latency(ctx context.Context, res *Results) {
	n := max(1, int(h.opts.LatencyRate*h.opts.LatencyDuration.Seconds()))
	entries := h.entries()
	all := make([]Latency, len(entries))
	for i, name := range entries {
		all[i] = Latency{System: name, OfferedRate: h.opts.LatencyRate}
	}
	for run := 1; run <= h.opts.Runs && ctx.Err() == nil; run++ {
		for i, name := range entries {
			if ctx.Err() != nil {
				break
			}
			r, sorted, err := h.latencyRun(ctx, name, n)
			if err != nil {
				h.fail("latency run %d of %s: %v", run, name, err)
				continue
			}
			l := &all[i]
			l.Runs = append(l.Runs, r)
			l.Sorted = append(l.Sorted, sorted...)
			fmt.Fprintf(h.log, "  run %d/%d %-9s %6.0f msgs/s sent: p50 %-9s p99 %-9s p99.9 %-9s max %-9s %6.1f µs/msg (%d late sends) | load %.1f\n", run, h.opts.Runs, name, r.SentRate,
				fmtDuration(r.P50), fmtDuration(r.P99), fmtDuration(r.P999), fmtDuration(r.Max), r.Consumer.CPUPerMsg(), r.SendLate, loadAverage())
		}
	}
	for _, l := range all {
		if len(l.Runs) > 0 {
			l.summarizeLatency()
			res.Latency = append(res.Latency, l)
		}
	}
}

// latencyRun is one run of the latency phase for name, and its latencies,
// ns, ascending.
func (h *harness) latencyRun(ctx context.Context, name string, n int) (LatencyRun, []int64, error) {
	if err := h.flush(ctx); err != nil {
		return LatencyRun{}, nil, err
	}
	start := time.Now()
	cfg := h.config(name)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	type outcome struct {
		res childResult
		err error
	}
	ready := make(chan struct{})
	listened := make(chan outcome, 1)
	go func() {
		r, err := h.spawn(lctx, job{System: systemOf(name), Kind: jobListen, Config: cfg, N: n, Payload: h.opts.Payload}, ready)
		listened <- outcome{r, err}
	}()
	select {
	case <-ready:
	case o := <-listened:
		return LatencyRun{}, nil, fmt.Errorf("the listener stopped before it was ready: %w", o.err)
	}
	sent, err := h.spawn(ctx, job{
		System: systemOf(name), Kind: jobSend, Config: cfg, N: n, Payload: h.opts.Payload,
		Rate: h.opts.LatencyRate, Senders: h.opts.LatencySenders,
	}, nil)
	if err != nil {
		stop()
		<-listened
		return LatencyRun{}, nil, err
	}
	o := <-listened
	if o.err != nil {
		return LatencyRun{}, nil, o.err
	}
	sorted := o.res.Latencies
	slices.Sort(sorted)
	at := func(q float64) time.Duration { return time.Duration(percentile(sorted, q)) }
	return LatencyRun{
		SentRate: sent.Rate(), SendLate: sent.SendLate, Consumer: o.res.Measurement, Producer: sent.Measurement, Took: time.Since(start),
		Drain: time.Duration(max(0, o.res.EndedAt-sent.LastSent)),
		P50:   at(0.5), P99: at(0.99), P999: at(0.999), Max: at(1),
	}, sorted, nil
}

// growth measures ours alone as one dimension grows at a time.
func (h *harness) growth(ctx context.Context, res *Results) {
	if !slices.Contains(h.opts.Systems, systems.Ours) {
		return
	}
	g := &res.Growth
	for _, c := range h.opts.SweepConcurrency {
		if ctx.Err() != nil {
			return
		}
		cfg := h.config(systems.Ours)
		cfg.Concurrency = c
		row, err := h.backlogRun(ctx, cfg, h.opts.SweepMsgs)
		if err != nil {
			h.fail("concurrency %d: %v", c, err)
			continue
		}
		row.Param = c
		g.Concurrency = append(g.Concurrency, row)
		fmt.Fprintf(h.log, "  concurrency %-4d consume %9.0f msgs/s %6.1f µs/msg %5.0f MiB\n", c, row.Consume.Rate(), row.Consume.CPUPerMsg(), mib(row.Consume.PeakRSS))
	}
	for _, size := range h.opts.SweepPayload {
		if ctx.Err() != nil {
			return
		}
		row, err := h.payloadRun(ctx, size)
		if err != nil {
			h.fail("payload %d B: %v", size, err)
			continue
		}
		g.Payload = append(g.Payload, row)
		fmt.Fprintf(h.log, "  payload %6d B  %7d msgs: produce %9.0f msgs/s %5.0f MiB | consume %9.0f msgs/s %6.1f µs/msg %5.0f MiB | Redis %s\n",
			size, row.Consume.N, row.Produce.Rate(), mib(row.Produce.PeakRSS), row.Consume.Rate(), row.Consume.CPUPerMsg(), mib(row.Consume.PeakRSS), fmtBytes(row.RedisMemory))
	}
	for _, b := range h.opts.SweepBacklog {
		if ctx.Err() != nil {
			return
		}
		if b > h.opts.MaxBacklog {
			g.BacklogSkipped = append(g.BacklogSkipped, b)
			fmt.Fprintf(h.log, "  backlog %d skipped: above -max-backlog %d\n", b, h.opts.MaxBacklog)
			continue
		}
		row, err := h.backlogRun(ctx, h.config(systems.Ours), b)
		if err != nil {
			h.fail("backlog %d: %v", b, err)
			continue
		}
		row.Param = b
		g.Backlog = append(g.Backlog, row)
		fmt.Fprintf(h.log, "  backlog %-8d loaded in %-7s consume %9.0f msgs/s %6.1f µs/msg %5.0f MiB | Redis %s\n",
			b, row.Load.Round(time.Millisecond), row.Consume.Rate(), row.Consume.CPUPerMsg(), mib(row.Consume.PeakRSS), fmtBytes(row.RedisMemory))
	}
	// Leave no gigabyte-sized backlog behind for the next phase.
	if err := h.flush(ctx); err != nil {
		h.fail("flushing: %v", err)
	}
}

// backlogRun fills an empty Redis with n messages for cfg's stream — with
// the bare loop's pipelined XADD, 1000 per round trip, from this process —
// and has ours consume them in a child.
func (h *harness) backlogRun(ctx context.Context, cfg systems.Config, n int) (GrowthRow, error) {
	var row GrowthRow
	if err := h.flush(ctx); err != nil {
		return row, err
	}
	loadCfg := cfg
	loadCfg.Batch = 1000
	loader, err := systems.New(systems.Bare, loadCfg)
	if err != nil {
		return row, err
	}
	start := time.Now()
	err = loader.Produce(ctx, n, systems.Payload(h.opts.Payload))
	row.Load = time.Since(start)
	if cerr := loader.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return row, fmt.Errorf("loading the backlog: %w", err)
	}
	if row.RedisMemory, err = h.usedMemory(ctx); err != nil {
		return row, err
	}
	c, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobConsume, Config: cfg, N: n, Payload: h.opts.Payload}, nil)
	if err != nil {
		return row, err
	}
	row.Consume = c.Measurement
	return row, nil
}

// payloadRun has ours produce and consume messages of size bytes: as many
// as SweepMsgs, fewer when they would hold more than SweepMiB.
func (h *harness) payloadRun(ctx context.Context, size int) (GrowthRow, error) {
	row := GrowthRow{Param: size}
	n := min(h.opts.SweepMsgs, max(1, h.opts.SweepMiB<<20/size))
	if err := h.flush(ctx); err != nil {
		return row, err
	}
	cfg := h.config(systems.Ours)
	p, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobProduce, Config: cfg, N: n, Payload: size}, nil)
	if err != nil {
		return row, err
	}
	row.Produce = &p.Measurement
	if row.RedisMemory, err = h.usedMemory(ctx); err != nil {
		return row, err
	}
	c, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobConsume, Config: cfg, N: n, Payload: size}, nil)
	if err != nil {
		return row, err
	}
	row.Consume = c.Measurement
	return row, nil
}

// memory publishes MemoryEvents events with ours' producer into an empty
// Redis, without trimming and with MAXLEN ~ MemoryMaxLen, and asks Redis
// what the stream costs.
func (h *harness) memory(ctx context.Context, res *Results) {
	if !slices.Contains(h.opts.Systems, systems.Ours) {
		return
	}
	for _, maxLen := range []int64{0, h.opts.MemoryMaxLen} {
		if ctx.Err() != nil {
			return
		}
		m, err := h.memoryRun(ctx, maxLen)
		if err != nil {
			h.fail("memory with MAXLEN %d: %v", maxLen, err)
			continue
		}
		res.Memory = append(res.Memory, m)
		fmt.Fprintf(h.log, "  MAXLEN ~ %-8d %d published, %d kept: MEMORY USAGE %s, %.0f B per kept entry; produce %.0f msgs/s\n",
			maxLen, m.Published, m.Entries, fmtBytes(m.MemoryUsage), m.PerEntry, m.Produce.Rate())
	}
}

func (h *harness) memoryRun(ctx context.Context, maxLen int64) (StoredMemory, error) {
	m := StoredMemory{MaxLen: maxLen, Published: h.opts.MemoryEvents}
	if err := h.flush(ctx); err != nil {
		return m, err
	}
	before, err := h.usedMemory(ctx)
	if err != nil {
		return m, err
	}
	cfg := h.config(systems.Ours)
	cfg.MaxLen = maxLen
	p, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobProduce, Config: cfg, N: m.Published, Payload: h.opts.Payload}, nil)
	if err != nil {
		return m, err
	}
	m.Produce = p.Measurement
	after, err := h.usedMemory(ctx)
	if err != nil {
		return m, err
	}
	m.UsedMemory = after - before
	if m.Entries, err = h.admin.XLen(ctx, cfg.Queue).Result(); err != nil {
		return m, err
	}
	if m.MemoryUsage, err = h.admin.MemoryUsage(ctx, cfg.Queue, 0).Result(); err != nil {
		return m, err
	}
	if m.Entries > 0 {
		m.PerEntry = float64(m.MemoryUsage) / float64(m.Entries)
	}
	m.PerPublished = float64(m.MemoryUsage) / float64(m.Published)
	return m, nil
}

package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/producer"
)

// loadFlags are the flags of producer load.
type loadFlags struct {
	stream, typ              string
	count, maxLen            int64
	rate                     float64
	size, concurrency, batch int
	maxPayload, partitions   int
	progressEvery            time.Duration
}

func (a *app) loadCommand() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load --stream S --type T --count N [--rate R] [--size B] [--concurrency C] [--partitions P]",
		Short: "Generate load: send N synthetic events as fast as allowed",
		Long: `Send --count synthetic events of --type, each with --size bytes of JSON data
({"seq":N,"pad":"xxx..."}), from --concurrency senders in pipelined batches,
at most --rate events per second (0: as fast as Redis takes them). Prints the
rate achieved at the end. With --partitions P the events go round-robin to
the partitions {S:0} … {S:P-1}.`,
		Example: `  producer load --stream bench --type load.test --count 100000
  producer load --stream bench --type load.test --count 6000 --rate 100 --size 1024`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.load(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stream, "stream", "", "stream key to send to (required)")
	fl.StringVar(&f.typ, "type", "", "event type (required)")
	fl.Int64Var(&f.count, "count", 0, "how many events to send (required)")
	fl.Float64Var(&f.rate, "rate", 0, "most events per second, 0.001 to 1e7; 0 for no limit")
	fl.IntVar(&f.size, "size", 100, "bytes of data per event (at least the JSON around the padding)")
	fl.IntVar(&f.concurrency, "concurrency", 4, "senders at once, each with its own connection")
	fl.IntVar(&f.batch, "batch", 100, "most events per pipelined round trip")
	fl.Int64Var(&f.maxLen, "maxlen", 0, "trim the stream to about this many entries (XADD MAXLEN ~); 0 keeps all")
	fl.IntVar(&f.maxPayload, "max-payload", producer.DefaultMaxPayload, "refuse events whose data is over this many bytes")
	fl.IntVar(&f.partitions, "partitions", 1, "split the stream into this many partitions {S:0}…{S:N-1}, as the worker's WORKER_PARTITIONS")
	fl.DurationVar(&f.progressEvery, "progress-every", 2*time.Second, "with no terminal, how often to print a progress line")
	_ = fl.MarkHidden("progress-every")
	return cmd
}

func (a *app) load(cmd *cobra.Command, f *loadFlags) error {
	switch {
	case f.stream == "":
		return cli.Usagef(cmd, "--stream is required")
	case f.typ == "":
		return cli.Usagef(cmd, "--type is required")
	case f.count <= 0:
		return cli.Usagef(cmd, "--count is required: want a positive number of events")
	case f.rate < 0:
		return cli.Usagef(cmd, "--rate %g is negative: want 0 (no limit) or %g to %g events per second", f.rate, minRate, maxRate)
	case f.rate != 0 && !(f.rate >= minRate && f.rate <= maxRate): // NaN too
		return cli.Usagef(cmd, "--rate %g: want 0 (no limit) or %g to %g events per second", f.rate, minRate, maxRate)
	case f.size < 0:
		return cli.Usagef(cmd, "--size %d is negative", f.size)
	case f.concurrency < 1 || f.concurrency > 1024:
		return cli.Usagef(cmd, "--concurrency %d: want 1 to 1024", f.concurrency)
	case f.batch < 1 || f.batch > 10000:
		return cli.Usagef(cmd, "--batch %d: want 1 to 10000", f.batch)
	case f.maxLen < 0:
		return cli.Usagef(cmd, "--maxlen %d is negative", f.maxLen)
	case f.maxPayload <= 0:
		return cli.Usagef(cmd, "--max-payload %d: want a positive number of bytes", f.maxPayload)
	case f.size > f.maxPayload:
		return cli.Usagef(cmd, "--size %d is over the data cap of %d bytes (--max-payload)", f.size, f.maxPayload)
	}
	if err := cli.CheckPartitions(cmd, f.stream, f.partitions); err != nil {
		return err
	}
	client, err := a.connect()
	if err != nil {
		return err
	}
	defer client.Close()
	tp, flushTraces, err := a.tracerProvider(cmd.Context())
	if err != nil {
		return err
	}
	defer flushTraces()
	p := producer.New(client, producer.Options{MaxPayload: f.maxPayload, MaxLen: f.maxLen, Partitions: f.partitions, Settings: a.urlSetting(), TracerProvider: tp})
	prog := newProgress(a.io.err, a.io.isTerminal(a.io.err), f.count, false, f.progressEvery)
	g := &loadGen{p: p, stream: f.stream, typ: f.typ, count: f.count, size: f.size, concurrency: f.concurrency, batch: f.batch, rate: f.rate}
	g.onSent = func(sent int64) { prog.set(sent, fmt.Sprintf("sent %d of %d", sent, f.count)) }
	start := time.Now()
	sent, err := g.run(cmd.Context())
	prog.finish()
	elapsed := time.Since(start)
	fmt.Fprintf(a.io.out, "sent %d events to stream %q%s in %s: %.0f msg/s\n", sent, f.stream, partitionsNote(f.partitions), elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds())
	return err
}

// loadGen sends count synthetic events from concurrency goroutines.
type loadGen struct {
	p                        *producer.Producer
	stream, typ              string
	count                    int64
	size, concurrency, batch int
	rate                     float64 // events per second; 0: no limit
	onSent                   func(sent int64)
}

// run sends the events and returns how many Redis confirmed. The first error
// stops every sender.
func (g *loadGen) run(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunk := int64(g.batch)
	if g.rate > 0 {
		// Small enough batches that the rate holds over 50 ms windows.
		chunk = max(1, min(chunk, int64(g.rate*0.05/float64(g.concurrency))))
	}
	var (
		next, sent atomic.Int64
		wg         sync.WaitGroup
		once       sync.Once
		firstErr   error
		start      = time.Now()
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for range g.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			events := make([]producer.Event, 0, chunk)
			for {
				from := next.Add(chunk) - chunk
				if from >= g.count || ctx.Err() != nil {
					return
				}
				to := min(from+chunk, g.count)
				if g.rate > 0 {
					// The last event of the chunk is due at (to-1)/rate.
					due := start.Add(rateOffset(to-1, g.rate))
					if err := sleepUntil(ctx, due); err != nil {
						return
					}
				}
				events = events[:0]
				for seq := from; seq < to; seq++ {
					events = append(events, producer.Event{Type: g.typ, Data: loadData(seq, g.size)})
				}
				ids, err := g.p.PublishBatch(ctx, g.stream, events)
				var ok int64
				for _, id := range ids {
					if id != "" {
						ok++
					}
				}
				if n := sent.Add(ok); g.onSent != nil {
					g.onSent(n)
				}
				if err != nil {
					fail(fmt.Errorf("sending to stream %q: %w", g.stream, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return sent.Load(), firstErr
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// loadData is the JSON data of synthetic event seq, padded to size bytes
// (or to the shortest such JSON, if size is smaller).
func loadData(seq int64, size int) []byte {
	head := fmt.Sprintf(`{"seq":%d,"pad":"`, seq)
	pad := max(0, size-len(head)-2)
	return []byte(head + strings.Repeat("x", pad) + `"}`)
}

// The range of --rate, in events per second, besides 0 (no limit): below
// minRate the wait between two events is over a quarter of an hour, above
// maxRate no Redis keeps up and it is no limit at all.
const (
	minRate = 0.001
	maxRate = 1e7
)

// rateOffset is when event n (from 0) is due at rate events per second,
// counted from the start; past what a Duration holds (292 years), the
// longest Duration, because converting a larger float64 to an integer
// wraps around into the past and would send the rest at once.
func rateOffset(n int64, rate float64) time.Duration {
	d := float64(n) / rate * float64(time.Second)
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}

package compare

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/bench/internal/usage"
	"github.com/streamworker/streamworker/wire"
)

// Workload is one variant of a workload phase (io, failures, order,
// producer-cli): its runs, interleaved with the other variants' runs.
type Workload struct {
	Phase  string
	Name   string // the variant, unique within the phase
	System string // the system it runs, for its label
	Detail string // its settings, for the report
	Runs   []Measurement
}

func (w Workload) rate() summary { return summarize(each(w.Runs, Measurement.Rate)) }

func findWorkload(all []Workload, phase, name string) *Workload {
	for i := range all {
		if all[i].Phase == phase && all[i].Name == name && len(all[i].Runs) > 0 {
			return &all[i]
		}
	}
	return nil
}

// variant is one variant of a workload phase and how to run it once.
type variant struct {
	name, system, detail string
	run                  func(context.Context) (Measurement, error)
}

// runVariants runs every variant Runs times, interleaved (run 1 of each,
// then run 2 of each, ...), and appends them to res.Workloads.
func (h *harness) runVariants(ctx context.Context, res *Results, phase string, vs []variant) {
	base := len(res.Workloads)
	for _, v := range vs {
		res.Workloads = append(res.Workloads, Workload{Phase: phase, Name: v.name, System: v.system, Detail: v.detail})
	}
	for run := 1; run <= h.opts.Runs; run++ {
		for i, v := range vs {
			if ctx.Err() != nil {
				return
			}
			m, err := v.run(ctx)
			if err != nil {
				h.fail("%s run %d of %s: %v", phase, run, v.name, err)
				continue
			}
			w := &res.Workloads[base+i]
			w.Runs = append(w.Runs, m)
			fmt.Fprintf(h.log, "  run %d/%d %-28s %8d msgs in %-8s %9.0f msgs/s %7.1f µs/msg %5.0f MiB | load %.1f\n",
				run, h.opts.Runs, v.name, m.N, m.Wall.Round(time.Millisecond), m.Rate(), m.CPUPerMsg(), mib(m.PeakRSS), loadAverage())
		}
	}
}

// produceConsume has system produce n messages into an empty Redis, then
// consume them in another child, each handler call sleeping sleep, and
// returns the consume, with Redis's time per command over it.
func (h *harness) produceConsume(ctx context.Context, system string, cfg systems.Config, n int, sleep time.Duration) (Measurement, error) {
	if err := h.flush(ctx); err != nil {
		return Measurement{}, err
	}
	if _, err := h.spawn(ctx, job{System: system, Kind: jobProduce, Config: cfg, N: n, Payload: h.opts.Payload}, nil); err != nil {
		return Measurement{}, err
	}
	before, errBefore := commandStats(ctx, h.admin)
	c, err := h.spawn(ctx, job{System: system, Kind: jobConsume, Config: cfg, N: n, Payload: h.opts.Payload, Sleep: sleep}, nil)
	if err != nil {
		return c.Measurement, err
	}
	after, errAfter := commandStats(ctx, h.admin)
	if err := errors.Join(errBefore, errAfter); err != nil {
		fmt.Fprintf(h.log, "  no Redis time per command for this run: %v\n", err) // a diagnostic, not the measurement
	} else {
		c.RedisCommands = commandDelta(before, after)
	}
	return c.Measurement, nil
}

// io consumes a backlog with a handler that sleeps IOSleep (standing for a
// database call) at IOConcurrency handlers: ours, asynq with as many
// workers, Watermill with as many subscriptions. The bare loop runs one
// handler at a time, so it is left out.
func (h *harness) io(ctx context.Context, res *Results) {
	var vs []variant
	for _, name := range []string{systems.Ours, systems.Asynq, systems.Watermill} {
		if !slices.Contains(h.opts.Systems, name) {
			continue
		}
		cfg := h.config(name)
		if name == systems.Ours {
			cfg = h.config(oursDefaults)
		}
		cfg.Concurrency = h.opts.IOConcurrency
		n, detail := h.opts.IOPeerMsgs, fmt.Sprintf("%d workers", cfg.Concurrency)
		switch name {
		case systems.Ours:
			n, detail = h.opts.IOMsgs, fmt.Sprintf("`WORKER_CONCURRENCY`=%d, the other settings the daemon's defaults", cfg.Concurrency)
		case systems.Watermill:
			detail = fmt.Sprintf("%d Router handlers, each its own subscription", cfg.Concurrency)
		}
		vs = append(vs, variant{name: name, system: name, detail: detail, run: func(ctx context.Context) (Measurement, error) {
			return h.produceConsume(ctx, name, cfg, n, h.opts.IOSleep)
		}})
	}
	h.runVariants(ctx, res, PhaseIO, vs)
}

// ioIdeal is the io phase's ideal rate: every handler always busy.
func (o Options) ioIdeal() float64 { return float64(o.IOConcurrency) / o.IOSleep.Seconds() }

// The failures phase's variants.
const (
	failNone = "all succeed"
	failOnce = "some fail once"
	// failOnceDelayed is failOnce with every retry through S:delayed.
	failOnceDelayed = "some fail once, via S:delayed"
	failDead        = "all dead-lettered"
	// asynq's, with its retries tuned as ours are (see failing).
	failAsynqNone = "asynq: all succeed"
	failAsynqOnce = "asynq: some fail once"
	failAsynqDead = "asynq: all archived"
	orderNone     = "unordered"
	orderKeys     = "partitioned"
	cliOurs       = "producer send --file"
	cliPipe       = "redis-cli --pipe"
)

// failing has ours consume Msgs messages at the daemon's defaults four
// ways: every message succeeds; every FailEvery-th fails its first attempt
// and is retried, in place (the defaults) or through S:delayed
// (WORKER_RETRY_IN_PLACE_MAX=0); every message fails permanently and is
// dead-lettered. asynq does the same with FailPeerMsgs messages, its retry
// delay and its forwarder's poll set as ours' retry base and promote
// interval, and SkipRetry (archived at once) for its dead letters.
func (h *harness) failing(ctx context.Context, res *Results) {
	var vs []variant
	if slices.Contains(h.opts.Systems, systems.Ours) {
		vs = append(vs, h.failVariants()...)
	}
	if slices.Contains(h.opts.Systems, systems.Asynq) {
		base := h.config(systems.Asynq)
		base.RetryBase, base.PromoteInterval = h.opts.FailRetryBase, h.opts.FailPromoteInterval
		once, dead := base, base
		once.FailEvery = h.opts.FailEvery
		dead.FailAll = true
		for _, v := range []struct {
			name, detail string
			cfg          systems.Config
		}{
			{failAsynqNone, fmt.Sprintf("%d workers", base.Concurrency), base},
			{failAsynqOnce, fmt.Sprintf("1 in %d fails its first attempt; `RetryDelayFunc` %s, `DelayedTaskCheckInterval` %s", h.opts.FailEvery, h.opts.FailRetryBase, h.opts.FailPromoteInterval), once},
			{failAsynqDead, "every task returns `asynq.SkipRetry`: archived at once", dead},
		} {
			vs = append(vs, variant{name: v.name, system: systems.Asynq, detail: v.detail, run: func(ctx context.Context) (Measurement, error) {
				return h.produceConsume(ctx, systems.Asynq, v.cfg, h.opts.FailPeerMsgs, 0)
			}})
		}
	}
	h.runVariants(ctx, res, PhaseFailures, vs)
}

func (h *harness) failVariants() []variant {
	base := h.config(oursDefaults)
	base.RetryBase, base.PromoteInterval = h.opts.FailRetryBase, h.opts.FailPromoteInterval
	once, dead := base, base
	once.FailEvery = h.opts.FailEvery
	dead.FailAll = true
	delayed := once
	delayed.DelayedRetries = true
	vs := []variant{
		{failNone, systems.Ours, "no-op handler", nil},
		{failOnce, systems.Ours, fmt.Sprintf("1 in %d messages fails its first attempt, retried in place (the defaults)", h.opts.FailEvery), nil},
		{failOnceDelayed, systems.Ours, fmt.Sprintf("1 in %d messages fails its first attempt, retried through `S:delayed` (`WORKER_RETRY_IN_PLACE_MAX`=0)", h.opts.FailEvery), nil},
		{failDead, systems.Ours, "every message returns `worker.Permanent`: moved to `S:dlq` at once", nil},
	}
	for i, cfg := range []systems.Config{base, once, delayed, dead} {
		vs[i].run = func(ctx context.Context) (Measurement, error) {
			return h.produceConsume(ctx, systems.Ours, cfg, h.opts.Msgs, 0)
		}
	}
	return vs
}

// order has ours consume Msgs messages at the daemon's defaults from one
// stream, and from OrderPartitions partitions with OrderKeys keys whose
// messages run one at a time, in order (checked by the handler).
func (h *harness) order(ctx context.Context, res *Results) {
	if !slices.Contains(h.opts.Systems, systems.Ours) {
		return
	}
	plain := h.config(oursDefaults)
	keyed := plain
	keyed.Partitions, keyed.Keys = h.opts.OrderPartitions, h.opts.OrderKeys
	vs := []variant{
		{orderNone, systems.Ours, "one stream, no keys", nil},
		{orderKeys, systems.Ours, fmt.Sprintf("`WORKER_PARTITIONS`=%d, %s keys, per-key order (checked by the handler)", keyed.Partitions, fmtInt(float64(keyed.Keys))), nil},
	}
	for i, cfg := range []systems.Config{plain, keyed} {
		vs[i].run = func(ctx context.Context) (Measurement, error) {
			return h.produceConsume(ctx, systems.Ours, cfg, h.opts.Msgs, 0)
		}
	}
	h.runVariants(ctx, res, PhaseOrder, vs)
}

// producerCLI times `producer send --file` of CLIEvents JSONL events against
// `redis-cli --pipe` of the same XADD commands (the reference, so first),
// each into an empty Redis.
func (h *harness) producerCLI(ctx context.Context, res *Results) {
	if !slices.Contains(h.opts.Systems, systems.Ours) {
		return
	}
	dir, err := os.MkdirTemp("", "streamworker-bench-cli-")
	if err != nil {
		h.fail("producer CLI: %v", err)
		return
	}
	defer os.RemoveAll(dir)
	producerBin, err := buildProducer(ctx, dir)
	if err != nil {
		h.fail("producer CLI: %v", err)
		return
	}
	redisCLI, err := exec.LookPath("redis-cli")
	if err != nil {
		h.fail("producer CLI: redis-cli is not on PATH (it comes with redis-server: apt-get install redis-server): %v", err)
		return
	}
	const stream = "bench-cli"
	jsonl, resp := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "events.resp")
	if err := writeCLIInputs(jsonl, resp, stream, h.opts.CLIEvents, systems.Payload(h.opts.Payload)); err != nil {
		h.fail("producer CLI: writing the inputs: %v", err)
		return
	}
	host, port, _ := strings.Cut(h.srv.Addr, ":")
	n := h.opts.CLIEvents
	vs := []variant{
		{cliPipe, "redis-cli", "`redis-cli --pipe < events.resp`: the same XADD commands in RESP", func(ctx context.Context) (Measurement, error) {
			cmd := exec.CommandContext(ctx, redisCLI, "-h", host, "-p", port, "--pipe")
			f, err := os.Open(resp)
			if err != nil {
				return Measurement{}, err
			}
			defer f.Close()
			cmd.Stdin = f
			return h.timeCommand(ctx, cmd, stream, n)
		}},
		{cliOurs, systems.Ours, "`producer send --stream S --file events.jsonl` (default `--batch` 500)", func(ctx context.Context) (Measurement, error) {
			cmd := exec.CommandContext(ctx, producerBin, "send", "--stream", stream, "--file", jsonl)
			cmd.Env = append(os.Environ(), "REDIS_URL=redis://"+h.srv.Addr+"/0")
			return h.timeCommand(ctx, cmd, stream, n)
		}},
	}
	h.runVariants(ctx, res, PhaseCLI, vs)
}

// buildProducer builds cmd/producer of the main module into dir. The main
// module is the one bench/go.mod replaces with the checkout it sits in, so
// the binary is built from the same commit as the harness.
func buildProducer(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/streamworker/streamworker").Output()
	root := strings.TrimSpace(string(out))
	if err != nil || root == "" {
		return "", fmt.Errorf("finding the main module's checkout (go list -m): %v: run the harness from its checkout", err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "producer")); err != nil {
		return "", fmt.Errorf("cmd/producer not found in the main module's checkout (%s): %w", root, err)
	}
	bin := filepath.Join(dir, "producer")
	build := exec.CommandContext(ctx, "go", "build", "-C", root, "-o", bin, "./cmd/producer")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/producer: %w\n%s", err, msg)
	}
	return bin, nil
}

// writeCLIInputs writes n events of payload as JSONL for the producer, and
// as the XADD commands the producer sends for them (XADD stream * type T
// data D), in RESP, for redis-cli --pipe.
func writeCLIInputs(jsonl, resp, stream string, n int, payload []byte) error {
	line := `{"type":"` + systems.MsgType + `","data":` + string(payload) + "}\n"
	var cmd strings.Builder
	args := []string{"XADD", stream, "*", wire.FieldType, systems.MsgType, wire.FieldData, string(payload)}
	fmt.Fprintf(&cmd, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&cmd, "$%d\r\n%s\r\n", len(a), a)
	}
	for path, rec := range map[string]string{jsonl: line, resp: cmd.String()} {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for range n {
			if _, err := w.WriteString(rec); err != nil {
				f.Close()
				return err
			}
		}
		if err := errors.Join(w.Flush(), f.Close()); err != nil {
			return err
		}
	}
	return nil
}

// timeCommand runs cmd against an empty Redis and checks stream then holds
// n entries. The whole process is timed: start-up, reading, sending.
func (h *harness) timeCommand(ctx context.Context, cmd *exec.Cmd, stream string, n int) (Measurement, error) {
	if err := h.flush(ctx); err != nil {
		return Measurement{}, err
	}
	var stderr tail
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := usage.Measure(h.srv.Pid())
	err := cmd.Run()
	end := usage.Measure(h.srv.Pid())
	if err != nil {
		return Measurement{}, fmt.Errorf("%s: %w\n%s", cmd.Args[0], err, stderr.String())
	}
	got, err := h.admin.XLen(ctx, stream).Result()
	if err != nil {
		return Measurement{}, err
	}
	if got != int64(n) {
		return Measurement{}, fmt.Errorf("%s: %d entries stored, want %d\n%s", filepath.Base(cmd.Args[0]), got, n, stderr.String())
	}
	c := end.Sub(start)
	return Measurement{
		N: n, Wall: c.Wall, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), RedisCPU: c.RedisCPU,
		PeakRSS: usage.PeakRSS(cmd.ProcessState), ProcessCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		EndedAt: end.At.UnixNano(),
	}, nil
}

// Package compare is the comparison harness behind `make bench`: against
// one redis-server it starts, it runs streamworker, a bare go-redis loop,
// asynq and Watermill on the same messages, each phase of each system in a
// child process of its own so that CPU and peak memory are that system's
// alone, and writes a markdown report, charts and the raw numbers.
package compare

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/bench/internal/redisserver"
	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/config"
)

// The phases, in the order they run.
const (
	PhaseThroughput = "throughput"   // produce and consume msgs/s of every system
	PhaseLatency    = "latency"      // XADD-to-handler latency at a fixed offered load, every system
	PhaseIO         = "io"           // a handler that sleeps, at high concurrency: ours, asynq, Watermill
	PhaseFailures   = "failures"     // ours with some messages retried, and with all dead-lettered
	PhaseOrder      = "order"        // ours on a partitioned stream with per-key order, and unordered
	PhaseCLI        = "producer-cli" // producer send --file against redis-cli --pipe
	PhaseGrowth     = "growth"       // ours as concurrency, payload size and backlog grow
	PhaseMemory     = "memory"       // MEMORY USAGE per stored event, with and without MAXLEN ~
	PhaseProfile    = "profile"      // a CPU profile of ours consuming at the daemon's defaults
)

var allPhases = []string{PhaseThroughput, PhaseLatency, PhaseIO, PhaseFailures, PhaseOrder, PhaseCLI, PhaseGrowth, PhaseMemory, PhaseProfile}

// Options are the harness's settings; ParseFlags fills them from the command
// line with the defaults shown there.
type Options struct {
	Out     string   // directory for README.md, results.json and the charts
	Command string   // the command shown in the report as the one that made it
	Systems []string // which systems run (systems.Names)
	Phases  []string // which phases run (allPhases)

	Msgs     int // messages per produce and per consume
	Runs     int // runs per system in the throughput phase
	Payload  int // payload bytes
	Protocol int // RESP version of the clients under test, 0 for go-redis's default

	OursConcurrency      int // WORKER_CONCURRENCY
	OursFetch            int // WORKER_FETCH_COUNT
	BareCount            int // XREADGROUP COUNT of the bare loop
	AsynqConcurrency     int // asynq Config.Concurrency
	WatermillSubscribers int // Watermill Router handlers
	Batch                int // messages per pipelined round trip (ours, bare)
	Producers            int // publishing goroutines (asynq, Watermill)

	LatencyRate     float64       // offered load, messages per second
	LatencyDuration time.Duration // how long the load is offered
	LatencySenders  int           // goroutines sending the paced messages

	IOMsgs        int           // messages of ours' runs in the io phase
	IOPeerMsgs    int           // messages of the peers' runs in the io phase
	IOSleep       time.Duration // how long the io phase's handler sleeps
	IOConcurrency int           // handlers (ours), workers (asynq), subscriptions (Watermill)

	FailEvery           int           // every FailEvery-th message fails its first attempt
	FailRetryBase       time.Duration // WORKER_RETRY_BASE (and _MAX) of the failures phase
	FailPromoteInterval time.Duration // WORKER_PROMOTE_INTERVAL of the failures phase
	FailPeerMsgs        int           // messages of asynq's runs in the failures phase

	OrderPartitions int // WORKER_PARTITIONS of the order phase
	OrderKeys       int // partition keys of the order phase

	CLIEvents int // JSONL events of the producer-cli phase

	ProfileMsgs int // messages of the profile phase

	SweepMsgs        int   // messages per run of the growth sweeps
	SweepConcurrency []int // WORKER_CONCURRENCY values
	SweepPayload     []int // payload sizes, bytes
	SweepMiB         int   // cap on the payload bytes of one payload-sweep run
	SweepBacklog     []int // backlog sizes, entries
	MaxBacklog       int   // backlogs above this are skipped
	MemoryEvents     int   // events published for the MEMORY USAGE measurement
	MemoryMaxLen     int64 // MAXLEN ~ of its trimmed variant
	ChildTimeout     time.Duration
	// GOGC, when positive, is the GOGC of every child. At 0 each system runs
	// at its own default: Go's 100, and ours at the daemon's
	// worker.DefaultGCPercent (worker.SetGCDefault).
	GOGC int
}

// quick are the settings -quick changes, for a run of about a minute.
var quick = map[string]string{
	"msgs": "20000", "latency-duration": "2s", "sweep-msgs": "20000",
	"max-backlog": "100000", "sweep-mib": "32", "memory-events": "20000",
	"io-msgs": "20000", "io-peer-msgs": "5000", "fail-peer-msgs": "5000", "cli-events": "50000", "profile-msgs": "100000",
}

// ParseFlags reads the command line.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: compare [flags]\n\n"+
			"Runs streamworker, a bare go-redis loop, asynq and Watermill against one\n"+
			"redis-server it starts, and writes OUT/README.md, OUT/results.json and charts.\n\n")
		fs.PrintDefaults()
	}
	var systemsFlag, phasesFlag, concFlag, payloadFlag, backlogFlag string
	quickFlag := fs.Bool("quick", false, "a small run of about a minute: "+quickSummary())
	fs.StringVar(&o.Out, "out", "results", "directory for README.md, results.json and the charts")
	fs.StringVar(&o.Command, "command", "", "the command to show in the report as the one that made it (default: this program's arguments)")
	fs.StringVar(&systemsFlag, "systems", strings.Join(systems.Names, ","), "systems to run")
	fs.StringVar(&phasesFlag, "phases", strings.Join(allPhases, ","), "phases to run")
	fs.IntVar(&o.Msgs, "msgs", 200_000, "messages per produce and per consume")
	fs.IntVar(&o.Runs, "runs", 3, "runs per system in the throughput phase (median, min, max)")
	fs.IntVar(&o.Payload, "payload", 100, "payload bytes (at least 100)")
	fs.IntVar(&o.Protocol, "protocol", 0, "RESP version of the clients under test, 2 or 3 (0: go-redis's default, 3)")
	fs.IntVar(&o.OursConcurrency, "concurrency", 256, "streamworker's WORKER_CONCURRENCY (the daemon's default is 64; a read asks for no more entries than free handler slots plus the read-ahead (WORKER_READ_AHEAD), so this bounds the batch size with slow handlers)")
	fs.IntVar(&o.OursFetch, "fetch", 256, "streamworker's WORKER_FETCH_COUNT")
	fs.IntVar(&o.BareCount, "read-count", 100, "XREADGROUP COUNT of the bare loop")
	fs.IntVar(&o.AsynqConcurrency, "asynq-concurrency", 50, "asynq Server Config.Concurrency")
	fs.IntVar(&o.WatermillSubscribers, "watermill-subscribers", 16, "Watermill Router handlers, each its own subscription")
	fs.IntVar(&o.Batch, "batch", 100, "messages per pipelined round trip when ours and the bare loop produce")
	fs.IntVar(&o.Producers, "producers", 50, "publishing goroutines for asynq and Watermill, which have no batch path")
	fs.Float64Var(&o.LatencyRate, "latency-rate", 5000, "offered load of the latency phase, messages per second")
	fs.DurationVar(&o.LatencyDuration, "latency-duration", 10*time.Second, "how long the latency phase offers its load, per system")
	fs.IntVar(&o.LatencySenders, "latency-senders", 8, "goroutines sending the latency phase's paced messages")
	fs.IntVar(&o.IOMsgs, "io-msgs", 500_000, "messages of ours' runs in the io phase (10 s at the ideal rate)")
	fs.IntVar(&o.IOPeerMsgs, "io-peer-msgs", 50_000, "messages of asynq's and Watermill's runs in the io phase")
	fs.DurationVar(&o.IOSleep, "io-sleep", 20*time.Millisecond, "how long the io phase's handler sleeps per message (a database call)")
	fs.IntVar(&o.IOConcurrency, "io-concurrency", 1000, "io phase: WORKER_CONCURRENCY, asynq workers, Watermill subscriptions")
	fs.IntVar(&o.FailEvery, "fail-every", 10, "failures phase: every Nth message fails its first attempt")
	fs.DurationVar(&o.FailRetryBase, "fail-retry-base", time.Millisecond, "failures phase: WORKER_RETRY_BASE and WORKER_RETRY_MAX, so the retries' wait is not what is measured")
	fs.DurationVar(&o.FailPromoteInterval, "fail-promote-interval", 50*time.Millisecond, "failures phase: WORKER_PROMOTE_INTERVAL (the daemon's default is 250ms)")
	fs.IntVar(&o.FailPeerMsgs, "fail-peer-msgs", 50_000, "failures phase: messages of asynq's runs")
	fs.IntVar(&o.OrderPartitions, "order-partitions", 16, "order phase: WORKER_PARTITIONS")
	fs.IntVar(&o.OrderKeys, "order-keys", 1000, "order phase: distinct partition keys")
	fs.IntVar(&o.CLIEvents, "cli-events", 1_000_000, "producer-cli phase: JSONL events sent")
	fs.IntVar(&o.ProfileMsgs, "profile-msgs", 1_000_000, "profile phase: messages consumed under the CPU profiler")
	fs.IntVar(&o.SweepMsgs, "sweep-msgs", 100_000, "messages per run of the concurrency and payload sweeps")
	fs.StringVar(&concFlag, "sweep-concurrency", "1,4,16,64,256", "WORKER_CONCURRENCY values of the concurrency sweep")
	fs.StringVar(&payloadFlag, "sweep-payload", "100,1024,16384,65536", "payload sizes (bytes) of the payload sweep")
	fs.IntVar(&o.SweepMiB, "sweep-mib", 256, "cap on the payload MiB of one payload-sweep run (fewer messages for large payloads)")
	fs.StringVar(&backlogFlag, "sweep-backlog", "10000,100000,1000000,5000000", "backlog sizes (entries) of the backlog sweep")
	fs.IntVar(&o.MaxBacklog, "max-backlog", 5_000_000, "skip backlogs larger than this (5M entries take ~1 GiB of Redis memory and a minute or two)")
	fs.IntVar(&o.MemoryEvents, "memory-events", 100_000, "events published for the MEMORY USAGE measurement")
	fs.Int64Var(&o.MemoryMaxLen, "memory-maxlen", 10_000, "MAXLEN ~ of the trimmed variant of the MEMORY USAGE measurement")
	fs.DurationVar(&o.ChildTimeout, "child-timeout", 10*time.Minute, "limit on one child process")
	fs.IntVar(&o.GOGC, "gogc", 0, "GOGC of every child (0: each system's default, Go's 100 and for streamworker the daemon's 400)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *quickFlag {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quick {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return o, err
				}
			}
		}
	}
	var err error
	if o.Systems, err = names(systemsFlag, systems.Names); err != nil {
		return o, fmt.Errorf("-systems: %w", err)
	}
	if o.Phases, err = names(phasesFlag, allPhases); err != nil {
		return o, fmt.Errorf("-phases: %w", err)
	}
	if o.SweepConcurrency, err = ints(concFlag); err != nil {
		return o, fmt.Errorf("-sweep-concurrency: %w", err)
	}
	if o.SweepPayload, err = ints(payloadFlag); err != nil {
		return o, fmt.Errorf("-sweep-payload: %w", err)
	}
	if o.SweepBacklog, err = ints(backlogFlag); err != nil {
		return o, fmt.Errorf("-sweep-backlog: %w", err)
	}
	if o.Command == "" {
		o.Command = strings.Join(append([]string{"go run ./cmd/compare"}, args...), " ")
	}
	return o, o.validate()
}

func quickSummary() string {
	keys := make([]string, 0, len(quick))
	for k := range quick {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = "-" + k + " " + quick[k]
	}
	return strings.Join(parts, " ") + " (flags given explicitly win)"
}

func (o Options) validate() error {
	switch {
	case o.Msgs < 1, o.Runs < 1, o.SweepMsgs < 1, o.MemoryEvents < 1, o.IOMsgs < 1, o.IOPeerMsgs < 1, o.CLIEvents < 1, o.FailPeerMsgs < 1, o.ProfileMsgs < 1:
		return errors.New("-msgs, -runs, -sweep-msgs, -memory-events, -io-msgs, -io-peer-msgs, -fail-peer-msgs, -cli-events and -profile-msgs must be at least 1")
	case o.IOSleep <= 0, o.IOConcurrency < 1, o.FailEvery < 1, o.FailRetryBase < time.Millisecond, o.FailPromoteInterval < time.Millisecond,
		o.OrderPartitions < 2, o.OrderKeys < 1:
		return errors.New("-io-sleep, -io-concurrency, -fail-every and -order-keys must be positive, -fail-retry-base and -fail-promote-interval at least 1ms, -order-partitions at least 2")
	case o.Payload < 100:
		return errors.New("-payload must be at least 100 bytes")
	case o.LatencyRate <= 0, o.LatencyDuration <= 0, o.LatencySenders < 1:
		return errors.New("-latency-rate, -latency-duration and -latency-senders must be positive")
	case o.Batch < 1, o.Producers < 1, o.OursConcurrency < 1, o.OursFetch < 1, o.BareCount < 1,
		o.AsynqConcurrency < 1, o.WatermillSubscribers < 1:
		return errors.New("concurrency, fetch, count, batch and producer settings must be at least 1")
	case o.Protocol != 0 && o.Protocol != 2 && o.Protocol != 3:
		return errors.New("-protocol must be 2 or 3")
	}
	return nil
}

func names(list string, known []string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("unknown %q (want some of %s)", n, strings.Join(known, ","))
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("none given")
	}
	return out, nil
}

func ints(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a positive number", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// Main runs the harness with the command line args: progress goes to
// stderr, the report to stdout and to -out.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	return Run(ctx, opts, stdout, stderr)
}

// Run runs the phases opts asks for and writes the report, even when a
// system failed; it then returns an error naming every failure.
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to run its children: %w", err)
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return err
	}
	srv, err := redisserver.StartOwn(ctx)
	if err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	defer srv.Stop()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()

	h := &harness{opts: opts, exe: exe, srv: srv, admin: admin, log: stderr}
	res := &Results{Command: opts.Command, Options: opts, Started: time.Now()}
	if res.Machine, err = describeMachine(ctx, admin); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "redis-server %s on %s; %d cores, load %.2f; results in %s\n",
		res.Machine.RedisVersion, srv.Addr, res.Machine.CPUs, res.Machine.LoadStart, opts.Out)
	for _, phase := range opts.Phases {
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		fmt.Fprintf(stderr, "== %s\n", phase)
		switch phase {
		case PhaseThroughput:
			h.throughput(ctx, res)
		case PhaseLatency:
			h.latency(ctx, res)
		case PhaseIO:
			h.io(ctx, res)
		case PhaseFailures:
			h.failing(ctx, res)
		case PhaseOrder:
			h.order(ctx, res)
		case PhaseCLI:
			h.producerCLI(ctx, res)
		case PhaseGrowth:
			h.growth(ctx, res)
		case PhaseMemory:
			h.memory(ctx, res)
		case PhaseProfile:
			h.profile(ctx, res)
		}
		res.PhaseTimes = append(res.PhaseTimes, PhaseTime{Phase: phase, Took: time.Since(start)})
	}
	res.Finished = time.Now()
	res.Machine.LoadEnd = loadAverage()
	res.Failures = h.failures

	if err := writeOutputs(res, opts.Out, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "took %s; wrote %s\n", res.Finished.Sub(res.Started).Round(time.Second), filepath.Join(opts.Out, "README.md"))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(h.failures) > 0 {
		return fmt.Errorf("%d failures:\n  %s", len(h.failures), strings.Join(h.failures, "\n  "))
	}
	return nil
}

// harness is one run of the phases against one redis-server.
type harness struct {
	opts     Options
	exe      string
	srv      *redisserver.Server
	admin    *redis.Client // the harness's own: flushing, INFO, MEMORY USAGE
	log      io.Writer
	failures []string
}

func (h *harness) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.failures = append(h.failures, firstLine(msg))
	fmt.Fprintln(h.log, "FAILED:", msg)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// oursDefaults is streamworker at the daemon's defaults (config.Default():
// WORKER_CONCURRENCY, WORKER_FETCH_COUNT and the rest), an entry of the
// throughput and latency phases beside ours at -concurrency and -fetch.
const oursDefaults = "ours-defaults"

// entryNames are the throughput and latency phases' entries, in report
// order: the systems, and ours a second time at the daemon's defaults.
var entryNames = []string{systems.Ours, oursDefaults, systems.Bare, systems.BarePipelined, systems.Asynq, systems.Watermill}

// entries are the entries of this run: the systems asked for, with ours at
// the daemon's defaults after ours.
func (h *harness) entries() []string {
	var out []string
	for _, name := range entryNames {
		if slices.Contains(h.opts.Systems, systemOf(name)) {
			out = append(out, name)
		}
	}
	return out
}

// systemOf is the system an entry runs.
func systemOf(entry string) string {
	if entry == oursDefaults {
		return systems.Ours
	}
	return entry
}

// config is the systems.Config of the entry name in this run.
func (h *harness) config(name string) systems.Config {
	cfg := systems.Config{
		Addr: h.srv.Addr, Protocol: h.opts.Protocol, Queue: "bench-" + name,
		Batch: h.opts.Batch, Producers: h.opts.Producers,
	}
	switch name {
	case systems.Ours:
		cfg.Concurrency, cfg.FetchCount = h.opts.OursConcurrency, h.opts.OursFetch
	case oursDefaults:
		d := config.Default()
		cfg.Concurrency, cfg.FetchCount = d.Concurrency, d.FetchCount
	case systems.Bare, systems.BarePipelined:
		cfg.FetchCount = h.opts.BareCount
	case systems.Asynq:
		cfg.Concurrency = h.opts.AsynqConcurrency
	case systems.Watermill:
		cfg.Concurrency = h.opts.WatermillSubscribers
	}
	return cfg
}

// flush empties Redis between runs, so each starts from the same state.
func (h *harness) flush(ctx context.Context) error {
	return h.admin.FlushAll(ctx).Err()
}

// usedMemory is Redis's used_memory, bytes.
func (h *harness) usedMemory(ctx context.Context) (int64, error) {
	v, err := infoField(ctx, h.admin, "memory", "used_memory")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func infoField(ctx context.Context, c *redis.Client, section, field string) (string, error) {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO %s has no %s", section, field)
}

func writeOutputs(res *Results, dir string, stdout io.Writer) error {
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	charts, err := drawCharts(res, dir)
	if err != nil {
		return fmt.Errorf("drawing the charts: %w", err)
	}
	report := renderReport(res, charts)
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(report), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, report)
	return err
}

package compare

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamworker/streamworker/bench/internal/systems"
	"github.com/streamworker/streamworker/bench/internal/usage"
	"github.com/streamworker/streamworker/worker"
)

// ChildEnv, set in a process's environment, makes the harness's program a
// child that runs one job: IsChild tells, Child runs it.
const ChildEnv = "STREAMWORKER_BENCH_CHILD"

// IsChild reports whether this process was started by the harness to run
// one job.
func IsChild(getenv func(string) string) bool { return getenv(ChildEnv) != "" }

// What a child does.
const (
	jobProduce = "produce" // Produce N messages, timed; check they are stored
	jobConsume = "consume" // consume N stored messages until all are acknowledged, timed
	jobListen  = "listen"  // consume N messages as they come, recording each one's latency
	jobSend    = "send"    // Send N messages at Rate per second, each stamped with its send time
)

// job is what the parent asks of a child, on the child's stdin.
type job struct {
	System  string
	Kind    string
	Config  systems.Config
	N       int
	Payload int     // bytes
	Rate    float64 // jobSend: messages per second
	Senders int     // jobSend: goroutines sending
	// Sleep, for jobConsume, is how long each handler call sleeps, standing
	// for a database call; 0 for a no-op handler.
	Sleep time.Duration
	// CPUProfile, for jobConsume, is a file to write a CPU profile of the
	// timed phase to; "" for none.
	CPUProfile string
	RedisPid   int // whose CPU to measure, 0 for none
}

// Measurement is one child's timed phase.
type Measurement struct {
	N        int           // messages
	Wall     time.Duration // the timed phase
	CPU      time.Duration // the child's CPU (user + system, all threads) in the timed phase
	RedisCPU time.Duration // redis-server's CPU in the timed phase, -1 when unknown
	Mallocs  uint64        // heap allocations in the timed phase
	Bytes    uint64        // heap bytes allocated in the timed phase
	// PeakRSS is the child's peak resident memory over its whole life
	// (ru_maxrss), bytes. The parent fills it in.
	PeakRSS int64
	// ProcessCPU is the child's CPU over its whole life: start-up, clients,
	// checks and shutdown included. The parent fills it in.
	ProcessCPU time.Duration
	// EndedAt is when the timed phase ended, Unix ns: comparable between
	// children, which share the machine's clock.
	EndedAt int64
	// RedisCommands is where Redis's time went over the consume, by command
	// (INFO commandstats before and after it); the parent fills it in for
	// the workload phases' consumes, empty elsewhere.
	RedisCommands []CommandStat `json:",omitempty"`
}

// Rate is messages per second of the timed phase.
func (m Measurement) Rate() float64 {
	if m.Wall <= 0 {
		return 0
	}
	return float64(m.N) / m.Wall.Seconds()
}

// CPUPerMsg is the child's CPU per message, µs.
func (m Measurement) CPUPerMsg() float64 { return perMsg(m.CPU, m.N) }

// RedisCPUPerMsg is Redis's CPU per message, µs, or -1.
func (m Measurement) RedisCPUPerMsg() float64 {
	if m.RedisCPU < 0 {
		return -1
	}
	return perMsg(m.RedisCPU, m.N)
}

func perMsg(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(n)
}

// childResult is what a child reports on its stdout, as the last line.
type childResult struct {
	Measurement
	Handled   int64
	Latencies []int64 // jobListen: ns from the send stamp to the handler's start, in arrival order
	SendLate  int64   // jobSend: messages sent more than a millisecond after they were due
	LastSent  int64   // jobSend: when the last send call returned, Unix ns
}

// Child runs the job on stdin and writes its result to stdout. A line
// "ready" comes first for jobListen, once its consumer is reading.
func Child(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var j job
	if err := json.NewDecoder(stdin).Decode(&j); err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	if j.System == systems.Ours {
		// As the daemon runs (worker.Main, cmd/worker): its GC target,
		// unless GOGC came with the child's environment.
		worker.SetGCDefault(os.Getenv)
	}
	sys, err := systems.New(j.System, j.Config)
	if err != nil {
		return err
	}
	var res childResult
	switch j.Kind {
	case jobProduce:
		res, err = produce(ctx, sys, j)
	case jobConsume:
		res, err = consume(ctx, sys, j)
	case jobListen:
		res, err = listen(ctx, sys, j, stdout)
	case jobSend:
		res, err = send(ctx, sys, j)
	default:
		err = fmt.Errorf("unknown job %q", j.Kind)
	}
	// Shut down before reporting, so that a failed shutdown fails the job.
	if cerr := sys.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing %s: %w", j.System, cerr))
	}
	if err != nil {
		return err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

func measured(j job, start usage.Snapshot) childResult {
	end := usage.Measure(j.RedisPid)
	c := end.Sub(start)
	return childResult{Measurement: Measurement{
		N: j.N, Wall: c.Wall, CPU: c.CPU, RedisCPU: c.RedisCPU, Mallocs: c.Mallocs, Bytes: c.Bytes,
		EndedAt: end.At.UnixNano(),
	}}
}

func produce(ctx context.Context, sys systems.System, j job) (childResult, error) {
	payload := systems.Payload(j.Payload)
	start := usage.Measure(j.RedisPid)
	err := sys.Produce(ctx, j.N, payload)
	res := measured(j, start)
	if err != nil {
		return res, fmt.Errorf("producing: %w", err)
	}
	stored, err := sys.Stored(ctx)
	if err != nil {
		return res, fmt.Errorf("counting what was produced: %w", err)
	}
	// With MAXLEN ~ the stream keeps about MaxLen entries, at least that.
	if want := int64(j.N); stored != want && (j.Config.MaxLen <= 0 || stored < min(want, j.Config.MaxLen)) {
		return res, fmt.Errorf("%d messages stored after producing %d", stored, j.N)
	}
	return res, nil
}

func consume(ctx context.Context, sys systems.System, j job) (childResult, error) {
	stored, err := sys.Stored(ctx)
	if err != nil {
		return childResult{}, fmt.Errorf("counting the messages to consume: %w", err)
	}
	if stored != int64(j.N) {
		return childResult{}, fmt.Errorf("%d messages stored before consuming, want %d", stored, j.N)
	}
	handle := func([]byte) {}
	if j.Sleep > 0 {
		handle = func([]byte) { time.Sleep(j.Sleep) }
	}
	stopProfile := func() error { return nil }
	if j.CPUProfile != "" {
		f, err := os.Create(j.CPUProfile)
		if err != nil {
			return childResult{}, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return childResult{}, err
		}
		stopProfile = func() error {
			pprof.StopCPUProfile()
			return f.Close()
		}
	}
	start := usage.Measure(j.RedisPid)
	err = sys.Start(ctx, j.N, handle)
	if err == nil {
		err = sys.Wait(ctx)
	}
	res := measured(j, start)
	if perr := stopProfile(); perr != nil && err == nil {
		err = fmt.Errorf("writing the CPU profile: %w", perr)
	}
	res.Handled = sys.Handled()
	if err != nil {
		return res, fmt.Errorf("consuming: %w", err)
	}
	if o, ok := sys.(interface{ Violations() int64 }); ok && o.Violations() > 0 {
		return res, fmt.Errorf("%d messages ran out of their key's order", o.Violations())
	}
	if res.Handled != int64(j.N) {
		return res, fmt.Errorf("the handler ran %d times for %d messages", res.Handled, j.N)
	}
	return res, nil
}

func listen(ctx context.Context, sys systems.System, j job, stdout io.Writer) (childResult, error) {
	lat := make([]int64, j.N)
	var next atomic.Int64
	var bad atomic.Int64
	handle := func(p []byte) {
		now := time.Now().UnixNano() // first: the handler has started
		sent, ok := stampOf(p)
		if !ok {
			bad.Add(1)
			return
		}
		if i := next.Add(1) - 1; i < int64(len(lat)) {
			lat[i] = now - sent
		}
	}
	if err := sys.Start(ctx, j.N, handle); err != nil {
		return childResult{}, err
	}
	if err := sys.Ready(ctx); err != nil {
		return childResult{}, err
	}
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return childResult{}, err
	}
	start := usage.Measure(j.RedisPid)
	err := sys.Wait(ctx)
	res := measured(j, start)
	res.Handled = sys.Handled()
	if err != nil {
		return res, fmt.Errorf("consuming: %w", err)
	}
	if b := bad.Load(); b > 0 {
		return res, fmt.Errorf("%d messages without a send stamp", b)
	}
	if res.Handled != int64(j.N) {
		return res, fmt.Errorf("the handler ran %d times for %d messages", res.Handled, j.N)
	}
	res.Latencies = lat
	return res, nil
}

func send(ctx context.Context, sys systems.System, j job) (childResult, error) {
	interval := time.Duration(float64(time.Second) / j.Rate)
	due := make(chan time.Time, j.N) // never full: the pacer does not wait for the senders
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var late, lastSent atomic.Int64
	var wg sync.WaitGroup
	for range j.Senders {
		wg.Go(func() {
			buf := stamped(j.Payload)
			for d := range due {
				now := time.Now()
				if now.Sub(d) > time.Millisecond {
					late.Add(1)
				}
				stamp(buf, now)
				if err := sys.Send(ctx, buf); err != nil {
					cancel(fmt.Errorf("sending: %w", err))
					return
				}
				for done := time.Now().UnixNano(); ; {
					if last := lastSent.Load(); done <= last || lastSent.CompareAndSwap(last, done) {
						break
					}
				}
			}
		})
	}
	start := usage.Measure(j.RedisPid)
	t0 := start.At
	for i := range j.N {
		d := t0.Add(time.Duration(i) * interval)
		if wait := time.Until(d); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		due <- d
	}
	close(due)
	wg.Wait()
	res := measured(j, start)
	res.SendLate, res.LastSent = late.Load(), lastSent.Load()
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// The latency phase's payload starts with its send time: stampPrefix, then
// the Unix time in nanoseconds as stampDigits digits, in a JSON string.
const (
	stampPrefix = `{"sent_ns":"`
	stampDigits = 19
)

// stamped returns a payload of size bytes with room for a stamp.
func stamped(size int) []byte {
	p := []byte(stampPrefix + "0000000000000000000" + `","note":"`)
	for len(p) < max(size, 100)-2 {
		p = append(p, 'x')
	}
	return append(p, '"', '}')
}

func stamp(p []byte, t time.Time) {
	v := t.UnixNano()
	for i := len(stampPrefix) + stampDigits - 1; i >= len(stampPrefix); i-- {
		p[i] = byte('0' + v%10)
		v /= 10
	}
}

func stampOf(p []byte) (int64, bool) {
	if len(p) < len(stampPrefix)+stampDigits || !bytes.HasPrefix(p, []byte(stampPrefix)) {
		return 0, false
	}
	var v int64
	for _, c := range p[len(stampPrefix) : len(stampPrefix)+stampDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// spawn runs j in a child process and returns its result, with the child's
// peak memory and whole-life CPU from the kernel's accounting. ready, if
// not nil, is closed when the child says "ready".
func (h *harness) spawn(ctx context.Context, j job, ready chan<- struct{}) (childResult, error) {
	j.RedisPid = h.srv.Pid()
	in, err := json.Marshal(j)
	if err != nil {
		return childResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.ChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.exe)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	if h.opts.GOGC > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOGC=%d", h.opts.GOGC))
	}
	cmd.Stdin = bytes.NewReader(in)
	var stderr tail
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return childResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return childResult{}, err
	}
	var res childResult
	var decodeErr error
	got := false
	r := bufio.NewReader(out)
	for {
		line, rerr := r.ReadBytes('\n')
		switch line = bytes.TrimSpace(line); {
		case len(line) == 0:
		case string(line) == "ready":
			if ready != nil {
				close(ready)
				ready = nil
			}
		default:
			decodeErr = json.Unmarshal(line, &res)
			got = decodeErr == nil
		}
		if rerr != nil {
			break
		}
	}
	what := j.System + " " + j.Kind
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("%s: %w\n%s", what, err, stderr.String())
	}
	if !got {
		return res, fmt.Errorf("%s: no result (%w)\n%s", what, decodeErr, stderr.String())
	}
	if s := stderr.String(); s != "" {
		fmt.Fprintf(h.log, "  (%s wrote to stderr: %s)\n", what, firstLine(s))
	}
	res.PeakRSS = usage.PeakRSS(cmd.ProcessState)
	res.ProcessCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// tail keeps the last 8 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 8<<10; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

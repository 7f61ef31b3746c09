package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
)

// group is the consumer group every test's workers join.
const group = "e2e"

// workerProc is one worker process under test.
type workerProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	output *lockedBuffer // stdout and stderr: the JSON log
	done   chan struct{} // closed when the process has exited and its output is read
}

// startWorker runs bin with exactly env (nothing is inherited, so no stray
// REDIS_URL reaches it). The process is killed when the test ends if it is
// still running; its output is logged when the test failed.
func startWorker(t *testing.T, bin, name string, env map[string]string) *workerProc {
	t.Helper()
	p := &workerProc{t: t, name: name, cmd: exec.Command(bin), output: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Env = envList(env)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output (last 16 KiB):\n%s", name, tail(p.output.String(), 16<<10))
		}
	})
	return p
}

func (p *workerProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *workerProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *workerProc) wait(timeout time.Duration) int {
	p.t.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-t.C:
		p.t.Fatalf("%s did not exit within %s", p.name, timeout)
		return -1
	}
}

// stop sends SIGTERM and requires a clean exit within timeout; it returns how
// long the exit took.
func (p *workerProc) stop(timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(timeout); code != 0 {
		p.t.Fatalf("%s exited with code %d after SIGTERM, want 0", p.name, code)
	}
	return time.Since(start)
}

// logLines returns the process's JSON log records; lines that are not JSON
// are returned as a record with only "msg".
func (p *workerProc) logLines() []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(p.output.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rec := map[string]any{}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			rec = map[string]any{"msg": line}
		}
		out = append(out, rec)
	}
	return out
}

// requireCleanLog fails on any ERROR record and requires the runtime to have
// reported a completed shutdown.
func (p *workerProc) requireCleanLog() {
	p.t.Helper()
	var complete bool
	for _, rec := range p.logLines() {
		if rec["level"] == "ERROR" {
			p.t.Errorf("%s logged an error: %v", p.name, rec)
		}
		if rec["msg"] == "shutdown complete" {
			complete = true
		}
	}
	if !complete {
		p.t.Errorf("%s never logged \"shutdown complete\"", p.name)
	}
}

// waitFor polls cond until it holds, failing the test at the deadline or as
// soon as p (when not nil) exits. state describes what was seen, for the
// failure message.
func waitFor(t *testing.T, timeout time.Duration, p *workerProc, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("%s exited (code %d) while waiting for %s; last seen: %s", p.name, p.cmd.ProcessState.ExitCode(), what, state)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		}
		<-tick.C
	}
}

// workerEnv is a complete environment for one worker of group on stream.
func workerEnv(redisURL, stream, consumer string, extra map[string]string) map[string]string {
	env := map[string]string{
		"REDIS_URL":               redisURL,
		"WORKER_STREAMS":          stream,
		"WORKER_GROUP":            group,
		"WORKER_CONSUMER":         consumer,
		"WORKER_CONCURRENCY":      "8",
		"WORKER_MAX_ATTEMPTS":     "3",
		"WORKER_RETRY_BASE":       "5ms",
		"WORKER_RETRY_MAX":        "20ms",
		"WORKER_PROMOTE_INTERVAL": "10ms",
		"WORKER_SHUTDOWN_TIMEOUT": "20s",
		"WORKER_BLOCK":            "500ms",
		"WORKER_HTTP_ADDR":        "off",
		"WORKER_DEDUPE_WINDOW":    "0",
		"LOG_LEVEL":               "info",
		"LOG_FORMAT":              "json",
		// A race in the worker fails its exit code (66) at once.
		"GORACE": "halt_on_error=1",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpGet fetches url without keeping connections, so no client goroutine
// outlives the test.
func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// newProducer returns a producer on its own client, closed with the test.
func newProducer(t *testing.T, srv *testredis.Server) *producer.Producer {
	t.Helper()
	c, err := producer.NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return producer.New(c, producer.Options{})
}

// payload is the data of a test message; the custom worker reads the same
// shape.
func payload(seq, sleepMS int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"sleep_ms":%d}`, seq, sleepMS)
}

// seqOf reads the seq back from a message's data.
func seqOf(t *testing.T, data string) int {
	t.Helper()
	var p struct {
		Seq int `json:"seq"`
	}
	if err := json.Unmarshal([]byte(data), &p); err != nil || p.Seq <= 0 {
		t.Fatalf("data %q has no seq: %v", data, err)
	}
	return p.Seq
}

// groupState is what Redis says about the group on a stream.
type groupState struct {
	pending, lag, entriesRead int64
	lastDelivered             string
	delayed, dead             int64
}

func (g groupState) String() string {
	return fmt.Sprintf("pending=%d lag=%d entries_read=%d last_delivered=%s delayed=%d dead=%d",
		g.pending, g.lag, g.entriesRead, g.lastDelivered, g.delayed, g.dead)
}

func readGroup(t *testing.T, c *redis.Client, stream string) groupState {
	t.Helper()
	ctx := context.Background()
	var g groupState
	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		t.Fatalf("XINFO GROUPS %s: %v", stream, err)
	}
	g.lag = -2 // no group yet
	for _, x := range groups {
		if x.Name == group {
			g.pending, g.lag, g.entriesRead, g.lastDelivered = x.Pending, x.Lag, x.EntriesRead, x.LastDeliveredID
		}
	}
	if g.delayed, err = c.ZCard(ctx, wire.DelayedKey(stream)).Result(); err != nil {
		t.Fatal(err)
	}
	if g.dead, err = c.XLen(ctx, wire.DeadLetterKey(stream)).Result(); err != nil {
		t.Fatal(err)
	}
	return g
}

// counts reads a hash of seq -> count.
func counts(t *testing.T, c *redis.Client, key string) map[int]int {
	t.Helper()
	h, err := c.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int]int, len(h))
	for k, v := range h {
		seq, _ := strconv.Atoi(k)
		n, _ := strconv.Atoi(v)
		out[seq] = n
	}
	return out
}

// members reads a set of seqs, sorted.
func members(t *testing.T, c *redis.Client, key string) []int {
	t.Helper()
	ms, err := c.SMembers(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, 0, len(ms))
	for _, m := range ms {
		n, _ := strconv.Atoi(m)
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// lockedBuffer is an io.Writer safe to read while a process writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

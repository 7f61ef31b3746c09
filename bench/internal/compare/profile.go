package compare

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// Profile is a CPU profile of ours consuming a backlog at the daemon's
// defaults: where the time goes that the goals are about.
type Profile struct {
	File    string // the profile, under Options.Out
	Consume Measurement
	Groups  []ProfileShare
	// Top is `go tool pprof -top -cum` of the profile, cut to its table.
	Top string
}

// ProfileShare is the share of the profile's samples whose stack has a
// function matching Focus (a pprof -focus regexp).
type ProfileShare struct {
	Name, Focus string
	Share       float64 // 0..1
}

// profileGroups are the parts of the profile the report names. They
// overlap (a part of the fetch loop is go-redis's parsing), and the
// scheduler's and the GC's parts run on stacks of their own.
var profileGroups = []struct{ name, focus string }{
	{"fetch loop: XREADGROUP, reply parsing, building messages", `worker\.\(\*fetcher\)\.|worker\.\(\*engine\)\.fetchLoop`},
	{"… go-redis reading XREADGROUP replies: raw bytes (readRawReplyWriteTo) or field maps (readXMessageSlice)", `go-redis/v9/internal/proto\.\(\*Reader\)\.readRawReplyWriteTo|go-redis/v9\.readXMessageSlice`},
	{"… parsing a raw reply into messages (worker.parseRead)", `worker\.parseRead$`},
	{"… go-redis's field map per entry (stringInterfaceMapParser: blocking and cluster reads)", `go-redis/v9\.stringInterfaceMapParser`},
	{"handler goroutines: context, middleware, metrics, the handler (engine.work)", `worker\.\(\*engine\)\.work$`},
	{"acknowledgements (engine.ackLoop and its lanes, engine.runLane)", `worker\.\(\*engine\)\.(ackLoop|runLane)`},
	{"socket reads and writes (syscalls)", `syscall\.Syscall|syscall\.RawSyscall|internal/runtime/syscall`},
	{"garbage collection: marking (gcBgMarkWorker)", `runtime\.gcBgMarkWorker$`},
	{"garbage collection: background sweeping and its yields (bgsweep, gosched_m)", `runtime\.bgsweep$|runtime\.gosched_m$`},
	{"garbage collection: returning memory (bgscavenge)", `runtime\.bgscavenge$`},
	{"allocation (mallocgc)", `runtime\.mallocgc$`},
	{"scheduler: finding work, parking and waking goroutines (findRunnable, park_m)", `runtime\.findRunnable$|runtime\.park_m$`},
}

// profile consumes ProfileMsgs messages with ours at the daemon's defaults under
// the CPU profiler, keeps the profile in Out and summarises it.
func (h *harness) profile(ctx context.Context, res *Results) {
	if !slices.Contains(h.opts.Systems, systems.Ours) {
		return
	}
	if err := h.flush(ctx); err != nil {
		h.fail("profile: %v", err)
		return
	}
	cfg := h.config(oursDefaults)
	if _, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobProduce, Config: cfg, N: h.opts.ProfileMsgs, Payload: h.opts.Payload}, nil); err != nil {
		h.fail("profile: %v", err)
		return
	}
	const file = "cpu-defaults.pprof"
	path, err := filepath.Abs(filepath.Join(h.opts.Out, file))
	if err != nil {
		h.fail("profile: %v", err)
		return
	}
	c, err := h.spawn(ctx, job{System: systems.Ours, Kind: jobConsume, Config: cfg, N: h.opts.ProfileMsgs, Payload: h.opts.Payload, CPUProfile: path}, nil)
	if err != nil {
		h.fail("profile: %v", err)
		return
	}
	p := &Profile{File: file, Consume: c.Measurement}
	if p.Top, err = pprofTop(ctx, path); err != nil {
		h.fail("profile: %v", err)
		return
	}
	for _, g := range profileGroups {
		share, err := pprofShare(ctx, path, g.focus)
		if err != nil {
			h.fail("profile: %v", err)
			return
		}
		p.Groups = append(p.Groups, ProfileShare{Name: g.name, Focus: g.focus, Share: share})
		fmt.Fprintf(h.log, "  %5.1f%%  %s\n", 100*share, g.name)
	}
	res.Profile = p
}

// pprofTop is `go tool pprof -top -cum` of the profile at path, from its
// table's header on.
func pprofTop(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount", "30", path).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof -top: %w", err)
	}
	var total []byte // "Duration: …, Total samples = …"
	if i := bytes.Index(out, []byte("Duration:")); i >= 0 {
		total, _, _ = bytes.Cut(out[i:], []byte("\n"))
	}
	if i := bytes.Index(out, []byte("      flat")); i >= 0 {
		out = out[i:]
	}
	return strings.TrimRight(string(total)+"\n"+string(out), "\n"), nil
}

var accounting = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+)% of`)

// pprofShare is the share of the profile's samples with a function that
// matches focus on their stack; 0 when none has.
func pprofShare(ctx context.Context, path, focus string) (float64, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount", "100000", "-focus", focus, path).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("no samples")) || bytes.Contains(out, []byte("matched no samples")) {
			return 0, nil
		}
		return 0, fmt.Errorf("go tool pprof -focus %q: %w\n%s", focus, err, out)
	}
	m := accounting.FindSubmatch(out)
	if m == nil {
		return 0, nil // focus matched nothing: pprof prints no table
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v / 100, err
}

func renderProfile(b *strings.Builder, res *Results) {
	p := res.Profile
	if p == nil {
		return
	}
	fmt.Fprintf(b, "\n## Where streamworker's CPU goes, at the daemon's defaults\n\n")
	fmt.Fprintf(b, "One more consume of %s messages by streamworker at the daemon's defaults, under the CPU profiler (the timed phase only: %s msgs/s, %s µs of CPU per message, with the profiler's own cost). The profile is [%s](%s); `go tool pprof -top -cum %s` shows it all. "+
		"Shares of all samples whose stack holds the functions named; they overlap where one part calls another (marked …), and the GC's and the scheduler's parts run on stacks of their own. A sample is 10 ms of CPU: with fewer than a few hundred (the first line of the top below) the shares are rough.\n\n",
		fmtInt(float64(p.Consume.N)), fmtInt(p.Consume.Rate()), fmtMicros(p.Consume.CPUPerMsg()), p.File, p.File, p.File)
	fmt.Fprintf(b, "| part | share of CPU samples |\n|---|---|\n")
	for _, g := range p.Groups {
		fmt.Fprintf(b, "| %s | %.1f%% |\n", g.Name, 100*g.Share)
	}
	fmt.Fprintf(b, "\n<details><summary><code>go tool pprof -top -cum</code>, top 30</summary>\n\n```\n%s\n```\n\n</details>\n", p.Top)
}

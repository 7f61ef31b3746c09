// Package testbin builds a command of this module for a test and runs it
// as a process of its own, the way its users run it: the process tests of
// cmd/producer, cmd/streamctl and test/ share it.
package testbin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build builds the package in pkg (a path relative to the test's package,
// "." for itself) into dir as name, with -race when race is set (the tests
// run under it), and returns the binary's path. A package built before in
// this test process, into a directory that is still there, is linked into
// dir rather than built again: linking a race binary is the costly part of
// a build whose packages are cached, and a test package's tests build the
// same few binaries.
func Build(t testing.TB, dir, pkg, name string, race bool) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	key := builtKey{pkg, race}
	built.Lock()
	defer built.Unlock()
	if prev, ok := built.bins[key]; ok {
		if err := os.Link(prev, bin); err == nil {
			return bin
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary under test: %v", err)
	}
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	start := time.Now()
	if out, err := exec.CommandContext(context.Background(), goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built %s (race=%v) in %s", name, race, time.Since(start).Round(time.Millisecond))
	built.bins[key] = bin
	return bin
}

// built holds the binaries Build built, by package and race mode. Build
// runs one go build at a time: two tests that want one binary wait for one
// build, not two.
var built = struct {
	sync.Mutex
	bins map[builtKey]string
}{bins: map[builtKey]string{}}

type builtKey struct {
	pkg  string
	race bool
}

// Result is what one run of a binary did.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

// Run runs bin with args and stdin, with env as its whole environment
// (GORACE=halt_on_error=1 added), for at most two minutes. It fails the test
// when the binary cannot run or reports a data race.
func Run(t testing.TB, bin, stdin string, env, args []string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"GORACE=halt_on_error=1"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	if strings.Contains(r.Stderr, "WARNING: DATA RACE") {
		t.Fatalf("%s %s: data race:\n%s", filepath.Base(bin), strings.Join(args, " "), r.Stderr)
	}
	return r
}

// Want fails the test unless the run exited with code and its stderr holds
// every one of stderr.
func (r Result) Want(t testing.TB, code int, stderr ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.Code, code, r.Stdout, r.Stderr)
	}
	for _, s := range stderr {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.Stderr)
		}
	}
}

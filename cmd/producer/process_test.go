package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// TestProcess builds the producer binary once and runs every whole-process
// test against it as a parallel subtest; the binary is removed when they
// have all finished.
func TestProcess(t *testing.T) {
	bin := buildBinary(t)
	srv := testredis.Shared(t)
	c := &binary{bin: bin, redisURL: srv.URL(), srv: srv}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *binary)
	}{
		{"SendOne", testSendOne},
		{"SendDelayed", testSendDelayed},
		{"SendFile", testSendFile},
		{"SendFileAllValid", testSendFileAllValid},
		{"SendStdin", testSendStdin},
		{"SendFileProgressLines", testSendFileProgressLines},
		{"SendFileRedisError", testSendFileRedisError},
		{"UsageErrors", testUsageErrors},
		{"Failures", testFailures},
		{"ConfigErrors", testConfigErrors},
		{"RedisURLFlagOverridesEnvironment", testRedisURLFlag},
		{"Help", testHelp},
		{"Load", testLoad},
		{"LoadInterrupted", testLoadInterrupted},
		{"SendPartitioned", testSendPartitioned},
		{"Cluster", testCluster},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, c)
		})
	}
}

// buildBinary builds ./ (the producer) into a directory of t's, under -race
// when the tests run under it.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary under test: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "producer")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, ".")
	if out, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// binary runs the binary under test.
type binary struct {
	bin, redisURL string
	srv           *testredis.Server
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the binary with args and stdin, with REDIS_URL as the only
// setting from the environment; extra are more NAME=value pairs.
func (c *binary) run(t *testing.T, stdin string, args []string, extra ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append([]string{"REDIS_URL=" + c.redisURL, "GORACE=halt_on_error=1"}, extra...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running producer %s: %v", strings.Join(args, " "), err)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	if strings.Contains(r.stderr, "WARNING: DATA RACE") {
		t.Fatalf("producer %s: data race:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// want fails the test unless the run exited with code and its stderr holds
// every one of stderr.
func (r result) want(t *testing.T, code int, stderr ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
}

// client returns a client of the test server, closed with the test.
func (c *binary) client(t *testing.T) *redis.Client {
	t.Helper()
	return c.srv.Client(t)
}

// writeFile writes content to a file of t's and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

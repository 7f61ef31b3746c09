package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/internal/testredis"
)

// runInProcess runs the command in this process as on a terminal.
func runInProcess(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	srv := testredis.Shared(t)
	var out, errOut strings.Builder
	sio := stdio{
		in: strings.NewReader(""), out: &out, err: &errOut,
		getenv:     func(k string) string { return map[string]string{"REDIS_URL": srv.URL()}[k] },
		isTerminal: func(io.Writer) bool { return true },
	}
	err := run(context.Background(), args, sio)
	code = cli.ExitCode("producer", err, &errOut)
	return out.String(), errOut.String(), code
}

// On a terminal, progress is a bar on stderr; stdout has only the summary.
func TestProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	stream := testredis.Prefix(t) + "s"
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, []byte(strings.Repeat(`{"type":"t"}`+"\n", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runInProcess(t, "send", "--stream", stream, "--file", path)
	if code != 0 || !strings.HasPrefix(stdout, "sent 2000, rejected 0") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "|") || !strings.Contains(stderr, "sent 2000, rejected 0") {
		t.Errorf("stderr = %q, want a progress bar at 100%%", stderr)
	}
	if strings.Contains(stderr, "producer: sent") {
		t.Errorf("stderr has plain progress lines on a terminal: %q", stderr)
	}

	stdout, stderr, code = runInProcess(t, "load", "--stream", stream, "--type", "t", "--count", "300")
	if code != 0 || !strings.HasPrefix(stdout, "sent 300 events") {
		t.Fatalf("load: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "300/300") {
		t.Errorf("load stderr = %q, want a progress bar at 300/300", stderr)
	}
}

// Input of unknown size (stdin) gets a bar without a total.
func TestProgressOfStdinOnTerminal(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	stream := testredis.Prefix(t) + "s"
	var out, errOut strings.Builder
	sio := stdio{
		in: strings.NewReader(strings.Repeat(`{"type":"t"}`+"\n", 700)), out: &out, err: &errOut,
		getenv:     func(k string) string { return map[string]string{"REDIS_URL": srv.URL()}[k] },
		isTerminal: func(io.Writer) bool { return true },
	}
	if err := run(context.Background(), []string{"send", "--stream", stream, "--file", "-"}, sio); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "sent 700, rejected 0") || !strings.Contains(errOut.String(), "sent 700, rejected 0") {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

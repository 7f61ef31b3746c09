package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

func testLoad(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "bench"
	r := c.run(t, "", []string{"load", "--stream", stream, "--type", "load.test", "--count", "1050", "--size", "200", "--concurrency", "3", "--batch", "100"})
	r.Want(t, 0)
	if !strings.HasPrefix(r.Stdout, "sent 1050 events to stream \""+stream+"\" in ") || !strings.HasSuffix(r.Stdout, " msg/s\n") {
		t.Errorf("stdout = %q, want the count and the rate", r.Stdout)
	}
	msgs := rc.XRange(context.Background(), stream, "-", "+").Val()
	if len(msgs) != 1050 {
		t.Fatalf("stream has %d entries, want 1050", len(msgs))
	}
	seen := map[int]bool{}
	for _, m := range msgs {
		data := m.Values["data"].(string)
		var d struct {
			Seq int    `json:"seq"`
			Pad string `json:"pad"`
		}
		if m.Values["type"] != "load.test" || len(data) != 200 || json.Unmarshal([]byte(data), &d) != nil {
			t.Fatalf("entry %v: want type load.test and 200 bytes of JSON", m.Values)
		}
		seen[d.Seq] = true
	}
	if len(seen) != 1050 {
		t.Errorf("%d distinct seqs, want 1050", len(seen))
	}

	// A rate limit still sends everything (how fast is a benchmark's
	// business, not a test's).
	stream2 := testredis.Prefix(t) + "paced"
	c.run(t, "", []string{"load", "--stream", stream2, "--type", "t", "--count", "40", "--rate", "2000", "--size", "1"}).Want(t, 0)
	if n := rc.XLen(context.Background(), stream2).Val(); n != 40 {
		t.Errorf("paced stream has %d entries, want 40", n)
	}
}

// SIGINT stops the load: what was sent is reported, and the exit status is
// 130.
func testLoadInterrupted(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "slow"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "load", "--stream", stream, "--type", "t", "--count", "1000000", "--rate", "200")
	cmd.Env = []string{"REDIS_URL=" + c.redisURL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for rc.XLen(ctx, stream).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("load sent nothing within 30s")
		}
		time.Sleep(10 * time.Millisecond) // polling Redis with a deadline
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("load did not stop within 30s of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "producer: interrupted") {
		t.Errorf("exit %d, stderr %q; want 130 and interrupted", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "sent ") {
		t.Errorf("stdout = %q, want the count of what was sent", stdout.String())
	}
}

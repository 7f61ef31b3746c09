package cache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

const (
	helperAddrEnv = "CACHE_HELPER_REDIS_ADDR"
	helperKeyEnv  = "CACHE_HELPER_KEY"
	processes     = 3
	missesPerProc = 500
)

// Three OS processes, each with 500 concurrent misses of one cold key,
// against one Redis: each process calls the loader at most once (its
// singleflight), and all three together exactly once (the lock in Redis).
func TestFetchAcrossProcesses(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	rdb := srv.Client(t)
	key := testredis.Prefix(t) + "cold"

	outs := make([]bytes.Buffer, processes)
	cmds := make([]*exec.Cmd, processes)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperAddrEnv+"="+srv.Addr, helperKeyEnv+"="+key)
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	loadsRE := regexp.MustCompile(`helper: loads=(\d+)`)
	sum, perProcess := 0, make([]int, processes)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i].String())
		}
		m := loadsRE.FindStringSubmatch(outs[i].String())
		if m == nil {
			t.Fatalf("process %d printed no load count:\n%s", i, outs[i].String())
		}
		n, _ := strconv.Atoi(m[1])
		if n > 1 {
			t.Errorf("process %d called the loader %d times; want at most 1", i, n)
		}
		sum += n
		perProcess[i] = n
	}
	t.Logf("loader calls per process: %v", perProcess)
	total, err := rdb.Get(t.Context(), key+":loads").Int()
	if err != nil {
		t.Fatal(err)
	}
	if total != sum {
		t.Errorf("Redis counted %d loads, the processes %d", total, sum)
	}
	if total != 1 {
		t.Fatalf("%d processes × %d misses called the loader %d times; want 1\n%s\n%s\n%s",
			processes, missesPerProc, total, &outs[0], &outs[1], &outs[2])
	}
}

// TestHelperProcess is one process of TestFetchAcrossProcesses, which runs
// the test binary again with the environment naming a Redis and a key.
func TestHelperProcess(t *testing.T) {
	addr, key := os.Getenv(helperAddrEnv), os.Getenv(helperKeyEnv)
	if addr == "" {
		t.Skip("a helper of TestFetchAcrossProcesses")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	// Debug logs go to the parent, which shows them if the test fails.
	c := New(rdb, &Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer c.Close()
	ctx := t.Context()

	// Start together: every process announces itself, then waits for all.
	if err := rdb.Incr(ctx, key+":ready").Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		n, err := rdb.Get(ctx, key+":ready").Int()
		if err == nil && n == processes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d processes ready: %v", n, processes, err)
		}
		time.Sleep(2 * time.Millisecond) // polling, with a deadline
	}

	var local atomic.Int64
	load := func(ctx context.Context) ([]byte, error) {
		local.Add(1)
		fmt.Fprintf(os.Stderr, "pid %d: loading at %s\n", os.Getpid(), time.Now().Format("15:04:05.000"))
		if err := rdb.Incr(ctx, key+":loads").Err(); err != nil {
			return nil, err
		}
		select { // a slow source of truth
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []byte("value"), nil
	}
	var wg sync.WaitGroup
	for range missesPerProc {
		wg.Go(func() {
			v, err := c.Fetch(ctx, key, time.Minute, load)
			if err != nil || string(v) != "value" {
				t.Errorf("Fetch = %q, %v", v, err)
			}
		})
	}
	wg.Wait()
	fmt.Printf("helper: loads=%d\n", local.Load())
}

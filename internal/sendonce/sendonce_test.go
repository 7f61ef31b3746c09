package sendonce

import (
	"context"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
)

// A script Redis does not have yet runs, once: NOSCRIPT means nothing ran,
// and EVAL follows.
func TestScriptRunsAMissingScript(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	ctx := context.Background()
	key := testredis.Prefix(t) + "n"
	// Its source names the key, so no earlier run loaded it.
	s := redis.NewScript(`-- ` + key + "\n" + `return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	if ok, err := s.Exists(ctx, c).Result(); err != nil || ok[0] {
		t.Fatalf("SCRIPT EXISTS before the first run = %v, %v; want false", ok, err)
	}
	for want := int64(2); want <= 4; want += 2 {
		n, err := Script(ctx, c, s, []string{key}, 2).Int64()
		if err != nil || n != want {
			t.Fatalf("Script = %d, %v; want %d: it ran once", n, err, want)
		}
	}
}

// A script's error reply comes back as the command's error, unretried.
func TestScriptErrorReply(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	c := srv.Client(t)
	s := redis.NewScript(`return redis.error_reply('BAD ' .. ARGV[1])`)
	err := Script(context.Background(), c, s, nil, "input").Err()
	if err == nil || err.Error() != "BAD input" {
		t.Errorf("Script = %v, want the script's error reply BAD input", err)
	}
}

// A command that could not be given a connection never reached Redis; one
// that Redis answered with an error did.
func TestUnsent(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t) // started first: its free port is not the one freed below
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	down := redis.NewClient(&redis.Options{Addr: closed, MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	ctx := context.Background()
	if err := Process(ctx, down, redis.NewCmd(ctx, "ping")); err == nil || !Unsent(err) {
		t.Errorf("Unsent(%v) = false for a connection refused, want true", err)
	}
	if err := Process(ctx, srv.Client(t), redis.NewCmd(ctx, "nosuchcommand")); err == nil || Unsent(err) {
		t.Errorf("Unsent(%v) = true for Redis's error reply, want false", err)
	}
	if Unsent(nil) {
		t.Error("Unsent(nil) = true, want false")
	}
}

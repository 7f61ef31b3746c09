package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
)

// TestProcess builds the producer binary once and runs every whole-process
// test against it as a parallel subtest; the binary is removed when they
// have all finished.
func TestProcess(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), ".", "producer", raceEnabled)
	srv := testredis.Shared(t)
	c := &binary{bin: bin, redisURL: srv.URL(), srv: srv}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *binary)
	}{
		{"SendOne", testSendOne},
		{"SendDelayed", testSendDelayed},
		{"SendUnique", testSendUnique},
		{"SendFile", testSendFile},
		{"SendFileAllValid", testSendFileAllValid},
		{"SendFileBOM", testSendFileBOM},
		{"SendStdin", testSendStdin},
		{"SendFileProgressLines", testSendFileProgressLines},
		{"SendFileRedisError", testSendFileRedisError},
		{"UsageErrors", testUsageErrors},
		{"Failures", testFailures},
		{"RefusedConnection", testRefusedConnection},
		{"DialError", testDialError},
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

// result is what one run of the binary did.
type result = testbin.Result

// run runs the binary with args and stdin, with REDIS_URL as the only
// setting from the environment; extra are more NAME=value pairs.
func (c *binary) run(t *testing.T, stdin string, args []string, extra ...string) result {
	t.Helper()
	return testbin.Run(t, c.bin, stdin, append([]string{"REDIS_URL=" + c.redisURL}, extra...), args)
}

// binary runs the binary under test.
type binary struct {
	bin, redisURL string
	srv           *testredis.Server
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

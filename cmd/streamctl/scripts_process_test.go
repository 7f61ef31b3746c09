package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// testScripts: scripts load puts every library on the server once, says
// what it did, and refuses with a clear error for a user that may not load
// functions; scripts status says what is missing; dlq replay runs with
// REDIS_SCRIPTS=functions for a user that may not EVAL.
func testScripts(t *testing.T, c *binary) {
	srv := testredis.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	n := len(scriptfn.Libraries())
	for _, u := range [][]any{
		{"ACL", "SETUSER", "scripts", "on", ">pw", "resetchannels", "-@all", "+ping", "+function|load", "+function|list"},
		{"ACL", "SETUSER", "lister", "on", ">pw", "resetchannels", "-@all", "+ping", "+function|list"},
		{"ACL", "SETUSER", "op", "on", ">pw", "~*", "resetchannels", "+@all", "-eval", "-evalsha", "-script", "-function"},
	} {
		if err := admin.Do(ctx, u...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	url := func(user string) string { return "REDIS_URL=redis://" + user + ":pw@" + srv.Addr + "/0" }
	run := func(user string, args ...string) result {
		t.Helper()
		return testbin.Run(t, c.bin, "", []string{url(user)}, args)
	}

	r := run("lister", "scripts", "status")
	r.Want(t, 1)
	if !strings.Contains(r.Stdout, fmt.Sprintf("0 of %d script libraries loaded; missing: ", n)) || !strings.Contains(r.Stderr, "streamctl scripts load") {
		t.Errorf("status before loading:\n%s%s", r.Stdout, r.Stderr)
	}
	r = run("lister", "scripts", "load")
	r.Want(t, 1)
	for _, want := range []string{"NOPERM", "function|load", "scripts user of deploy/redis/users.acl"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("load as a user without FUNCTION LOAD: stderr does not say %q:\n%s", want, r.Stderr)
		}
	}
	r = run("scripts", "scripts", "load")
	r.Want(t, 0)
	if want := fmt.Sprintf("%d script libraries: %d loaded, 0 already there, 0 replaced\n", n, n); r.Stdout != want {
		t.Errorf("first load printed %q, want %q", r.Stdout, want)
	}
	// Again: nothing to do. A library altered under its name is replaced.
	lib := scriptfn.Libraries()[0]
	if err := admin.FunctionLoadReplace(ctx, strings.Replace(lib.Code, "local function run", "-- altered\nlocal function run", 1)).Err(); err != nil {
		t.Fatal(err)
	}
	r = run("scripts", "scripts", "load")
	r.Want(t, 0)
	if want := fmt.Sprintf("%d script libraries: 0 loaded, %d already there, 1 replaced\n", n, n-1); r.Stdout != want {
		t.Errorf("second load printed %q, want %q", r.Stdout, want)
	}
	r = run("lister", "scripts", "status")
	r.Want(t, 0)
	if want := fmt.Sprintf("%d of %d script libraries loaded\n", n, n); r.Stdout != want {
		t.Errorf("status after loading: %q, want %q", r.Stdout, want)
	}

	// dlq replay with the functions, as a user that may not EVAL.
	stream := testredis.Prefix(t) + "orders"
	if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(stream), Values: []string{"type", "t", "error", "e"}}).Err(); err != nil {
		t.Fatal(err)
	}
	r = testbin.Run(t, c.bin, "", []string{url("op"), "REDIS_SCRIPTS=functions"}, []string{"dlq", "replay", "--stream", stream, "--all"})
	r.Want(t, 0)
	if n := admin.XLen(ctx, stream).Val(); n != 1 {
		t.Errorf("after replay with functions: %s has %d entries, want 1\n%s%s", stream, n, r.Stdout, r.Stderr)
	}
	if stats := admin.Info(ctx, "commandstats").Val(); strings.Contains(stats, "cmdstat_eval") {
		t.Errorf("EVAL or EVALSHA reached the server:\n%s", stats)
	}
}

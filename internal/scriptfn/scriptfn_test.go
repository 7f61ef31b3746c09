package scriptfn_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// loadAll loads libs on the server c talks to.
func loadAll(t *testing.T, c redis.Cmdable, libs []scriptfn.Library) {
	t.Helper()
	for _, l := range libs {
		if err := c.FunctionLoad(context.Background(), l.Code).Err(); err != nil {
			t.Fatalf("FUNCTION LOAD %s: %v\n%s", l.Name, err, l.Code)
		}
	}
}

// TestLibrariesLoad: every script the daemon and streamctl run makes a
// library Redis accepts, named for the script's SHA-1 as go-redis computes
// it, with one function of that name.
func TestLibrariesLoad(t *testing.T) {
	t.Parallel()
	c := testredis.Start(t).Client(t)
	libs := scriptfn.Libraries()
	if len(libs) < 20 {
		t.Fatalf("%d libraries: the generated sources look empty", len(libs))
	}
	loadAll(t, c, libs)
	have, err := c.FunctionList(context.Background(), redis.FunctionListQuery{LibraryNamePattern: scriptfn.Prefix + "*"}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != len(libs) {
		t.Errorf("%d libraries on the server, want %d", len(have), len(libs))
	}
	for _, src := range scriptfn.Sources() {
		name := scriptfn.Name(redis.NewScript(src).Hash())
		i := slices.IndexFunc(have, func(l redis.Library) bool { return l.Name == name })
		if i < 0 || len(have[i].Functions) != 1 || have[i].Functions[0].Name != name {
			t.Errorf("no library %s with the one function %s", name, name)
		}
	}
}

// TestFunctionRunsLikeEval: KEYS and ARGV, unpack, early returns and
// local functions behave in the function as in EVAL.
func TestFunctionRunsLikeEval(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	ctx := context.Background()
	p := testredis.Prefix(t)
	src := `
local function twice(x) return x .. x end
if #KEYS == 0 then return 'no keys' end
redis.call('SET', KEYS[1], twice(ARGV[1]))
local out = {redis.call('GET', KEYS[1]), #ARGV, unpack(ARGV, 2)}
return out
`
	lib := scriptfn.Build(src)
	if err := c.FunctionLoad(ctx, lib.Code).Err(); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	keys, args := []string{p + "k"}, []any{"ab", "x", "y"}
	want, err := c.Eval(ctx, src, keys, args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.FCall(ctx, lib.Name, keys, args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("FCALL differs from EVAL (-eval +fcall):\n%s", d)
	}
	if got, err := c.FCall(ctx, lib.Name, nil).Result(); err != nil || got != "no keys" {
		t.Errorf("without keys: %v %v", got, err)
	}
}

// TestCommandFlags: the command table says what the server's COMMAND INFO
// says: whether a command writes, and whether it is refused out of memory.
func TestCommandFlags(t *testing.T) {
	t.Parallel()
	c := testredis.Shared(t).Client(t)
	for name, want := range scriptfn.Commands {
		info, err := c.Do(context.Background(), "COMMAND", "INFO", name).Slice()
		if err != nil || len(info) != 1 || info[0] == nil {
			t.Errorf("COMMAND INFO %s: %v %v", name, info, err)
			continue
		}
		entry, _ := info[0].([]any)
		var flags []string
		if len(entry) > 2 {
			for _, f := range entry[2].([]any) {
				flags = append(flags, f.(string))
			}
		}
		got := [2]bool{slices.Contains(flags, "write"), slices.Contains(flags, "denyoom")}
		if got != want {
			t.Errorf("%s: flags %v; the table says write=%v denyoom=%v", name, flags, want[0], want[1])
		}
	}
}

// TestScriptsClassified: every command of every script is in the table, so
// each function gets the flags that keep its out-of-memory behaviour.
func TestScriptsClassified(t *testing.T) {
	for _, src := range scriptfn.Sources() {
		cmds, ok := scriptfn.ScriptCommands(src)
		if !ok && strings.Contains(src, "redis.call(unpack(call))") {
			continue // worker's commitScript: it runs the caller's commands, and gets no flags on purpose
		}
		if !ok {
			t.Errorf("a script calls a command that is not a literal; its function gets no flags:\n%s", src)
			continue
		}
		for _, c := range cmds {
			if _, known := scriptfn.Commands[c]; !known {
				t.Errorf("a script calls %s, which the command table of scriptfn.go lacks: add it with its COMMAND INFO flags (write, denyoom)", strings.ToUpper(c))
			}
		}
	}
}

// TestFlags: read-only scripts get no-writes, those whose writes free or
// keep memory allow-oom, the others none.
func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{`return redis.call('GET', KEYS[1])`, []string{"no-writes"}},
		{`redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]); return redis.call('DEL', KEYS[2])`, []string{"allow-oom"}},
		{`redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`, []string{"allow-oom"}},
		{`redis.call('ZADD', KEYS[1], 1, 'm'); redis.call('XACK', KEYS[2], 'g', '1-0')`, nil},
		{`return redis.call(ARGV[1], KEYS[1])`, nil},          // not a literal
		{`return redis.call('OBJECT', 'FREQ', KEYS[1])`, nil}, // not in the table
	} {
		if got := scriptfn.Build(tc.src).Flags; !slices.Equal(got, tc.want) {
			t.Errorf("%s: flags %v, want %v", tc.src, got, tc.want)
		}
	}
}

// TestOutOfMemory: at maxmemory with noeviction, the functions that only
// read, or only write what needs no memory, still run, as their EVAL
// scripts did; one that needs memory is refused.
func TestOutOfMemory(t *testing.T) {
	t.Parallel()
	c := testredis.Start(t).Client(t)
	ctx := context.Background()
	read := scriptfn.Build(`return redis.call('GET', KEYS[1])`)
	shrink := scriptfn.Build(`return redis.call('DEL', KEYS[1])`)
	grow := scriptfn.Build(`return redis.call('SET', KEYS[1], ARGV[1])`)
	loadAll(t, c, []scriptfn.Library{read, shrink, grow})
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.FCall(ctx, read.Name, []string{"k"}).Result(); err != nil || v != "v" {
		t.Errorf("read-only function out of memory: %v %v", v, err)
	}
	if err := c.FCall(ctx, grow.Name, []string{"k2"}, "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Errorf("growing function out of memory: %v, want OOM", err)
	}
	if n, err := c.FCall(ctx, shrink.Name, []string{"k"}).Int(); err != nil || n != 1 {
		t.Errorf("shrinking function out of memory: %v %v", n, err)
	}
}

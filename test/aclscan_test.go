package test

import (
	"encoding/json"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// The Redis commands a package sends, found by type-checking its source
// against the compiled export data of its imports (go list -export): every
// call of a go-redis client method, every Do with a literal command, every
// script's Run (an FCALL: REDIS_SCRIPTS=functions), and every redis.call()
// in a Lua script, which Redis checks against the caller's ACL whether the
// script runs by EVAL or as a function; and every worker.Effects.Do with a
// literal command, which the worker's commit script calls.

const goRedis = "github.com/redis/go-redis/v9"

// goRedisCommands maps go-redis methods to the command they send,
// ACL-named.
var goRedisCommands = map[string]string{
	"XReadGroup": "xreadgroup", "XAck": "xack", "XAdd": "xadd", "XLen": "xlen",
	"XPending": "xpending", "XPendingExt": "xpending",
	"XClaim": "xclaim", "XClaimJustID": "xclaim",
	"XAutoClaim": "xautoclaim", "XAutoClaimJustID": "xautoclaim", "XAutoClaimWithDeleted": "xautoclaim", "XAutoClaimJustIDWithDeleted": "xautoclaim",
	"XGroupCreate": "xgroup|create", "XGroupCreateMkStream": "xgroup|create",
	"XGroupCreateConsumer": "xgroup|createconsumer", "XGroupDelConsumer": "xgroup|delconsumer",
	"XGroupDestroy": "xgroup|destroy", "XGroupSetID": "xgroup|setid",
	"XInfoGroups": "xinfo|groups", "XInfoConsumers": "xinfo|consumers", "XInfoStream": "xinfo|stream",
	"XRange": "xrange", "XRangeN": "xrange", "XRevRange": "xrevrange", "XRevRangeN": "xrevrange",
	"XDel": "xdel", "XTrimMaxLen": "xtrim", "XTrimMaxLenApprox": "xtrim", "XTrimMinID": "xtrim", "XTrimMinIDApprox": "xtrim",
	"ZAdd": "zadd", "ZAddArgs": "zadd", "ZAddNX": "zadd", "ZRangeByScore": "zrangebyscore", "ZRangeByScoreWithScores": "zrangebyscore", "ZRem": "zrem", "ZCard": "zcard",
	"Set": "set", "SetNX": "set", "SetArgs": "set", "SetEx": "set", "Get": "get", "Exists": "exists", "Del": "del",
	"Expire": "expire", "PExpire": "pexpire", "Incr": "incr", "HIncrBy": "hincrby", "HSet": "hset",
	"MemoryUsage": "memory|usage", "ConfigGet": "config|get", "Type": "type", "Time": "time", "Ping": "ping", "Publish": "publish", "Scan": "scan", "ScanType": "scan",
	"TxPipeline": "multi", "TxPipelined": "multi",
	// The built-in plugins (cmd/worker/plugins.go) and their building blocks.
	"IncrBy": "incrby", "DecrBy": "decrby", "PExpireAt": "pexpireat", "PTTL": "pttl",
	"HGet": "hget", "HMGet": "hmget", "HGetAll": "hgetall",
	// streamadmin: pause and resume (the dashboard).
	"HSetNX": "hsetnx", "HDel": "hdel",
	"ZIncrBy": "zincrby", "ZRank": "zrank", "ZScore": "zscore", "ZRangeWithScores": "zrange",
	"SPublish": "spublish",
	// internal/scriptfn: the worker's check of the function libraries.
	"FunctionList": "function|list", "FunctionLoad": "function|load", "FunctionLoadReplace": "function|load",
}

// subcommands are the commands whose ACL name includes their first
// argument.
var subcommands = map[string]bool{"xgroup": true, "xinfo": true, "config": true, "client": true, "script": true, "object": true, "memory": true, "acl": true, "cluster": true, "function": true}

// scanCommands returns the commands (ACL name -> positions) sent by the
// non-test files of pkgs (relative to root), and with deps of every package
// of this module they import; files named in skip are left out.
func scanCommands(t *testing.T, root string, pkgs []string, deps bool, skip ...string) map[string][]string {
	t.Helper()
	type listed struct {
		ImportPath, Dir, Export string
		GoFiles                 []string
		Standard, DepOnly       bool
	}
	// Export data built as the tests are (under -race when they are) is
	// already in the build cache: the packages are not compiled again.
	args := []string{"list", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,Standard,DepOnly"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	exports := map[string]string{}
	var targets []listed
	for dec := json.NewDecoder(strings.NewReader(string(out))); dec.More(); {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
		inModule := strings.HasPrefix(p.ImportPath, "github.com/streamworker/streamworker/")
		if inModule && (!p.DepOnly || deps) {
			targets = append(targets, p)
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	cmdable := map[string]bool{}
	typ := reflect.TypeFor[redis.Cmdable]()
	for i := range typ.NumMethod() {
		cmdable[typ.Method(i).Name] = true
	}
	luaCall := regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z]+)'(?:\s*,\s*'([A-Za-z]+)')?`)
	uses := map[string][]string{}
	add := func(pos token.Pos, cmd, sub string) {
		cmd = strings.ToLower(cmd)
		if subcommands[cmd] && sub != "" {
			cmd += "|" + strings.ToLower(sub)
		}
		p := fset.Position(pos)
		uses[cmd] = append(uses[cmd], filepath.Base(filepath.Dir(p.Filename))+"/"+filepath.Base(p.Filename)+":"+strconv.Itoa(p.Line))
	}
	for _, p := range targets {
		var files []*ast.File
		for _, name := range p.GoFiles {
			if slices.Contains(skip, name) {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
		conf := types.Config{Importer: imp, Error: func(error) {}} // a skipped file leaves undefined names
		_, _ = conf.Check(p.ImportPath, fset, files, info)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit: // Lua: Redis checks a script's commands against the caller's ACL
					if n.Kind == token.STRING && strings.Contains(n.Value, "redis.") {
						for _, m := range luaCall.FindAllStringSubmatch(n.Value, -1) {
							add(n.Pos(), m[1], m[2])
						}
					}
				case *ast.CompositeLit: // []any{"XCLAIM", ...}, the arguments of a Do
					if at, ok := n.Type.(*ast.ArrayType); ok && len(n.Elts) > 0 && isAnyType(at.Elt) {
						if cmd, ok := upperLit(n.Elts[0]); ok {
							var sub string
							if len(n.Elts) > 1 {
								sub, _ = upperLit(n.Elts[1])
							}
							add(n.Pos(), cmd, sub)
						}
					}
				case *ast.CallExpr:
					fun, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					sel := info.Selections[fun]
					if sel == nil || sel.Obj().Pkg() == nil {
						return true
					}
					if isEffectsDo(sel) && len(n.Args) > 0 { // run by the worker's commit script
						if cmd, ok := upperLit(n.Args[0]); ok {
							add(n.Pos(), cmd, "")
						}
						return true
					}
					if sel.Obj().Pkg().Path() != goRedis {
						return true
					}
					name := sel.Obj().Name()
					recv := types.TypeString(sel.Recv(), nil)
					switch {
					case strings.HasSuffix(recv, goRedis+".Script") && (strings.HasPrefix(name, "Run") || strings.HasPrefix(name, "Eval")):
						// Run, RunRO, Eval, EvalRO, EvalSha, EvalShaRO: with
						// REDIS_SCRIPTS=functions, for which the ACL file is
						// written, config's hook sends each as FCALL (FCALL_RO)
						// of the script's function, never EVAL or EVALSHA.
						if strings.HasSuffix(name, "RO") {
							add(n.Pos(), "fcall_ro", "")
						} else {
							add(n.Pos(), "fcall", "")
						}
					case name == "Do":
						if len(n.Args) > 1 {
							if cmd, ok := upperLit(n.Args[1]); ok {
								add(n.Pos(), cmd, "")
							}
						}
					case name == "Pipeline" || name == "Pipelined":
					case name == "Watch": // an optimistic transaction; Tx.Close sends UNWATCH
						add(n.Pos(), "watch", "")
						add(n.Pos(), "unwatch", "")
					case cmdable[name]:
						cmd, ok := goRedisCommands[name]
						if !ok {
							cmd = "go-redis " + name
						}
						add(n.Pos(), cmd, "")
						if cmd == "multi" {
							add(n.Pos(), "exec", "")
						}
					}
				}
				return true
			})
		}
	}
	return uses
}

// isEffectsDo reports whether sel is worker.Effects.Do: a command a handler
// commits with its acknowledgement, which Redis checks inside the commit
// script against the worker's ACL.
func isEffectsDo(sel *types.Selection) bool {
	return sel.Obj().Name() == "Do" && sel.Obj().Pkg().Path() == "github.com/streamworker/streamworker/worker" &&
		strings.HasSuffix(types.TypeString(sel.Recv(), nil), "worker.Effects")
}

func isAnyType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "any"
	case *ast.InterfaceType:
		return len(e.Methods.List) == 0
	}
	return false
}

var upperWord = regexp.MustCompile(`^[A-Z]+$`)

func upperLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil || !upperWord.MatchString(s) {
		return "", false
	}
	return s, true
}

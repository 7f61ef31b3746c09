// Package scriptfn runs the module's Lua scripts as Redis functions
// (REDIS_SCRIPTS=functions), so that a client needs FCALL and never EVAL: an
// ACL user allowed EVAL can run any Lua it likes, one allowed FCALL only the
// functions an administrator loaded. It owns the libraries (one per script,
// named for the script's SHA-1), the go-redis hook that sends a script's
// EVALSHA or EVAL as FCALL of its function, and the check that the libraries
// are on the server. Loading them is an administrator's step: streamadmin
// does it for `streamctl scripts load`.
package scriptfn

//go:generate go run ./genscripts

import (
	"crypto/sha1"
	"encoding/hex"
	"regexp"
	"strings"
)

// Prefix starts the name of every library and function of this package:
// sw_ and the script's SHA-1 in lower-case hex, the digest go-redis sends
// in EVALSHA.
const Prefix = "sw_"

// Name is the library, and the function in it, that runs the script whose
// SHA-1 is sha.
func Name(sha string) string { return Prefix + strings.ToLower(sha) }

// SHA1 is the hex SHA-1 of a script's source, as redis.NewScript computes it.
func SHA1(src string) string {
	sum := sha1.Sum([]byte(src))
	return hex.EncodeToString(sum[:])
}

// Library is one Lua function library: the code FUNCTION LOAD takes.
type Library struct {
	// Name is the library's name and its one function's: Name(SHA1(source)).
	Name string
	// Code is the library: the shebang, the script as the body of a function
	// taking KEYS and ARGV (the globals of an EVAL script are its
	// parameters here), and its registration with Flags.
	Code string
	// Flags are the function's flags (see Build).
	Flags []string
}

// Build returns the library that runs src as a function. The function gets
// the flags that keep the script's behaviour under EVAL when the server is
// out of memory (maxmemory reached, noeviction): a function without flags is
// refused whole there, where an EVAL script runs until a command that needs
// memory. A script that calls no write command gets no-writes; one whose
// writes never need memory (XACK, XCLAIM, DEL, PEXPIRE ...) gets allow-oom;
// any other, or one whose commands are not all known, gets none.
func Build(src string) Library {
	name := Name(SHA1(src))
	flags := scriptFlags(src)
	quoted := make([]string, len(flags))
	for i, f := range flags {
		quoted[i] = "'" + f + "'"
	}
	code := "#!lua name=" + name + "\n" +
		"local function run(KEYS, ARGV)\n" + src + "\nend\n" +
		"redis.register_function{function_name='" + name + "', callback=run, flags={" + strings.Join(quoted, ", ") + "}}\n"
	return Library{Name: name, Code: code, Flags: flags}
}

// Libraries are the libraries of every script the worker daemon and
// streamctl run (Sources), one per distinct source.
func Libraries() []Library {
	srcs := Sources()
	out := make([]Library, 0, len(srcs))
	seen := make(map[string]bool, len(srcs))
	for _, s := range srcs {
		l := Build(s)
		if !seen[l.Name] {
			seen[l.Name] = true
			out = append(out, l)
		}
	}
	return out
}

// cmdFlags is what COMMAND INFO says of a command: whether it may write,
// and whether Redis refuses it when out of memory.
type cmdFlags struct{ write, denyOOM bool }

// commands are the commands the scripts call, by ACL name. TestCommandFlags
// holds them to a real server's COMMAND INFO, and TestScriptsClassified
// fails when a script calls a command missing here.
var commands = map[string]cmdFlags{
	"time": {}, "get": {}, "exists": {}, "pttl": {}, "hget": {},
	"zrange": {}, "zrangebyscore": {}, "zcard": {}, "zrank": {},
	"xpending": {}, "xrange": {}, "xrevrange": {}, "type": {}, "xinfo|groups": {}, "xinfo|stream": {},
	"set": {true, true}, "incr": {true, true}, "zadd": {true, true}, "hset": {true, true}, "xadd": {true, true},
	"del": {true, false}, "pexpire": {true, false}, "zrem": {true, false}, "zremrangebyscore": {true, false},
	"xack": {true, false}, "xclaim": {true, false}, "xdel": {true, false}, "xgroup|delconsumer": {true, false},
	"xgroup|setid": {true, false},
	"xtrim":        {true, false},
}

// containers are the commands whose ACL name includes their first
// argument.
var containers = map[string]bool{"xgroup": true, "xinfo": true, "object": true, "memory": true, "client": true, "config": true}

var (
	anyCall     = regexp.MustCompile(`redis\.p?call\s*\(`)
	literalCall = regexp.MustCompile(`redis\.p?call\s*\(\s*'([A-Za-z]+)'(?:\s*,\s*'([A-Za-z]+)')?`)
)

// scriptCommands returns the commands src calls, by ACL name, and false when
// a call's command is not a literal.
func scriptCommands(src string) ([]string, bool) {
	calls := literalCall.FindAllStringSubmatch(src, -1)
	if len(calls) != len(anyCall.FindAllStringIndex(src, -1)) {
		return nil, false
	}
	out := make([]string, 0, len(calls))
	for _, m := range calls {
		c := strings.ToLower(m[1])
		if containers[c] && m[2] != "" {
			c += "|" + strings.ToLower(m[2])
		}
		out = append(out, c)
	}
	return out, true
}

// scriptFlags are the function flags for src (see Build).
func scriptFlags(src string) []string {
	cmds, ok := scriptCommands(src)
	if !ok {
		return nil
	}
	var writes, grows bool
	for _, c := range cmds {
		f, known := commands[c]
		if !known {
			return nil
		}
		writes = writes || f.write
		grows = grows || f.denyOOM
	}
	switch {
	case !writes:
		return []string{"no-writes"}
	case !grows:
		return []string{"allow-oom"}
	}
	return nil
}

package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The live checks of the ACL file (every command the code sends is
// allowed, nothing else is, the users end to end, NOPERM where it must be)
// are in test/acl_test.go, against redis-server. These read the file.

var execCommand = exec.Command

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func readACL(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("redis/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// aclLine returns the rule line of user in an ACL file's content.
func aclLine(t *testing.T, content, user string) string {
	t.Helper()
	for l := range strings.SplitSeq(content, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "user" && f[1] == user {
			return l + " "
		}
	}
	t.Fatalf("no user %s in the ACL file", user)
	return ""
}

// aclKeyPattern is the key pattern of user's root permissions (outside the
// selectors in parentheses).
func aclKeyPattern(t *testing.T, user string) string {
	t.Helper()
	depth := 0
	for _, tok := range strings.Fields(aclLine(t, readACL(t), user)) {
		if strings.HasPrefix(tok, "(") {
			depth++
		}
		if i := strings.Index(tok, "~"); i >= 0 && depth == 0 && strings.Trim(tok[:i], "%RW") == "" {
			return tok[i+1:]
		}
		if strings.HasSuffix(tok, ")") {
			depth--
		}
	}
	t.Fatalf("user %s has no key pattern", user)
	return ""
}

func TestACLFile(t *testing.T) {
	content := readACL(t)
	var users []string
	for l := range strings.SplitSeq(strings.TrimSpace(content), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "user" {
			t.Fatalf("line %q: an ACL file holds only user rules (Redis does not allow comments in it; see redis/README.md)", l)
		}
		users = append(users, f[1])
	}
	if want := []string{"default", "worker", "producer", "keda", "scripts", "dashboard"}; !slices.Equal(users, want) {
		t.Errorf("users %v, want %v", users, want)
	}
	if def := strings.Fields(aclLine(t, content, "default")); !slices.Contains(def, "off") || slices.Contains(def, "on") || slices.Contains(def, "nopass") {
		t.Errorf("the default user must be off: %v", def)
	}
	// XTRIM is the worker's (WORKER_RETENTION, the dead-letter bounds).
	// Commands that destroy or expose data, or administer the server: no
	// application user may have them, even on its own keys.
	// EVAL and its kin run any Lua the user sends; FUNCTION LOAD (and the
	// rest of FUNCTION but LIST) changes what FCALL runs: only the scripts
	// user, which touches no data, loads functions.
	forbidden := []string{
		"flushall", "flushdb", "keys", "scan", "config", "config|get", "config|set", "xgroup",
		"xgroup|destroy", "xgroup|setid", "xdel", "acl", "debug", "shutdown", "module", "script",
		"function", "swapdb", "rename", "move", "migrate", "restore", "unlink",
		"eval", "evalsha", "eval_ro", "evalsha_ro", "script|load", "script|flush",
		"function|load", "function|delete", "function|flush", "function|restore", "function|kill",
	}
	if got := strings.Fields(aclLine(t, content, "scripts"))[2:]; !slices.Equal(got, []string{"reset", "on", "#SCRIPTS_PASSWORD_SHA256", "resetchannels", "-@all", "+ping", "+select", "+function|load", "+function|list"}) {
		t.Errorf("the scripts user loads functions and does nothing else, with no keys or channels: %v", got)
	}
	for _, user := range users[1:] {
		toks := strings.Fields(aclLine(t, content, user))
		rules := toks[2:]
		if rules[0] != "reset" {
			t.Errorf("%s: rules start with %q; start with reset, so nothing set before survives", user, rules[0])
		}
		if !slices.Contains(rules, "on") || !slices.Contains(rules, "#"+strings.ToUpper(user)+"_PASSWORD_SHA256") {
			t.Errorf("%s: want on and the password placeholder #%s_PASSWORD_SHA256", user, strings.ToUpper(user))
		}
		if !slices.Contains(rules, "resetchannels") || !slices.Contains(rules, "-@all") {
			t.Errorf("%s: want resetchannels (no pub/sub) and -@all before the grants", user)
		}
		for _, r := range rules {
			r = strings.Trim(r, "()")
			switch {
			case r == "nopass" || r == "allkeys" || r == "allcommands" || r == "allchannels" || r == "~*" || r == "&*" || strings.HasPrefix(r, ">"):
				t.Errorf("%s: %q grants too much or puts a password in the file", user, r)
			case strings.HasPrefix(r, "+@"):
				t.Errorf("%s: %q grants a whole category (+@stream includes XGROUP DESTROY): grant commands one by one", user, r)
			case strings.HasPrefix(r, "+") && slices.Contains(forbidden, strings.TrimPrefix(r, "+")) && (user != "scripts" || r != "+function|load") &&
				// The dashboard finds the streams and deletes the dead letters an operator replays or purges.
				(user != "dashboard" || (r != "+scan" && r != "+xdel")):
				t.Errorf("%s: %q is never needed by an application user", user, r)
			case strings.HasPrefix(r, "~") || strings.HasPrefix(r, "%R~"):
				// {sw: is the same prefix inside a partition's hash tag ({sw:orders:3}).
				if p := r[strings.Index(r, "~")+1:]; !strings.HasPrefix(p, "sw:") && !strings.HasPrefix(p, "{sw:") {
					t.Errorf("%s: key pattern %q outside the sw: prefix", user, r)
				}
			}
		}
	}
	if kp := aclKeyPattern(t, "keda"); !strings.Contains(aclLine(t, content, "keda"), "%R~"+kp) {
		t.Error("the keda user should only read keys (%R~)")
	}
}

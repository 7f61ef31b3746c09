package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testbin"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/streamadmin/web"
	"github.com/streamworker/streamworker/wire"
)

// The shipped ACL file (deploy/redis/users.acl) and what it grants: the
// users' keys live under aclPrefix, and their passwords are placeholders
// (#<USER>_PASSWORD_SHA256) that keep Redis from loading the file until a
// deployment puts real password hashes in.
const (
	aclFile   = "../deploy/redis/users.acl"
	aclPrefix = "sw:"
)

// aclServer is a redis-server running the shipped ACL file with a test
// password per user.
type aclServer struct {
	*testredis.Server
	passwords map[string]string // user -> password
	aclPath   string            // the loaded copy
	shipped   []string          // the shipped file's lines
}

// startACLRedis starts redis-server on a copy of the shipped ACL file whose
// password placeholders hold the hashes of random test passwords. The copy
// differs in one line: the shipped file turns the default user off, and the
// test harness (testredis's readiness check, the tests' own inspection)
// connects as the default user, so the copy keeps it on until
// TestACL/Denied loads the shipped line at its end.
func startACLRedis(t *testing.T) *aclServer {
	t.Helper()
	raw, err := os.ReadFile(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	s := &aclServer{passwords: map[string]string{}, shipped: strings.Split(strings.TrimSpace(string(raw)), "\n")}
	lines := make([]string, 0, len(s.shipped))
	for _, l := range s.shipped {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "user" {
			t.Fatalf("%s: line %q is not a user rule", aclFile, l)
		}
		if f[1] == "default" {
			lines = append(lines, "user default on nopass ~* &* +@all")
			continue
		}
		placeholder := "#" + strings.ToUpper(f[1]) + "_PASSWORD_SHA256"
		if strings.Count(l, placeholder) != 1 {
			t.Fatalf("%s: user %s has no %s placeholder", aclFile, f[1], placeholder)
		}
		pw := "pw-" + f[1] + "-" + testredis.RandomID() + testredis.RandomID()
		s.passwords[f[1]] = pw
		sum := sha256.Sum256([]byte(pw))
		lines = append(lines, strings.Replace(l, placeholder, "#"+hex.EncodeToString(sum[:]), 1))
	}
	s.aclPath = filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(s.aclPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Server = testredis.Start(t, "--aclfile", s.aclPath)
	return s
}

// url is the redis:// URL of user.
func (s *aclServer) url(user string) string {
	return "redis://" + user + ":" + s.passwords[user] + "@" + s.Addr + "/0"
}

// client connects as user; it is closed when the test ends.
func (s *aclServer) client(t *testing.T, user string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Username: user, Password: s.passwords[user], MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestACL runs the worker and the producer as the users of the shipped ACL
// file, end to end, and checks that the file grants exactly the commands the
// code sends and nothing that could destroy data.
func TestACL(t *testing.T) {
	t.Run("TemplateRefusedUntilPasswordsSet", testACLTemplateRefused)
	t.Run("GrantsMatchCode", testACLGrantsMatchCode)
	t.Run("EndToEnd", testACLEndToEnd)
	t.Run("Partitioned", testACLPartitioned)
	t.Run("Denied", testACLDenied)
	t.Run("ProducerLimits", testACLProducerLimits)
	t.Run("ProducerPerStream", testACLProducerPerStream)
	t.Run("Dashboard", testACLDashboard)
}

// testACLDashboard serves the dashboard (streamctl web's package) as the
// dashboard user: its pages read every stream's state and periodic events,
// it replays and purges dead letters, and pauses and resumes streams.
func testACLDashboard(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if _, err := streamadmin.New(admin).LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	stream := aclPrefix + "dash-" + testredis.RandomID()
	part := wire.PartitionStream(aclPrefix+"dash-clicks", 0)
	if err := admin.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]any{
		{"XADD", stream, "*", "type", "t"},
		{"XREADGROUP", "GROUP", group, "pod-0", "COUNT", "1", "STREAMS", stream, ">"},
		{"SET", wire.HeartbeatKey(stream, group, "pod-0"), "1", "PX", "60000"},
		{"ZADD", wire.DelayedKey(stream), "1", "m"},
		{"XADD", wire.DeadLetterKey(stream), "1-1", "type", "t", "error", "e"},
		{"XADD", wire.DeadLetterKey(stream), "1-2", "type", "t", "error", "e"},
		{"XGROUP", "CREATE", part, group, "0", "MKSTREAM"},
		{"SET", wire.PartitionOwnerKey(part, group), "pod-0"},
	} {
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	c := srv.client(t, "dashboard")
	c.AddHook(scriptfn.Hook()) // REDIS_SCRIPTS=functions
	w, err := web.New(web.Options{Client: c, Tokens: []web.Token{{Name: "ops", Secret: "0123456789abcdef"}}})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(method, target, form string) (int, string) {
		req := httptest.NewRequest(method, target, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer 0123456789abcdef")
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	q := url.QueryEscape
	for target, want := range map[string]string{
		"/":                      `data-stream="` + stream + `"`,
		"/stream?s=" + q(stream): "pod-0",
		"/stream?s=" + q(aclPrefix+"dash-clicks"): "pod-0",
		"/dlq?s=" + q(stream):                     "1-2",
		"/dlq/entry?s=" + q(stream) + "&id=1-1":   "1-1",
	} {
		if code, body := serve(http.MethodGet, target, ""); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s as dashboard = %d, want 200 with %q\n%s", target, code, want, body)
		}
	}
	for _, step := range [][2]string{ // in order: the replay, then the purge of what is left
		{"do=replay-selected&confirm=yes&id=1-1&s=" + q(stream), "Replayed 1 of 1"},
		{"do=purge-matching&confirm=yes&s=" + q(stream), "Purged 1 of 1"},
	} {
		if code, body := serve(http.MethodPost, "/dlq/action", step[0]); code != http.StatusOK || !strings.Contains(body, step[1]) {
			t.Errorf("POST %s as dashboard = %d, want %q\n%s", step[0], code, step[1], body)
		}
	}
	// Pause and resume, of a stream and of a partitioned one (its logical
	// name), for one group and for every group.
	logical := aclPrefix + "dash-clicks"
	for _, step := range []struct {
		form, key string
		want      map[string]bool // the fields of the pause hash after it
	}{
		{"action=pause&group=" + group + "&s=" + q(stream), stream, map[string]bool{group: true}},
		{"action=pause&s=" + q(stream), stream, map[string]bool{group: true, wire.PauseAllGroups: true}},
		{"action=resume&group=" + group + "&s=" + q(stream), stream, map[string]bool{wire.PauseAllGroups: true}},
		{"action=resume&s=" + q(stream), stream, map[string]bool{}},
		{"action=pause&s=" + q(logical), logical, map[string]bool{wire.PauseAllGroups: true}},
	} {
		if code, body := serve(http.MethodPost, "/stream/pause", step.form); code != http.StatusSeeOther {
			t.Errorf("POST /stream/pause %s as dashboard = %d, want 303\n%s", step.form, code, body)
		}
		got := map[string]bool{}
		for f := range admin.HGetAll(ctx, wire.PausedKey(step.key)).Val() {
			got[f] = true
		}
		if !maps.Equal(got, step.want) {
			t.Errorf("after %s: %s holds %v, want %v", step.form, wire.PausedKey(step.key), got, step.want)
		}
	}
	if err := admin.HSet(ctx, wire.ScheduleKey(stream), wire.ScheduleEntryField("report.daily @every 1h"), `{"tz":"UTC","missed":"skip"}`).Err(); err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{
		"/":                      "all groups", // the partitioned stream's pause, in the overview
		"/stream?s=" + q(stream): "report.daily",
		"/stream?s=" + q(part):   "every group",
	} {
		if code, body := serve(http.MethodGet, target, ""); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s as dashboard = %d, want 200 with %q\n%s", target, code, want, body)
		}
	}
	if n := admin.XLen(ctx, wire.DeadLetterKey(stream)).Val(); n != 0 {
		t.Errorf("%d dead letters left, want 0", n)
	}
	if n := admin.XLen(ctx, stream).Val(); n != 2 {
		t.Errorf("the stream has %d entries, want 2 (one replayed)", n)
	}
}

// testACLTemplateRefused: the shipped file, its placeholders unreplaced,
// stops redis-server at start instead of creating users with a known
// password.
func testACLTemplateRefused(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server on PATH")
	}
	dir := t.TempDir()
	abs, err := filepath.Abs(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-server", "--port", "0", "--unixsocket", filepath.Join(dir, "s.sock"),
		"--save", "", "--appendonly", "no", "--dir", dir, "--aclfile", abs).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("redis-server started on the unconfigured template; it must refuse it")
	}
	if err == nil || !strings.Contains(string(out), "password hash must be exactly 64 characters") {
		t.Fatalf("redis-server on the template: %v\n%s", err, out)
	}
}

// testACLGrantsMatchCode reads the code the worker daemon and the producer
// run, collects every Redis command it sends (go-redis calls, Do arguments,
// and the redis.call()s of its Lua scripts, which Redis checks against the
// caller's ACL too), and requires the ACL to allow each of them (ACL DRYRUN)
// and to grant nothing else. A new command in the runtime fails here until
// the ACL and the table below are updated together.
func testACLGrantsMatchCode(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// The daemon: the runtime and every package of this module it imports,
	// and cmd/worker's own files except the demo (which runs on a Redis of
	// its own, as the default user).
	// internal/scriptfn's generated copy of the scripts is left out too:
	// its scripts are scanned where they are defined, and the worker user
	// may call the others (streamctl's) only to be refused inside.
	workerUses := scanCommands(t, root, []string{"./worker", "./cmd/worker"}, true, "demo.go", "demo_events.go", "scripts_gen.go")
	// The producer: its package and cmd/producer, not their imports (the
	// producer borrows the worker's key and envelope helpers, not its
	// commands).
	producerPkgs := []string{"./producer"}
	if _, err := os.Stat(filepath.Join(root, "cmd", "producer")); err == nil {
		producerPkgs = append(producerPkgs, "./cmd/producer")
	}
	producerUses := scanCommands(t, root, producerPkgs, false)
	// The dashboard (streamctl web): its package and what it imports of this
	// module (streamadmin, wire), but not streamadmin's loading of the
	// function libraries (scripts.go), which is the scripts user's, nor the
	// worker's check of them (scriptfn's check.go), nor the streamadmin
	// operations the dashboard does not offer: cancel (cancel.go), rewind
	// (rewind.go) and trim (trim.go, and the retention package it imports).
	// A new dashboard action on one of them fails here until the file
	// leaves this list and the ACL grants what it sends.
	dashboardUses := scanCommands(t, root, []string{"./streamadmin/web"}, true, "scripts.go", "scripts_gen.go", "check.go",
		"cancel.go", "rewind.go", "trim.go", "retention.go")

	for _, u := range []struct {
		user     string
		uses     map[string][]string
		tolerate map[string]string  // commands the code sends and copes with NOPERM for, and why
		args     map[string][][]any // the user's own arguments for a command, in place of dryRunArgs'
	}{
		{"worker", workerUses, map[string]string{
			"config|get": "the start-up eviction check logs and goes on without it (EndToEnd checks that)",
		}, nil},
		{"producer", producerUses, nil, nil},
		{"dashboard", dashboardUses, map[string]string{
			"config|get": "the eviction warning is left out without it (CONFIG GET also reads passwords)",
			"xtrim":      "only PurgeAll sends it (streamctl dlq purge --all); the dashboard purges by ID",
		}, dashboardDryRun},
	} {
		t.Run(u.user, func(t *testing.T) {
			if len(u.uses) == 0 {
				t.Fatal("found no Redis command in the code: the scanner is broken")
			}
			t.Logf("%s sends: %s", u.user, strings.Join(sortedKeys(u.uses), " "))
			for cmd, where := range u.uses {
				argvs, ok := u.args[cmd]
				if !ok {
					argvs, ok = dryRunArgs[cmd]
				}
				if own, has := userDryRunArgs[u.user][cmd]; has {
					argvs, ok = own, true
				}
				if !ok {
					t.Errorf("%s: the code sends %s (%s), which this test does not know: add it to dryRunArgs with the arguments the code uses, and grant it in %s if the %s user needs it",
						u.user, strings.ToUpper(cmd), strings.Join(where, ", "), aclFile, u.user)
					continue
				}
				for _, argv := range argvs {
					res, err := admin.Do(context.Background(), append([]any{"ACL", "DRYRUN", u.user}, argv...)...).Text()
					allowed := err == nil && res == "OK"
					switch why, tolerated := u.tolerate[cmd]; {
					case tolerated && allowed:
						t.Errorf("%s: %s is granted; it should not be (%s)", u.user, strings.ToUpper(cmd), why)
					case !tolerated && !allowed:
						t.Errorf("%s: the code sends %v (%s) and the ACL refuses it: %v %v", u.user, argv, strings.Join(where, ", "), res, err)
					}
				}
			}
			// And nothing is granted that the code does not send.
			for _, g := range aclGrants(t, srv.shipped, u.user) {
				if _, used := u.uses[g]; !used && g != "ping" && g != "select" {
					t.Errorf("%s: the ACL grants +%s, which the code never sends: remove it from %s", u.user, g, aclFile)
				}
			}
		})
	}
}

// testACLEndToEnd runs the real worker daemon (cmd/worker with its examples
// plugin, whose handlers ack, retry and dead-letter) as the worker user, fed by the
// producer package as the producer user, through every path of the runtime:
// acknowledgements, retries through the delayed set and the promote script,
// dead letters, producer-side delayed events, dedupe marks, reclaim
// heartbeats and the metrics collector. Any NOPERM would be an ERROR in the
// log or a message that never finishes.
func testACLEndToEnd(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	dir := t.TempDir()
	bin := testbin.Build(t, dir, "../cmd/worker", "worker", raceEnabled)
	streamctl := testbin.Build(t, dir, "../cmd/streamctl", "streamctl", raceEnabled)
	stream := aclPrefix + "e2e-" + testredis.RandomID() + ":orders"
	httpAddr := freeAddr(t)
	env := workerEnv(srv.url("worker"), stream, "pod-0", map[string]string{
		"WORKER_HTTP_ADDR":        httpAddr,
		"WORKER_DEDUPE_WINDOW":    "1m",
		"WORKER_RECLAIM_INTERVAL": "50ms",
		"WORKER_PLUGINS":          "examples",  // handlers that ack, retry and dead-letter, and need no database
		"REDIS_SCRIPTS":           "functions", // the worker user may FCALL, not EVAL
		"WORKER_SCHEDULE":         "acl.tick @every 1s",
		"WORKER_SCHEDULE_STREAM":  stream + ":ticks", // beside, so the examples' counts stay theirs
	})

	// Before the scripts are loaded as functions the worker refuses to
	// start, saying how to load them; the scripts user loads them.
	early := startWorker(t, bin, "worker-before-scripts-load", env)
	if code := early.wait(30 * time.Second); code != 1 || !strings.Contains(early.output.String(), "streamctl scripts load") {
		t.Fatalf("worker before the scripts are loaded: exit %d, want 1 with a message naming streamctl scripts load:\n%s", code, early.output.String())
	}
	load := testbin.Run(t, streamctl, "", []string{"REDIS_URL=" + srv.url("scripts")}, []string{"scripts", "load"})
	load.Want(t, 0)
	if !strings.Contains(load.Stdout, " loaded, 0 already there, 0 replaced") {
		t.Errorf("streamctl scripts load printed %q", load.Stdout)
	}

	w := startWorker(t, bin, "worker", env)

	pc, err := producer.NewClient(srv.url("producer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := producer.New(pc, producer.Options{})
	ctx := context.Background()
	const orders, payments, emails, delayed = 40, 5, 3, 2
	var events []producer.Event
	for i := range orders {
		events = append(events, producer.Event{Type: "order.created", Data: []byte(`{}`), ID: "order-" + strconv.Itoa(i)})
	}
	for range payments { // fail twice, succeed on the third attempt
		events = append(events, producer.Event{Type: "payment.charge", Data: []byte(`{}`)})
	}
	for range emails { // refused for good: dead-lettered
		events = append(events, producer.Event{Type: "email.send", Data: []byte(`no address`)})
	}
	if _, err := p.PublishBatch(ctx, stream, events); err != nil {
		t.Fatalf("publishing as the producer user: %v", err)
	}
	for i := range delayed {
		due := time.Now().Add(100 * time.Millisecond)
		if err := p.PublishDelayed(ctx, stream, producer.Event{Type: "order.created", Data: []byte(`{}`), ID: "later-" + strconv.Itoa(i)}, due); err != nil {
			t.Fatalf("scheduling as the producer user: %v", err)
		}
	}
	want := map[string]int{"acked": orders + payments + delayed, "retried": 2 * payments, "dead": emails}
	waitForOutcomes(t, w, httpAddr, stream, want)

	// A resend of a processed id is skipped: the dedupe mark was written
	// and is read as the worker user.
	if _, err := p.Publish(ctx, stream, producer.Event{Type: "order.created", Data: []byte(`{}`), ID: "order-0"}); err != nil {
		t.Fatal(err)
	}
	want["duplicate"] = 1
	waitForOutcomes(t, w, httpAddr, stream, want)

	// The scheduler's script and its HSET/HGET run as the worker user.
	waitFor(t, 30*time.Second, w, "a periodic event published as the worker user", func() (bool, string) {
		n := admin.XLen(ctx, stream+":ticks").Val()
		return n >= 1, fmt.Sprintf("%d ticks", n)
	})
	// Unique publishing runs as the producer user, as a function.
	uc, err := config.Redis{RedisURL: srv.url("producer"), RedisScripts: config.ScriptsFunctions}.NewClient(config.NoRetries())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	up := producer.New(uc, producer.Options{})
	for i, wantDup := range []bool{false, true} {
		res, err := up.PublishUnique(ctx, stream+":reports", producer.Event{Type: "report.requested", ID: "report-1"}, time.Hour)
		if err != nil || res.Duplicate != wantDup {
			t.Fatalf("unique publish %d as the producer user = %+v, %v; want Duplicate %v", i+1, res, err, wantDup)
		}
	}

	g := readGroup(t, admin, stream)
	if g.pending != 0 || g.lag != 0 || g.delayed != 0 || g.dead != emails {
		t.Errorf("group state %s; want nothing pending, lagging or delayed, and %d dead letters", g, emails)
	}
	_, metrics, err := httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	// The collector's XINFO GROUPS, ZCARD and XLEN ran as the worker user.
	for _, m := range []string{
		`streamworker_group_pending{group="e2e",stream="` + stream + `"} 0`,
		`streamworker_dead_letters{stream="` + stream + `"} ` + strconv.Itoa(emails),
		`streamworker_delayed{stream="` + stream + `"} 0`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if code, body, err := httpGet("http://" + httpAddr + "/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz = %d %q %v, want 200", code, body, err)
	}

	w.stop(30 * time.Second)
	w.requireCleanLog()
	var evictionCheck bool
	for _, rec := range w.logLines() {
		if msg, _ := rec["msg"].(string); strings.Contains(msg, "maxmemory-policy") {
			errText, _ := rec["error"].(string)
			evictionCheck = strings.Contains(errText, "NOPERM")
			t.Logf("eviction check without CONFIG GET: %v", rec)
		}
	}
	if !evictionCheck {
		t.Error("the worker did not log that CONFIG GET maxmemory-policy was refused (NOPERM) and go on")
	}
	// Every script ran as a function: the worker user cannot EVAL.
	stats := admin.Info(context.Background(), "commandstats").Val()
	if !strings.Contains(stats, "cmdstat_fcall:") || strings.Contains(stats, "cmdstat_eval") {
		t.Errorf("commandstats: want FCALL and no EVAL or EVALSHA (not even refused):\n%s", stats)
	}
	if strings.Contains(w.output.String(), srv.passwords["worker"]) {
		t.Error("the worker's log contains its Redis password")
	}

	// A wrong password is an error at every read, and never logged either.
	wrong := "wrong-" + testredis.RandomID()
	badURL := strings.Replace(srv.url("worker"), srv.passwords["worker"], wrong, 1)
	bad := startWorker(t, bin, "worker-wrong-password", workerEnv(badURL, stream, "pod-1", map[string]string{"WORKER_PLUGINS": "examples"}))
	waitFor(t, 30*time.Second, bad, "the worker to report the refused password", func() (bool, string) {
		out := bad.output.String()
		return strings.Contains(out, "WRONGPASS"), tail(out, 400)
	})
	bad.stop(30 * time.Second)
	if out := bad.output.String(); strings.Contains(out, wrong) || strings.Contains(out, srv.passwords["worker"]) {
		t.Error("the worker's log contains a password")
	}
}

// testACLPartitioned runs a partitioned stream as the worker and producer
// users: partitions ({sw:…:i}), their owner keys and the group's members set
// are all within the users' grants.
func testACLPartitioned(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	bin := testbin.Build(t, t.TempDir(), "../cmd/worker", "worker", raceEnabled)
	const partitions, events = 4, 40
	stream := aclPrefix + "p-" + testredis.RandomID()
	loader, err := config.Redis{RedisURL: srv.url("scripts")}.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	if _, err := streamadmin.New(loader).LoadScripts(context.Background()); err != nil {
		t.Fatalf("loading the scripts as the scripts user: %v", err)
	}
	w := startWorker(t, bin, "worker", workerEnv(srv.url("worker"), stream, "pod-0", map[string]string{
		"WORKER_PARTITIONS": strconv.Itoa(partitions),
		"WORKER_PLUGINS":    "examples",
		"REDIS_SCRIPTS":     "functions",
	}))
	pc, err := producer.NewClient(srv.url("producer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := producer.New(pc, producer.Options{Partitions: partitions})
	batch := make([]producer.Event, events)
	for i := range batch {
		batch[i] = producer.Event{Type: "order.created", Data: []byte(`{}`), Key: "customer-" + strconv.Itoa(i%7)}
	}
	ctx := context.Background()
	if _, err := p.PublishBatch(ctx, stream, batch); err != nil {
		t.Fatalf("publishing to partitions as the producer user: %v", err)
	}
	waitFor(t, 60*time.Second, w, "every partition read and acknowledged", func() (bool, string) {
		var stored int64
		for i := range partitions {
			key := wire.PartitionStream(stream, i)
			n, _ := admin.XLen(ctx, key).Result()
			stored += n
			gs, err := admin.XInfoGroups(ctx, key).Result()
			if err != nil || len(gs) == 0 {
				return false, fmt.Sprintf("%s: groups %v, %v", key, gs, err)
			}
			if gs[0].Pending != 0 || gs[0].Lag != 0 {
				return false, fmt.Sprintf("%s: pending %d, lag %d", key, gs[0].Pending, gs[0].Lag)
			}
		}
		return stored == events, fmt.Sprintf("%d of %d stored", stored, events)
	})
	w.stop(30 * time.Second)
	w.requireCleanLog()
}

// waitForOutcomes polls the worker's /metrics until the message outcomes on
// stream are exactly want.
func waitForOutcomes(t *testing.T, w *workerProc, httpAddr, stream string, want map[string]int) {
	t.Helper()
	waitFor(t, 60*time.Second, w, fmt.Sprintf("outcomes %v", want), func() (bool, string) {
		_, body, err := httpGet("http://" + httpAddr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		got := map[string]int{}
		for line := range strings.SplitSeq(body, "\n") {
			if !strings.HasPrefix(line, "streamworker_messages_total{") || !strings.Contains(line, `stream="`+stream+`"`) {
				continue
			}
			m := regexp.MustCompile(`outcome="([a-z_]+)".*\} (\d+)$`).FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n, _ := strconv.Atoi(m[2])
			got[m[1]] += n
		}
		return reflect.DeepEqual(got, want), fmt.Sprint(got)
	})
}

// testACLDenied: what the worker, producer and KEDA users must never do.
func testACLDenied(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := aclPrefix + "denied-" + testredis.RandomID()
	if err := admin.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "other:key", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Functions an administrator loaded (not the worker's, whose commands
	// the worker may run), and streamctl's replay script, which the
	// worker's libraries include and the worker user can call but not get
	// anywhere with.
	var fn struct{ lib, flushall, del, get string }
	fn.lib = "acltest_" + testredis.RandomID()
	fn.flushall, fn.del, fn.get = fn.lib+"_flushall", fn.lib+"_del", fn.lib+"_get"
	if err := admin.FunctionLoad(ctx, "#!lua name="+fn.lib+"\n"+
		"redis.register_function('"+fn.flushall+"', function() return redis.call('FLUSHALL') end)\n"+
		"redis.register_function('"+fn.del+"', function(keys) return redis.call('DEL', keys[1]) end)\n"+
		"redis.register_function('"+fn.get+"', function(keys) return redis.call('GET', keys[1]) end)\n").Err(); err != nil {
		t.Fatal(err)
	}
	replayIdx := slices.IndexFunc(scriptfn.Sources(), func(src string) bool { return strings.Contains(src, "redis.call('XDEL', KEYS[1], id)") })
	if replayIdx < 0 {
		t.Fatal("no replay script among the libraries' sources")
	}
	replay := scriptfn.Build(scriptfn.Sources()[replayIdx])
	if err := admin.FunctionLoad(ctx, replay.Code).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: wire.DeadLetterKey(stream), ID: "1-0", Values: []string{"type", "t"}}).Err(); err != nil {
		t.Fatal(err)
	}
	type call struct {
		name string
		args []any
	}
	cases := map[string][]call{
		"worker": {
			{"FLUSHALL", []any{"FLUSHALL"}},
			{"FLUSHDB", []any{"FLUSHDB"}},
			{"KEYS", []any{"KEYS", "*"}},
			{"SCAN", []any{"SCAN", "0"}},
			{"XGROUP DESTROY", []any{"XGROUP", "DESTROY", stream, group}},
			{"XGROUP SETID", []any{"XGROUP", "SETID", stream, group, "$"}},
			{"XTRIM outside the prefix", []any{"XTRIM", "other:stream", "MAXLEN", "0"}},
			{"XDEL", []any{"XDEL", stream, "1-0"}},
			{"DEL of a stream", []any{"DEL", stream}},
			{"SET over a stream", []any{"SET", stream, "x"}},
			{"GET outside the prefix", []any{"GET", "other:key"}},
			{"SET outside the prefix", []any{"SET", "other:key", "x"}},
			{"XADD outside the prefix", []any{"XADD", "other:stream", "*", "f", "v"}},
			{"XREADGROUP outside the prefix", []any{"XREADGROUP", "GROUP", group, "c", "STREAMS", "other:stream", ">"}},
			{"CONFIG SET", []any{"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}},
			{"CONFIG GET", []any{"CONFIG", "GET", "requirepass"}},
			{"ACL LIST", []any{"ACL", "LIST"}},
			{"SCRIPT FLUSH", []any{"SCRIPT", "FLUSH"}},
			{"PUBLISH", []any{"PUBLISH", aclPrefix + "chan", "x"}},
			// Scripts: FCALL of the loaded functions only (REDIS_SCRIPTS=functions),
			// never Lua of its own, nor loading or removing functions.
			{"EVAL of any script", []any{"EVAL", "return 1", "0"}},
			{"EVALSHA", []any{"EVALSHA", strings.Repeat("0", 40), "0"}},
			{"EVAL_RO", []any{"EVAL_RO", "return 1", "0"}},
			{"SCRIPT LOAD", []any{"SCRIPT", "LOAD", "return 1"}},
			{"FUNCTION LOAD", []any{"FUNCTION", "LOAD", "#!lua name=mine\nredis.register_function('mine', function() return 1 end)"}},
			{"FUNCTION DELETE", []any{"FUNCTION", "DELETE", fn.lib}},
			{"FUNCTION FLUSH", []any{"FUNCTION", "FLUSH"}},
			{"FUNCTION RESTORE", []any{"FUNCTION", "RESTORE", "x"}},
			{"FUNCTION KILL", []any{"FUNCTION", "KILL"}},
			// A function runs with its caller's permissions, as an EVAL script did.
			{"function calling FLUSHALL", []any{"FCALL", fn.flushall, "0"}},
			{"function deleting a stream", []any{"FCALL", fn.del, "1", stream}},
			{"function touching another key", []any{"FCALL", fn.get, "1", "other:key"}},
			{"streamctl's replay function", []any{"FCALL", replay.Name, "2", wire.DeadLetterKey(stream), stream, "100", "type", "envelope", "origin_id", "0", "1-0"}},
		},
		"producer": {
			{"FLUSHALL", []any{"FLUSHALL"}},
			{"XREADGROUP", []any{"XREADGROUP", "GROUP", group, "c", "STREAMS", stream, ">"}},
			{"XACK", []any{"XACK", stream, group, "1-0"}},
			{"XGROUP DESTROY", []any{"XGROUP", "DESTROY", stream, group}},
			{"XRANGE", []any{"XRANGE", stream, "-", "+"}},
			{"DEL", []any{"DEL", stream}},
			{"ZADD on a stream", []any{"ZADD", stream, "1", "m"}},
			{"XADD outside the prefix", []any{"XADD", "other:stream", "*", "f", "v"}},
			{"EVAL", []any{"EVAL", "return 1", "0"}},
			{"FCALL", []any{"FCALL", fn.get, "1", stream}},
			{"FUNCTION LOAD", []any{"FUNCTION", "LOAD", "#!lua name=mine\nredis.register_function('mine', function() return 1 end)"}},
		},
		"scripts": { // loads functions and touches no data
			{"GET", []any{"GET", "other:key"}},
			{"XADD", []any{"XADD", stream, "*", "f", "v"}},
			{"XRANGE", []any{"XRANGE", stream, "-", "+"}},
			{"FCALL", []any{"FCALL", fn.get, "1", stream}},
			{"EVAL", []any{"EVAL", "return 1", "0"}},
			{"FUNCTION DELETE", []any{"FUNCTION", "DELETE", fn.lib}},
			{"FUNCTION FLUSH", []any{"FUNCTION", "FLUSH"}},
			{"FLUSHALL", []any{"FLUSHALL"}},
			{"KEYS", []any{"KEYS", "*"}},
		},
		"keda": {
			{"XADD", []any{"XADD", stream, "*", "f", "v"}},
			{"XREADGROUP", []any{"XREADGROUP", "GROUP", group, "c", "STREAMS", stream, ">"}},
			{"XINFO GROUPS outside the prefix", []any{"XINFO", "GROUPS", "other:stream"}},
			{"KEYS", []any{"KEYS", "*"}},
		},
	}
	for user, calls := range cases {
		c := srv.client(t, user)
		for _, cl := range calls {
			err := c.Do(ctx, cl.args...).Err()
			var rerr redis.Error
			if err == nil || !errors.As(err, &rerr) || !isNoPerm(err) {
				t.Errorf("%s: %s = %v, want NOPERM", user, cl.name, err)
			}
		}
	}
	// What each user does need works (the scaler's reads among them).
	for user, args := range map[string][]any{
		"worker":   {"XINFO", "GROUPS", stream},
		"producer": {"XADD", stream, "*", "type", "t"},
		"keda":     {"XPENDING", stream, group},
		"scripts":  {"FUNCTION", "LIST", "LIBRARYNAME", fn.lib},
	} {
		if err := srv.client(t, user).Do(ctx, args...).Err(); err != nil {
			t.Errorf("%s: %v = %v, want it allowed", user, args, err)
		}
	}
	if n, err := admin.Exists(ctx, stream, "other:key", wire.DeadLetterKey(stream)).Result(); err != nil || n != 3 {
		t.Errorf("after the refused commands, %d of 3 keys exist (%v)", n, err)
	}
	if n, err := admin.XLen(ctx, wire.DeadLetterKey(stream)).Result(); err != nil || n != 1 {
		t.Errorf("after the refused replay, the dead-letter stream has %d entries (%v), want 1", n, err)
	}
	if libs, err := admin.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: fn.lib}).Result(); err != nil || len(libs) != 1 {
		t.Errorf("after the refused FUNCTION DELETE and FLUSH: libraries %v, %v", libs, err)
	}

	// Last, load the shipped default-user line: a connection without
	// credentials can then do nothing.
	lines := []string{}
	raw, err := os.ReadFile(srv.aclPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(l, "user default ") {
			l = srv.shipped[slices.IndexFunc(srv.shipped, func(s string) bool { return strings.HasPrefix(s, "user default ") })]
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(srv.aclPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "LOAD").Err(); err != nil {
		t.Fatalf("ACL LOAD of the shipped default user: %v", err)
	}
	anon := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without credentials = %v, want NOAUTH (the default user is off)", err)
	}
}

// isNoPerm reports whether err is Redis refusing a command for the user's
// ACL. Inside a script the refusal comes back as a script error.
func isNoPerm(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "NOPERM") ||
		strings.Contains(s, "no permissions") || strings.Contains(s, "can't access") || strings.Contains(s, "can't run")
}

// dryRunArgs are, for every Redis command (ACL name: "xgroup|create") the
// worker or producer code sends, arguments as the code sends them, on keys
// of the families the code uses them on, for ACL DRYRUN.
var dryRunArgs = func() map[string][][]any {
	const s = aclPrefix + "dry:orders"
	var (
		dlq    = wire.DeadLetterKey(s)
		dlay   = wire.DelayedKey(s)
		cancd  = wire.CancelledKey(s)
		dedupe = wire.DedupeKey(s, "order-1")
		alive  = wire.HeartbeatKey(s, "workers", "pod-0")
		sched  = wire.ScheduleKey(s)
		lease  = wire.TrimLeaseKey(s)

		plugins = aclPrefix + "plugins:"                   // WORKER_PLUGINS_PREFIX (cmd/worker)
		user    = plugins + "user:{u1}:profile"            // users (its cache)
		pts     = plugins + "points:{balances}:u1"         // points
		applied = plugins + "points:{balances}:applied:t1" // points
		awards  = "{" + s + "}:points:awarded"             // points (effects, in the stream's slot)
		board   = plugins + "leaderboard:daily:2025-01-02" // scores (leaderboard)
		rl      = plugins + "ratelimit:n1"                 // notifications (ratelimit)
		sess    = plugins + "session:sess-1"               // sessions (session)
		rep     = plugins + "report:{r1}:body"             // reports
		lck     = plugins + "report:{r1}:lock"             // reports (lock)
	)
	return map[string][][]any{
		"xreadgroup":         {{"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "BLOCK", "1", "STREAMS", s, ">"}},
		"xack":               {{"XACK", s, "g", "1-0"}},
		"xpending":           {{"XPENDING", s, "g", "-", "+", "10", "c"}},
		"xclaim":             {{"XCLAIM", s, "g", "c", "0", "1-0", "IDLE", "1000", "JUSTID"}},
		"xautoclaim":         {{"XAUTOCLAIM", s, "g", "c", "1000", "0-0", "COUNT", "10"}},
		"xadd":               {{"XADD", s, "*", "type", "t"}, {"XADD", dlq, "*", "type", "t"}},
		"xlen":               {{"XLEN", dlq}, {"XLEN", s}},
		"xrange":             {{"XRANGE", dlq, "-", "+", "COUNT", "500"}},
		"xrevrange":          {{"XREVRANGE", dlq, "+", "-", "COUNT", "1"}},
		"xdel":               {{"XDEL", dlq, "1-0"}},
		"xtrim":              {{"XTRIM", dlq, "MINID", "2-0"}, {"XTRIM", s, "MINID", "~", "1-0"}, {"XTRIM", dlq, "MAXLEN", "=", "10"}, {"XTRIM", dlq, "MINID", "=", "1-0"}},
		"memory|usage":       {{"MEMORY", "USAGE", s, "SAMPLES", "5"}},
		"xinfo|stream":       {{"XINFO", "STREAM", s}},
		"scan":               {{"SCAN", "0", "COUNT", "1000", "TYPE", "stream"}},
		"type":               {{"TYPE", s}},
		"xgroup|create":      {{"XGROUP", "CREATE", s, "g", "0", "MKSTREAM"}},
		"xgroup|delconsumer": {{"XGROUP", "DELCONSUMER", s, "g", "c"}},
		"xinfo|groups":       {{"XINFO", "GROUPS", s}},
		"xinfo|consumers":    {{"XINFO", "CONSUMERS", s, "g"}},
		"zadd":               {{"ZADD", dlay, "1", "m"}},
		"zrangebyscore":      {{"ZRANGEBYSCORE", dlay, "-inf", "1", "LIMIT", "0", "10"}, {"ZRANGEBYSCORE", cancd, "1", "+inf", "WITHSCORES", "LIMIT", "0", "1000"}},
		"zrem":               {{"ZREM", dlay, "m"}},
		"zcard":              {{"ZCARD", dlay}},
		"fcall":              {{"FCALL", scriptfn.Name(strings.Repeat("0", 40)), "1", s}, {"FCALL", scriptfn.Name(strings.Repeat("0", 40)), "2", s, dlay}},
		"function|list":      {{"FUNCTION", "LIST", "LIBRARYNAME", scriptfn.Prefix + "*", "WITHCODE"}},
		"config|get":         {{"CONFIG", "GET", "maxmemory-policy"}},

		// The built-in plugins, under WORKER_PLUGINS_PREFIX (sw:plugins:).
		"get":              {{"GET", lease}, {"GET", dedupe}, {"GET", user}, {"GET", pts}, {"GET", rl}, {"GET", rep}},
		"set":              {{"SET", lease, "g/c", "PX", "30000"}, {"SET", dedupe, "1", "PX", "60000"}, {"SET", alive, "1", "PX", "60000"}, {"SET", user, "v", "PX", "60000"}, {"SET", applied, "1", "PX", "60000"}, {"SET", rl, "1", "PX", "1000"}, {"SET", rep, "b"}},
		"del":              {{"DEL", lease}, {"DEL", alive}, {"DEL", user}, {"DEL", sess}, {"DEL", lck}},
		"pexpire":          {{"PEXPIRE", lease, "30000"}, {"PEXPIRE", user, "1000"}, {"PEXPIRE", rl, "1000"}, {"PEXPIRE", sess, "1000"}, {"PEXPIRE", lck, "1000"}},
		"pttl":             {{"PTTL", sess}, {"PTTL", lck}},
		"exists":           {{"EXISTS", alive}, {"EXISTS", applied}, {"EXISTS", sess}},
		"incr":             {{"INCR", rep + ":fence"}},
		"incrby":           {{"INCRBY", pts, "5"}},
		"decrby":           {{"DECRBY", pts, "5"}},
		"hincrby":          {{"HINCRBY", awards, "u1", "5"}},
		"watch":            {{"WATCH", pts, applied}},
		"unwatch":          {{"UNWATCH"}},
		"multi":            {{"MULTI"}},
		"exec":             {{"EXEC"}},
		"hset":             {{"HSET", sess, "page", "/"}, {"HSET", sched, "tick:cleanup.run @every 5m", "1"}},
		"hget":             {{"HGET", sess, "page"}, {"HGET", sched, "tick:cleanup.run @every 5m"}},
		"hmget":            {{"HMGET", sess, "page", "user"}, {"HMGET", wire.PausedKey(s), "workers", wire.PauseAllGroups}, {"HMGET", wire.PausedKey(aclPrefix + "dry"), "workers", wire.PauseAllGroups}},
		"hgetall":          {{"HGETALL", sess}},
		"zincrby":          {{"ZINCRBY", board, "5", "player1"}},
		"zrank":            {{"ZRANK", board, "player1"}},
		"zscore":           {{"ZSCORE", board, "player1"}},
		"pexpireat":        {{"PEXPIREAT", board, "4102444800000"}},
		"zrange":           {{"ZRANGE", board, "0", "9", "REV", "WITHSCORES"}, {"ZRANGE", rl, "0", "0"}},
		"zremrangebyscore": {{"ZREMRANGEBYSCORE", rl, "-inf", "1"}},
		"time":             {{"TIME"}},
		"ping":             {{"PING"}}, // notify's subscription health check
		"publish":          {{"PUBLISH", plugins + "notifications:u1", "{}"}, {"PUBLISH", plugins + "rank.changed", "{}"}},
		"spublish":         {{"SPUBLISH", plugins + "notifications:u1", "{}"}, {"SPUBLISH", plugins + "rank.changed", "{}"}},
	}
}()

// dashboardDryRun are the dashboard's arguments for the commands it sends
// on other keys than the worker's: it reads partition owners, heartbeats and
// the delayed set, and watches the dead-letter stream of a replay.
var dashboardDryRun = func() map[string][][]any {
	const s = aclPrefix + "dry:orders"
	p := wire.PartitionStream(aclPrefix+"dry:clicks", 0)
	return map[string][][]any{
		"get":    {{"GET", wire.PartitionOwnerKey(p, "g")}},
		"pttl":   {{"PTTL", wire.HeartbeatKey(s, "g", "c")}},
		"zrange": {{"ZRANGE", wire.DelayedKey(s), "0", "49", "WITHSCORES"}},
		"watch":  {{"WATCH", wire.DeadLetterKey(s)}},
		// Pause and resume (streamadmin's Pause, Resume, Pauses) on the
		// pause hash, of a stream and of a partitioned stream's logical
		// name; the periodic events of a stream and of a partition.
		"hgetall": {{"HGETALL", wire.PausedKey(s)}, {"HGETALL", wire.ScheduleKey(s)}, {"HGETALL", wire.ScheduleKey(p)}},
		"hsetnx":  {{"HSETNX", wire.PausedKey(s), wire.PauseAllGroups, "1"}, {"HSETNX", wire.PausedKey(aclPrefix + "dry:clicks"), "g", "1"}},
		"hdel":    {{"HDEL", wire.PausedKey(s), "g"}},
		"del":     {{"DEL", wire.PausedKey(s)}},
	}
}()

// userDryRunArgs replace, for one user, the arguments of dryRunArgs for a
// command that user sends on keys of its own: the producer's GET and SET are
// its unique-publish script's, on the unique marks only.
var userDryRunArgs = map[string]map[string][][]any{
	"producer": {
		"get": {{"GET", wire.UniqueKey(aclPrefix+"dry:orders", "order-1")}, {"GET", wire.UniqueKey("{"+aclPrefix+"dry:orders:3}", "order-1")}},
		"set": {{"SET", wire.UniqueKey(aclPrefix+"dry:orders", "order-1"), "1-0", "PX", "3600000"}},
	},
}

// aclGrants returns the commands (ACL names) the shipped file grants user,
// in its root permissions and selectors.
func aclGrants(t *testing.T, lines []string, user string) []string {
	t.Helper()
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[1] != user {
			continue
		}
		var out []string
		for _, tok := range f[2:] {
			tok = strings.Trim(tok, "()")
			if strings.HasPrefix(tok, "+@") {
				t.Errorf("%s grants the category %s: grant single commands", user, tok)
			}
			if c, ok := strings.CutPrefix(tok, "+"); ok {
				out = append(out, c)
			}
		}
		return out
	}
	t.Fatalf("%s has no user %s", aclFile, user)
	return nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// testACLProducerLimits holds deploy/redis/README.md's "What the producer
// user can still do" to the server: XADD's own arguments trim a stream,
// the dead-letter stream included, and an explicit maximum ID ends every
// later XADD * to that stream, which the documented repair undoes without
// losing the group or its pending entries.
func testACLProducerLimits(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	p := srv.client(t, "producer")
	ctx := context.Background()
	stream := aclPrefix + "limits-" + testredis.RandomID()
	dlq := wire.DeadLetterKey(stream)
	for range 3 {
		if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []string{"type", "t"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// ACLs cannot refuse an argument: XADD … MAXLEN 0 trims what it may write.
	if err := p.Do(ctx, "XADD", dlq, "MAXLEN", "0", "*", "type", "t").Err(); err != nil {
		t.Fatalf("XADD MAXLEN 0 as the producer: %v (if Redis now refuses it, update the README)", err)
	}
	if n := admin.XLen(ctx, dlq).Val(); n != 0 {
		t.Errorf("after XADD MAXLEN 0 the dead-letter stream has %d entries, want 0 as the README says", n)
	}
	if err := p.Do(ctx, "XTRIM", dlq, "MAXLEN", "0").Err(); err == nil || !isNoPerm(err) {
		t.Errorf("XTRIM as the producer = %v, want NOPERM", err)
	}

	// The maximum ID: every later XADD * fails with the error the README quotes.
	if err := admin.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	first, err := p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	const maxID = "18446744073709551615-18446744073709551615"
	if err := p.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: maxID, Values: []string{"type", "t"}}).Err(); err != nil {
		t.Fatal(err)
	}
	err = p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}}).Err()
	if err == nil || !strings.Contains(err.Error(), "The stream has exhausted the last possible ID") {
		t.Fatalf("XADD * after the maximum ID = %v, want the README's error", err)
	}
	// A worker read both: the group's last delivered ID is the maximum too.
	if err := admin.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	// The repair, as the README gives it (an administrator's commands).
	for _, cmd := range [][]any{
		{"XDEL", stream, maxID},
		{"XSETID", stream, first},
		{"XGROUP", "SETID", stream, group, first},
	} {
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	next, err := p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "t"}}).Result()
	if err != nil {
		t.Fatalf("XADD * after the repair: %v", err)
	}
	got, err := admin.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}}).Result()
	if err != nil || len(got) != 1 || len(got[0].Messages) != 1 || got[0].Messages[0].ID != next {
		t.Errorf("after the repair the group reads %v, %v; want the new entry %s", got, err, next)
	}
	if pend := admin.XPending(ctx, stream, group).Val(); pend.Count != 3 {
		t.Errorf("after the repair %d entries are pending, want 3 (the first, the deleted one and the new one)", pend.Count)
	}
}

// testACLProducerPerStream: the tighter grant deploy/redis/README.md offers
// instead of ~sw:* — exact keys of one stream and its delayed set, plain
// and with a Cluster hash tag — lets the producer package send and schedule
// to that stream and nothing else: not the dead-letter stream, a dedupe
// mark, a stream at the delayed key, or another stream.
func testACLProducerPerStream(t *testing.T) {
	t.Parallel()
	srv := startACLRedis(t)
	admin := srv.Client(t)
	ctx := context.Background()
	for _, stream := range []string{aclPrefix + "orders", aclPrefix + "{orders}"} {
		user := "producer-" + testredis.RandomID()
		// The README's rule, with this stream's name.
		rule := []any{
			"ACL", "SETUSER", user, "reset", "on", ">pw", "~" + stream, "resetchannels", "-@all", "+ping", "+select", "+xadd",
			"(~" + wire.DelayedKey(stream) + " resetchannels -@all +zadd)",
		}
		if err := admin.Do(ctx, rule...).Err(); err != nil {
			t.Fatalf("%v: %v", rule, err)
		}
		dry := func(args ...any) error { // ACL DRYRUN answers OK or why not
			res, err := admin.Do(ctx, append([]any{"ACL", "DRYRUN", user}, args...)...).Text()
			if err == nil && res != "OK" {
				err = errors.New(res)
			}
			return err
		}
		for _, ok := range [][]any{
			{"XADD", stream, "*", "type", "t"},
			{"ZADD", wire.DelayedKey(stream), "1", "m"},
		} {
			if err := dry(ok...); err != nil {
				t.Errorf("%s: %v refused: %v", stream, ok, err)
			}
		}
		for _, no := range [][]any{
			{"XADD", wire.DeadLetterKey(stream), "*", "type", "t"},
			{"XADD", stream + ":dedupe:order-1", "*", "type", "t"},
			{"XADD", wire.DelayedKey(stream), "*", "type", "t"},
			{"XADD", stream + ":alive:workers:pod-0", "*", "type", "t"},
			{"XADD", aclPrefix + "payments", "*", "type", "t"},
			{"ZADD", wire.DeadLetterKey(stream), "1", "m"},
			{"XTRIM", stream, "MAXLEN", "0"},
		} {
			if err := dry(no...); err == nil {
				t.Errorf("%s: %v allowed; the per-stream grant must refuse it", stream, no)
			}
		}
		// The producer package works with it, sending and scheduling.
		c, err := producer.NewClient("redis://" + user + ":pw@" + srv.Addr + "/0")
		if err != nil {
			t.Fatal(err)
		}
		pr := producer.New(c, producer.Options{})
		if _, err := pr.Publish(ctx, stream, producer.Event{Type: "order.created", Data: []byte(`{}`)}); err != nil {
			t.Errorf("%s: Publish as the per-stream user: %v", stream, err)
		}
		if err := pr.PublishDelayed(ctx, stream, producer.Event{Type: "order.created", Data: []byte(`{}`)}, time.Now().Add(time.Hour)); err != nil {
			t.Errorf("%s: PublishDelayed as the per-stream user: %v", stream, err)
		}
		_ = c.Close()
	}
}

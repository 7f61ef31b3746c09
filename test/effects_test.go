package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
)

// effectKey is the key Effects.Key(name) builds for stream (it has no hash
// tag of its own).
func effectKey(stream, name string) string { return "{" + stream + "}:" + name }

// testEffectsKilledBeforeCommit kills a worker process exactly between its
// handler's return and the script that commits the handler's effects with
// the acknowledgement, and shows the two happen together or not at all.
//
// The handler of the one message waits for a gate file. The test pauses
// Redis's writes (CLIENT PAUSE WRITE, which holds EVALSHA and FCALL of any
// script not flagged no-writes), creates the file, and waits until a new
// client sits blocked on a script call: the commit, sent and held by Redis.
// It SIGKILLs the worker there, waits until Redis has dropped that client,
// and unpauses: the held script never ran, so no effect is applied and the
// entry is still pending for the dead consumer. A second worker reclaims it
// and runs it again: the effect is applied exactly once and the entry is
// acknowledged.
func testEffectsKilledBeforeCommit(t *testing.T, bin string) {
	t.Parallel()
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	gate := filepath.Join(t.TempDir(), "go")
	data, err := json.Marshal(map[string]any{"seq": 1, "gate_file": gate})
	if err != nil {
		t.Fatal(err)
	}
	id, err := newProducer(t, srv).Publish(ctx, stream, producer.Event{Type: "effect", Data: data})
	if err != nil {
		t.Fatal(err)
	}

	// Worker a runs no periodic script while the commit is held: promotion
	// an hour apart, reclaim ten minutes, and its lease is renewed only after
	// most of a minute.
	a := startWorker(t, bin, "worker a", workerEnv(srv.URL(), stream, "a", map[string]string{
		"WORKER_RECLAIM_MIN_IDLE": "1m",
		"WORKER_RECLAIM_INTERVAL": "10m",
		"WORKER_PROMOTE_INTERVAL": "1h",
		"WORKER_BLOCK":            "200ms",
	}))
	waitFor(t, 30*time.Second, a, "worker a's handler to start and wait at its gate", func() (bool, string) {
		ok, err := c.SIsMember(ctx, stream+":started", "1").Result()
		return err == nil && ok, fmt.Sprintf("started=%v err=%v", ok, err)
	})

	if err := c.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	unpause := func() {
		if err := c.Do(context.Background(), "CLIENT", "UNPAUSE").Err(); err != nil {
			t.Errorf("CLIENT UNPAUSE: %v", err)
		}
	}
	paused := true
	t.Cleanup(func() {
		if paused {
			unpause()
		}
	})
	before := heldScriptClients(t, c)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var commit string
	waitFor(t, 30*time.Second, a, "worker a's commit script to be held by the write pause", func() (bool, string) {
		now := heldScriptClients(t, c)
		for cid, line := range now {
			if _, ok := before[cid]; !ok {
				commit = cid
				t.Logf("held after the gate opened: %s", line)
				return true, ""
			}
		}
		return false, fmt.Sprintf("held script clients before the gate %v, now %v", keys(before), keys(now))
	})
	a.kill()
	waitFor(t, 30*time.Second, nil, "Redis to drop the killed worker's held client", func() (bool, string) {
		_, ok := heldScriptClients(t, c)[commit]
		return !ok, "client id=" + commit + " still held"
	})
	unpause()
	paused = false

	// The held script never ran: nothing applied, the entry still a's.
	if n := c.Exists(ctx, effectKey(stream, "total"), effectKey(stream, "applied"), effectKey(stream, "ids")).Val(); n != 0 {
		t.Fatalf("%d effect keys exist after the worker was killed before its commit ran, want none", n)
	}
	if p := pendingOf(t, c, stream, "a"); len(p) != 1 || p[0].ID != id {
		t.Fatalf("pending for the killed consumer: %v, want only %s", p, id)
	}

	b := startWorker(t, bin, "worker b", faultEnv(srv.URL(), stream, "b", nil))
	waitFor(t, 30*time.Second, b, "worker b to reclaim the entry and commit its effects", func() (bool, string) {
		g := readGroup(t, c, stream)
		return g.pending == 0 && g.lag == 0, g.String()
	})
	b.stop(30 * time.Second)
	b.requireCleanLog()

	if total := c.Get(ctx, effectKey(stream, "total")).Val(); total != "1" {
		t.Errorf("total %q, want 1: the effect applied exactly once", total)
	}
	if ids := c.SMembers(ctx, effectKey(stream, "ids")).Val(); !slices.Equal(ids, []string{id}) {
		t.Errorf("ids %v, want [%s]", ids, id)
	}
	if calls := c.Get(ctx, stream+":calls").Val(); calls != "2" {
		t.Errorf("the handler ran %s times, want 2 (the killed run and the reclaimed one)", calls)
	}
}

// heldScriptClients returns the IDs of the clients Redis holds blocked (by
// the write pause) on a script call.
func heldScriptClients(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(list, "\n") {
		f := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		switch f["cmd"] {
		case "eval", "evalsha", "fcall":
			if strings.Contains(f["flags"], "b") {
				out[f["id"]] = line
			}
		}
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// testEffectsUnderRandomKills runs 2,000 messages with effects on three
// workers, SIGKILLs a random one at every few hundred committed messages
// and starts a new one in its place: at the end every message's effects are
// applied exactly once, however often its handler ran, and nothing is
// pending.
func testEffectsUnderRandomKills(t *testing.T, bin string) {
	t.Parallel()
	const total, kills = 2000, 6
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	stream := testredis.Prefix(t) + "events"
	publishRange(t, newProducer(t, srv), stream, 1, total, always("effect"), always(0))

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)
	env := func(name string) map[string]string {
		return faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY": "8",
			// Every kill may cost an entry a delivery; none may be
			// dead-lettered for it.
			"WORKER_MAX_ATTEMPTS": "50",
		})
	}
	workers := make([]*workerProc, 3)
	started := 0
	for i := range workers {
		started++
		name := fmt.Sprintf("w%d", started)
		workers[i] = startWorker(t, bin, "worker "+name, env(name))
	}
	applied := func() int64 {
		n, err := c.HLen(ctx, effectKey(stream, "applied")).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for k := 1; k <= kills; k++ {
		at := int64(k * total / (kills + 1))
		waitFor(t, 60*time.Second, nil, fmt.Sprintf("%d messages committed before kill %d", at, k), func() (bool, string) {
			n := applied()
			return n >= at, fmt.Sprintf("applied=%d %s", n, readGroup(t, c, stream))
		})
		i := rng.IntN(len(workers))
		workers[i].kill()
		started++
		name := fmt.Sprintf("w%d", started)
		t.Logf("kill %d: %s at %d committed, %s starts", k, workers[i].name, applied(), name)
		workers[i] = startWorker(t, bin, "worker "+name, env(name))
	}
	waitFor(t, 90*time.Second, nil, "every message committed and nothing pending", func() (bool, string) {
		n := applied()
		g := readGroup(t, c, stream)
		return n == total && g.pending == 0 && g.lag == 0, fmt.Sprintf("applied=%d/%d %s", n, total, g)
	})
	for _, w := range workers {
		// One started by the last kill may still be connecting when the
		// others have finished everything: a worker watches for SIGTERM
		// from before it logs "starting".
		waitFor(t, 30*time.Second, w, w.name+" started", func() (bool, string) {
			return slices.ContainsFunc(w.logLines(), func(rec map[string]any) bool { return rec["msg"] == "starting" }), ""
		})
		w.stop(30 * time.Second)
	}

	var twice []int
	for seq, n := range counts(t, c, effectKey(stream, "applied")) {
		if n != 1 {
			twice = append(twice, seq)
		}
	}
	if len(twice) > 0 {
		slices.Sort(twice)
		t.Errorf("%d messages' effects applied more than once, e.g. %v", len(twice), firstN(twice, 10))
	}
	if n := c.Get(ctx, effectKey(stream, "total")).Val(); n != strconv.Itoa(total) {
		t.Errorf("total %s, want %d", n, total)
	}
	if n := c.SCard(ctx, effectKey(stream, "ids")).Val(); n != total {
		t.Errorf("%d entry IDs committed, want %d", n, total)
	}
	if g := readGroup(t, c, stream); g.dead != 0 {
		t.Errorf("%d dead letters, want none", g.dead)
	}
	calls, _ := c.Get(ctx, stream+":calls").Int()
	t.Logf("%d handler runs for %d messages, each committed exactly once", calls, total)
}

package test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
)

// canary is the consumer testScaleDown adds to see a clean-up pass end:
// its name sorts after the workers'.
const canary = "zz-canary"

// goneAfter is the shortest WORKER_CONSUMER_GONE_AFTER the configuration
// allows; the clean-up half of testScaleDown waits that long.
const goneAfter = time.Minute

// testScaleDown scales five consumers down to one while they work: two are
// SIGKILLed mid-batch, two stopped with SIGTERM. What the killed ones held
// leaves their pending lists within min-idle + interval, claimed by the
// survivor, and every message is processed; the stopped ones leave the
// group at once. Then, past WORKER_CONSUMER_GONE_AFTER, the survivor's
// clean-up deletes the consumers that are gone and own nothing, and keeps a
// dead consumer that still owns entries (the survivor has no free slot to
// claim them) until they are claimed.
func testScaleDown(t *testing.T, bin string) {
	t.Parallel()
	const total, handlerMS = 200, 200
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	prod := newProducer(t, srv)
	stream := testredis.Prefix(t) + "events"
	env := func(name string, concurrency int) map[string]string {
		return faultEnv(srv.URL(), stream, name, map[string]string{
			"WORKER_CONCURRENCY":         strconv.Itoa(concurrency),
			"WORKER_CONSUMER_GONE_AFTER": goneAfter.String(),
			"WORKER_HANDLER_TIMEOUT":     "5m",
		})
	}
	publishRange(t, prod, stream, 1, total, always("ok"), always(handlerMS))
	const survivorSlots = 8
	w := map[string]*workerProc{"w1": startWorker(t, bin, "worker w1", env("w1", survivorSlots))}
	for _, name := range []string{"w2", "w3", "w4", "w5"} {
		w[name] = startWorker(t, bin, "worker "+name, env(name, 4))
	}
	processedKey := stream + ":processed"
	waitFor(t, 30*time.Second, nil, "every consumer holding entries mid-run", func() (bool, string) {
		state := ""
		ok := true
		for _, name := range []string{"w2", "w3", "w4", "w5"} {
			n := len(pendingOf(t, c, stream, name))
			ok = ok && n > 0
			state += fmt.Sprintf("%s holds %d; ", name, n)
		}
		done := c.HLen(ctx, processedKey).Val()
		return ok && done >= 20, state + fmt.Sprintf("processed=%d", done)
	})

	// Scale to one.
	w["w4"].signal(syscall.SIGTERM)
	w["w5"].signal(syscall.SIGTERM)
	w["w2"].kill()
	w["w3"].kill()
	killed := time.Now()
	held := len(pendingOf(t, c, stream, "w2")) + len(pendingOf(t, c, stream, "w3"))
	waitFor(t, 30*time.Second, w["w1"], "the killed consumers' pending lists to empty", func() (bool, string) {
		n2, n3 := len(pendingOf(t, c, stream, "w2")), len(pendingOf(t, c, stream, "w3"))
		return n2 == 0 && n3 == 0, fmt.Sprintf("w2 holds %d, w3 holds %d", n2, n3)
	})
	drained := time.Since(killed)
	for _, name := range []string{"w4", "w5"} {
		if code := w[name].wait(30 * time.Second); code != 0 {
			t.Fatalf("%s exited with code %d after SIGTERM, want 0", name, code)
		}
		w[name].requireCleanLog()
	}
	bound := faultMinIdle + faultInterval
	t.Logf("the %d entries the killed consumers held left their pending lists %s after the kill (bound: min-idle + interval = %s)",
		held, drained.Round(time.Millisecond), bound)
	if limit := bound + 3*time.Second; drained > limit {
		t.Errorf("entries stayed in dead consumers' pending lists %s, want about %s (at most %s)", drained, bound, limit)
	}
	cs := consumers(t, c, stream)
	for _, name := range []string{"w4", "w5"} {
		if _, ok := cs[name]; ok {
			t.Errorf("%s stopped with nothing pending but is still in the group", name)
		}
	}
	waitFor(t, 30*time.Second, w["w1"], "every message processed by the survivor", func() (bool, string) {
		done := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return done == total && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d/%d %s", done, total, g)
	})

	// A consumer that dies owning entries the survivor cannot take: every
	// survivor slot runs a hold handler (its lease kept), so w6's entries
	// stay w6's.
	publishRange(t, prod, stream, total+1, total+survivorSlots, always("hold"), always(0))
	waitFor(t, 30*time.Second, w["w1"], "the survivor's slots all busy", func() (bool, string) {
		n := len(pendingOf(t, c, stream, "w1"))
		return n == survivorSlots, fmt.Sprintf("w1 holds %d", n)
	})
	const w6Held = 3
	publishRange(t, prod, stream, total+survivorSlots+1, total+survivorSlots+w6Held, always("hold"), always(0))
	w["w6"] = startWorker(t, bin, "worker w6", env("w6", 4))
	waitFor(t, 30*time.Second, w["w6"], "w6 to hold entries", func() (bool, string) {
		n := len(pendingOf(t, c, stream, "w6"))
		return n == w6Held, fmt.Sprintf("w6 holds %d, w1 holds %d", n, len(pendingOf(t, c, stream, "w1")))
	})
	w["w6"].kill()
	// The canary, a consumer that never owned anything, is created after
	// w6 died: when the clean-up deletes it, it has looked at w6 too, which
	// had been gone longer. A pass takes the consumers in the order of their
	// names, one script call each, so the canary's name sorts last: once it
	// is deleted, the pass has been through w2, w3 and w6 as well.
	if err := c.XGroupCreateConsumer(ctx, stream, group, canary).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, goneAfter+60*time.Second, w["w1"], "the clean-up to delete the canary", func() (bool, string) {
		cs := consumers(t, c, stream)
		_, ok := cs[canary]
		return !ok, fmt.Sprintf("consumers %v", slices.Sorted(maps.Keys(cs)))
	})
	cs = consumers(t, c, stream)
	for _, name := range []string{"w2", "w3"} {
		if _, ok := cs[name]; ok {
			t.Errorf("%s, gone past %s with nothing pending, is still in the group", name, goneAfter)
		}
	}
	if x, ok := cs["w6"]; !ok || x.Pending != w6Held || x.Idle < goneAfter {
		t.Fatalf("w6 (gone, owning %d entries) after the clean-up: present=%v %+v; want it kept, idle past %s", w6Held, ok, x, goneAfter)
	}
	t.Logf("after the clean-up: consumers %v; w6 idle %s, owning %d", slices.Sorted(maps.Keys(cs)), cs["w6"].Idle.Round(time.Second), cs["w6"].Pending)

	// Released, the survivor claims and finishes what w6 held.
	if err := c.Set(ctx, stream+":release", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	all := total + survivorSlots + w6Held
	waitFor(t, 30*time.Second, w["w1"], "everything processed", func() (bool, string) {
		done := c.HLen(ctx, processedKey).Val()
		g := readGroup(t, c, stream)
		return done == int64(all) && g.pending == 0 && g.lag == 0, fmt.Sprintf("processed=%d/%d %s", done, all, g)
	})
	w["w1"].stop(30 * time.Second)
	w["w1"].requireCleanLog()
	if m := missing(counts(t, c, processedKey), all); len(m) > 0 {
		t.Errorf("never processed: %v", m)
	}
}

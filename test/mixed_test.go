package test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
	"github.com/streamworker/streamworker/worker"
)

// outcome is what a test message is built to meet in the custom worker.
type outcome int

const (
	succeeds    outcome = iota // type ok
	failsTwice                 // type flaky: fails attempts 1 and 2, succeeds on 3
	permanent                  // type perm: worker.Permanent
	panics                     // type panic: panics on every attempt
	noType                     // no type field at all
	unknownType                // a type no handler is registered for
)

var outcomeNames = map[outcome]string{
	succeeds: "succeeds", failsTwice: "failsTwice", permanent: "permanent",
	panics: "panics", noType: "noType", unknownType: "unknownType",
}

func (o outcome) String() string { return outcomeNames[o] }

// typeOf is the type field a message of the outcome carries.
func (o outcome) typeOf() string {
	return map[outcome]string{
		succeeds: "ok", failsTwice: "flaky", permanent: "perm", panics: "panic", unknownType: "no.such.type",
	}[o]
}

func (o outcome) succeeds() bool { return o == succeeds || o == failsTwice }

// outcomeOf spreads the outcomes over the seqs: 55% succeed at once, 20%
// succeed on the third attempt, 10% are refused, 5% each panic, lack a type
// or carry an unknown one.
func outcomeOf(seq int) outcome {
	switch r := seq % 20; {
	case r < 10 || r == 19:
		return succeeds
	case r < 14:
		return failsTwice
	case r < 16:
		return permanent
	case r == 16:
		return panics
	case r == 17:
		return noType
	default:
		return unknownType
	}
}

// publishMixed publishes seqs from..to, typed events through the producer and
// the untyped ones (which the producer refuses) with a raw XADD. It records
// each seq's entry ID in ids.
func publishMixed(t *testing.T, prod *producer.Producer, c *redis.Client, stream string, from, to int, ids map[int]string) {
	t.Helper()
	ctx := context.Background()
	var events []producer.Event
	var seqs []int
	flush := func() {
		if len(events) == 0 {
			return
		}
		got, err := prod.PublishBatch(ctx, stream, events)
		if err != nil {
			t.Fatalf("publishing: %v", err)
		}
		for i, id := range got {
			ids[seqs[i]] = id
		}
		events, seqs = events[:0], seqs[:0]
	}
	untyped := map[int]*redis.StringCmd{}
	pipe := c.Pipeline()
	for seq := from; seq <= to; seq++ {
		o := outcomeOf(seq)
		if o == noType {
			untyped[seq] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{
				wire.FieldData, string(payload(seq, 0)), wire.FieldID, "evt-" + strconv.Itoa(seq), "tenant", "acme",
			}})
			continue
		}
		events = append(events, producer.Event{
			Type: o.typeOf(), Data: payload(seq, 0), ID: "evt-" + strconv.Itoa(seq),
			Metadata: map[string]string{"tenant": "acme"},
		})
		seqs = append(seqs, seq)
		if len(events) == 500 {
			flush()
		}
	}
	flush()
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("adding untyped entries: %v", err)
	}
	for seq, cmd := range untyped {
		ids[seq] = cmd.Val()
	}
}

// testMixedOutcomes feeds a few thousand messages of every outcome to one
// worker process and accounts for each: successes handled and acknowledged,
// failures dead-lettered once with the reason, nothing pending or delayed.
//
// inPlace runs it at the defaults, where its retries (due within 20ms)
// wait in place, their entries pending; without, every retry goes through
// the delayed set as a copy, a new entry of the stream
// (WORKER_RETRY_IN_PLACE_MAX=0).
func testMixedOutcomes(t *testing.T, bin string, inPlace bool) {
	t.Parallel()
	const total, maxAttempts = 3000, 3
	ctx := context.Background()
	srv := testredis.Start(t)
	c := srv.Client(t)
	prod := newProducer(t, srv)
	stream := testredis.Prefix(t) + "events"
	testStart := time.Now()

	if _, err := prod.Publish(ctx, stream, producer.Event{Data: payload(1, 0)}); !errors.Is(err, producer.ErrNoType) {
		t.Fatalf("Publish without a type: err = %v, want ErrNoType", err)
	}

	// Half before the worker (and its group) exist: the group starts at the
	// beginning of the stream. Half while it runs.
	ids := make(map[int]string, total)
	publishMixed(t, prod, c, stream, 1, total/2, ids)
	addr := freeAddr(t)
	env := map[string]string{
		"WORKER_CONCURRENCY":  "32",
		"WORKER_MAX_ATTEMPTS": strconv.Itoa(maxAttempts),
		"WORKER_HTTP_ADDR":    addr,
	}
	if !inPlace {
		env["WORKER_RETRY_IN_PLACE_MAX"] = "0"
	}
	w := startWorker(t, bin, "worker", workerEnv(srv.URL(), stream, "w1", env))
	waitFor(t, 30*time.Second, w, "/readyz to answer 200", func() (bool, string) {
		code, body, err := httpGet("http://" + addr + "/readyz")
		return code == 200, fmt.Sprintf("%d %q %v", code, body, err)
	})
	publishMixed(t, prod, c, stream, total/2+1, total, ids)

	var wantOK []int
	wantDead := map[int]outcome{}
	perOutcome := map[outcome]int{}
	for seq := 1; seq <= total; seq++ {
		o := outcomeOf(seq)
		perOutcome[o]++
		if o.succeeds() {
			wantOK = append(wantOK, seq)
		} else {
			wantDead[seq] = o
		}
	}
	processedKey := stream + ":processed"
	waitFor(t, 40*time.Second, w, "every message accounted for", func() (bool, string) {
		g := readGroup(t, c, stream)
		done := c.HLen(ctx, processedKey).Val()
		return done >= int64(len(wantOK)) && g.dead >= int64(len(wantDead)) && g.pending == 0 && g.lag == 0 && g.delayed == 0,
			fmt.Sprintf("processed=%d/%d dead=%d/%d %s", done, len(wantOK), g.dead, len(wantDead), g)
	})
	t.Logf("%d messages (%v) accounted for %s after the first was published",
		total, perOutcome, time.Since(testStart).Round(time.Millisecond))

	// The runtime's own account, as Prometheus scrapes it. Acks are counted
	// once their batch is written, a moment after XPENDING empties.
	wantRetried := (maxAttempts-1)*perOutcome[panics] + 2*perOutcome[failsTwice]
	var totals map[string]float64
	waitFor(t, 10*time.Second, w, "/metrics to count every outcome", func() (bool, string) {
		code, body, err := httpGet("http://" + addr + "/metrics")
		totals = outcomeTotals(body)
		return code == 200 && totals["acked"] >= float64(len(wantOK)) && totals["dead"] >= float64(len(wantDead)),
			fmt.Sprintf("%d %v %v", code, totals, err)
	})

	took := w.stop(30 * time.Second)
	t.Logf("clean exit %s after SIGTERM", took.Round(time.Millisecond))
	w.requireCleanLog()

	if totals["dead"] != float64(len(wantDead)) || totals["retried"] != float64(wantRetried) {
		t.Errorf("streamworker_messages_total: dead=%v retried=%v, want dead=%d retried=%d (all: %v)",
			totals["dead"], totals["retried"], len(wantDead), wantRetried, totals)
	}

	t.Run("SucceedingProcessedAndAcked", func(t *testing.T) {
		processed := counts(t, c, processedKey)
		var missing []int
		dups, dupMsgs := 0, 0
		for _, seq := range wantOK {
			switch n := processed[seq]; {
			case n == 0:
				missing = append(missing, seq)
			case n > 1:
				dups += n - 1
				dupMsgs++
			}
		}
		if len(missing) > 0 {
			t.Errorf("%d succeeding messages never processed, e.g. seqs %v", len(missing), missing[:min(10, len(missing))])
		}
		for seq, o := range wantDead {
			if processed[seq] > 0 {
				t.Errorf("seq %d (%s) recorded as processed", seq, o)
			}
		}
		t.Logf("duplicates: %d extra handlings over %d of %d succeeding messages", dups, dupMsgs, len(wantOK))
		if totals["acked"] != float64(len(wantOK)+dups) {
			t.Errorf("streamworker_messages_total{outcome=acked} = %v, want %d", totals["acked"], len(wantOK)+dups)
		}

		tries := counts(t, c, stream+":tries")
		for seq := 1; seq <= total; seq++ {
			want := map[outcome]int{failsTwice: 3, panics: maxAttempts}[outcomeOf(seq)]
			if tries[seq] != want {
				t.Errorf("seq %d (%s) ran %d times, want %d", seq, outcomeOf(seq), tries[seq], want)
			}
		}
		// Every handler call that reached the Mux, through its middleware:
		// missing and unknown types are refused before it.
		wantCalls := perOutcome[succeeds] + 3*perOutcome[failsTwice] + perOutcome[permanent] + maxAttempts*perOutcome[panics] + dups
		if calls, _ := c.Get(ctx, stream+":calls").Int(); calls != wantCalls {
			t.Errorf("Mux middleware saw %d calls, want %d", calls, wantCalls)
		}
	})

	t.Run("FailingDeadLetteredOnce", func(t *testing.T) {
		entries, err := c.XRange(ctx, wire.DeadLetterKey(stream), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]int{}
		retriedOrigins := 0
		for _, e := range entries {
			field := func(k string) (string, bool) {
				v, ok := e.Values[k]
				s, _ := v.(string)
				return s, ok
			}
			data, _ := field(wire.FieldData)
			seq := seqOf(t, data)
			seen[seq]++
			o, ok := wantDead[seq]
			if !ok {
				t.Errorf("dead letter %s is seq %d (%s), which should have succeeded: %v", e.ID, seq, outcomeOf(seq), e.Values)
				continue
			}
			if data != string(payload(seq, 0)) {
				t.Errorf("seq %d: dead letter data %q, want the original %q", seq, data, payload(seq, 0))
			}
			typ, hasType := field(wire.FieldType)
			if o == noType && hasType {
				t.Errorf("seq %d: dead letter of an untyped entry has type %q", seq, typ)
			}
			if o != noType && typ != o.typeOf() {
				t.Errorf("seq %d: dead letter type %q, want %q", seq, typ, o.typeOf())
			}
			if id, _ := field(wire.FieldID); id != "evt-"+strconv.Itoa(seq) {
				t.Errorf("seq %d: dead letter lost the id field: %q", seq, id)
			}
			if tenant, _ := field("tenant"); tenant != "acme" {
				t.Errorf("seq %d: dead letter lost the tenant metadata: %q", seq, tenant)
			}

			if g, _ := field(wire.FieldGroup); g != group {
				t.Errorf("seq %d: dead letter group %q, want %q", seq, g, group)
			}
			if cons, _ := field(wire.FieldConsumer); cons != "w1" {
				t.Errorf("seq %d: dead letter consumer %q, want w1", seq, cons)
			}

			wantAttempts, wantErr := 1, ""
			switch o {
			case permanent:
				wantErr = fmt.Sprintf("permanent: refusing seq %d", seq)
			case panics:
				wantAttempts, wantErr = maxAttempts, fmt.Sprintf("panic: boom seq %d", seq)
			case noType:
				wantErr = worker.ErrNoType.Error()
			case unknownType:
				wantErr = fmt.Sprintf("%s %q", worker.ErrNoHandler, o.typeOf())
			}
			if got, _ := field(wire.FieldError); !strings.Contains(got, wantErr) {
				t.Errorf("seq %d (%s): error %q, want it to contain %q", seq, o, tail(got, 200), wantErr)
			}
			if got, _ := field(wire.FieldAttempts); got != strconv.Itoa(wantAttempts) {
				t.Errorf("seq %d (%s): attempts %q, want %d", seq, o, got, wantAttempts)
			}
			failedAt, _ := field(wire.FieldFailedAt)
			if at, err := time.Parse(time.RFC3339Nano, failedAt); err != nil || at.Before(testStart.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
				t.Errorf("seq %d: failed_at %q is not a time during the test (%v)", seq, failedAt, err)
			}
			origin, _ := field(wire.FieldOriginID)
			if wantAttempts == 1 {
				if origin != ids[seq] {
					t.Errorf("seq %d: origin_id %q, want the published entry %s", seq, origin, ids[seq])
				}
				continue
			}
			// A retried message failed last as a retry copy (through the
			// delayed set); origin_id names that copy, an entry of the stream
			// with the same data. Retried in place, it is the entry published.
			if origin != ids[seq] {
				retriedOrigins++
			}
			copies, err := c.XRange(ctx, stream, origin, origin).Result()
			if err != nil || len(copies) != 1 || copies[0].Values[wire.FieldData] != data {
				t.Errorf("seq %d: origin_id %q is not an entry of %s with the same data: %v %v", seq, origin, stream, copies, err)
			}
		}
		for seq, o := range wantDead {
			if seen[seq] != 1 {
				t.Errorf("seq %d (%s) is in the dead-letter stream %d times, want once", seq, o, seen[seq])
			}
		}
		if inPlace && retriedOrigins > 0 {
			t.Errorf("%d messages dead-lettered after retries in place name a copy as origin_id, want the entry published", retriedOrigins)
		} else if retriedOrigins > 0 {
			t.Logf("note: for %d messages dead-lettered after retries, origin_id names the last retry copy, not the entry the producer added", retriedOrigins)
		}
	})

	t.Run("NothingPendingOrDelayed", func(t *testing.T) {
		p, err := c.XPending(ctx, stream, group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if p.Count != 0 {
			t.Errorf("XPENDING %s %s: %d entries pending, want none (%v)", stream, group, p.Count, p.Consumers)
		}
		g := readGroup(t, c, stream)
		if g.delayed != 0 {
			t.Errorf("%s holds %d entries, want none", wire.DelayedKey(stream), g.delayed)
		}
		n, err := c.XLen(ctx, stream).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Every entry, retry copies included, was delivered to the group.
		if g.lag != 0 || g.entriesRead != n {
			t.Errorf("group read %d of %d entries (lag %d), want all", g.entriesRead, n, g.lag)
		}
		copies := wantRetried // each retry a new entry
		if inPlace {
			copies = 0 // each retry the entry that failed
		}
		if want := int64(total + copies); n != want {
			t.Errorf("stream holds %d entries, want %d published plus %d retry copies", n, total, copies)
		}
	})
}

// outcomeTotals sums streamworker_messages_total by outcome from a Prometheus
// text exposition.
func outcomeTotals(body string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, "streamworker_messages_total{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `outcome="`)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// partitionedConfig is testConfig with its stream split into n partitions,
// read as consumer, with a short partition lease so that tests see
// ownership change quickly.
func partitionedConfig(t *testing.T, srv *testredis.Server, n int, consumer string) config.Config {
	t.Helper()
	cfg := testConfig(t, srv)
	cfg.Partitions = n
	cfg.PartitionLease = 1500 * time.Millisecond
	cfg.Consumer = consumer
	cfg.Concurrency = 16
	cfg.LogLevel = "info"
	return cfg
}

// publishKeyed adds seq of key to its partition of stream, as a producer
// routing by key does.
func publishKeyed(t *testing.T, c redis.Cmdable, stream string, partitions int, typ, key string, seq int) string {
	t.Helper()
	id, err := c.XAdd(context.Background(), &redis.XAddArgs{
		Stream: wire.PartitionStream(stream, wire.PartitionFor(key, partitions)),
		Values: []string{wire.FieldType, typ, wire.FieldKey, key, wire.FieldData, strconv.Itoa(seq)},
	}).Result()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	return id
}

// keyLog records, per key, the seqs its handlers ran in the order they
// started, and whether two messages of one key ever ran at once.
type keyLog struct {
	mu       sync.Mutex
	seqs     map[string][]int
	attempts map[string][]int // per key, the attempt of each run
	by       map[string][]string
	running  map[string]bool
	overlaps []string
	now, top int // messages running now, and most at once
}

func newKeyLog() *keyLog {
	return &keyLog{seqs: map[string][]int{}, attempts: map[string][]int{}, by: map[string][]string{}, running: map[string]bool{}}
}

func (l *keyLog) begin(key string, seq, attempt int, consumer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[key] {
		l.overlaps = append(l.overlaps, fmt.Sprintf("%s seq %d started while another message of the key ran", key, seq))
	}
	l.running[key] = true
	l.seqs[key] = append(l.seqs[key], seq)
	l.attempts[key] = append(l.attempts[key], attempt)
	l.by[key] = append(l.by[key], consumer)
	l.now++
	l.top = max(l.top, l.now)
}

func (l *keyLog) end(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running[key] = false
	l.now--
}

func (l *keyLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.seqs {
		n += len(s)
	}
	return n
}

// check requires every key's seqs to be exactly 1..perKey, in order, and
// no two messages of a key to have run at once.
func (l *keyLog) check(t *testing.T, keys []string, perKey int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	want := make([]int, perKey)
	for i := range want {
		want[i] = i + 1
	}
	bad := 0
	for _, k := range keys {
		if diff := cmp.Diff(want, l.seqs[k]); diff != "" && bad < 5 {
			bad++
			t.Errorf("key %s: seqs out of order or not exactly once (-want +got):\n%s", k, diff)
		}
	}
	if len(l.overlaps) > 0 {
		t.Errorf("%d times two messages of one key ran at once, e.g. %v", len(l.overlaps), l.overlaps[:min(3, len(l.overlaps))])
	}
}

// keyedMux handles type "keyed" with a short random pause, logging to l.
func keyedMux(l *keyLog, consumer string) *Mux {
	mux := NewMux()
	mux.HandleFunc("keyed", func(ctx context.Context, m *Message) error {
		key := m.Key
		seq, _ := strconv.Atoi(string(m.Data))
		l.begin(key, seq, m.Attempt, consumer)
		defer l.end(key)
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond) // the handler's work
		return nil
	})
	return mux
}

func keyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "k" + strconv.Itoa(i)
	}
	return out
}

// outcomeSum sums streamworker_messages_total of typ and outcome over every
// partition.
func outcomeSum(h *harness, typ, outcome string) int { return Outcomes(h.reg)[typ][outcome] }

// owners reads the owner of every partition of stream.
func owners(t *testing.T, c *redis.Client, stream, group string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		v, err := c.Get(context.Background(), wire.PartitionOwnerKey(wire.PartitionStream(stream, i), group)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		out[i] = v
	}
	return out
}

func count(list []string, v string) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

// pendingIn sums the group's pending entries over the partitions.
func pendingIn(t *testing.T, c *redis.Client, stream, group string, n int) int64 {
	t.Helper()
	var sum int64
	for i := range n {
		p, err := c.XPending(context.Background(), wire.PartitionStream(stream, i), group).Result()
		if err != nil {
			t.Fatal(err)
		}
		sum += p.Count
	}
	return sum
}

func TestPartitionedKeysRunInOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 4, "c1")
	c := srv.Client(t)
	stream := cfg.Streams[0]
	const perKey = 25
	keys := keyNames(40)
	// A backlog first, so that reads bring many messages of one key at once.
	for seq := 1; seq <= perKey-5; seq++ {
		for _, k := range keys {
			publishKeyed(t, c, stream, cfg.Partitions, "keyed", k, seq)
		}
	}
	var unkeyed counter
	l := newKeyLog()
	mux := keyedMux(l, cfg.Consumer)
	mux.HandleFunc("plain", func(ctx context.Context, m *Message) error {
		unkeyed.inc(string(m.Data))
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	for i := range 20 {
		if _, err := c.XAdd(context.Background(), &redis.XAddArgs{
			Stream: wire.PartitionStream(stream, i%cfg.Partitions), Values: []string{wire.FieldType, "plain", wire.FieldData, strconv.Itoa(i)},
		}).Result(); err != nil {
			t.Fatal(err)
		}
	}
	for seq := perKey - 4; seq <= perKey; seq++ {
		for _, k := range keys {
			publishKeyed(t, c, stream, cfg.Partitions, "keyed", k, seq)
		}
	}
	total := perKey * len(keys)
	eventually(t, "every message handled", func() bool { return l.total() >= total && unkeyed.total() >= 20 })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
	l.check(t, keys, perKey)
	if l.top < 2 {
		t.Errorf("at most %d message ran at once: different keys must run in parallel", l.top)
	}
	if got := owners(t, c, stream, cfg.Group, cfg.Partitions); count(got, "c1") != cfg.Partitions {
		t.Errorf("owners = %v, want c1 for every partition", got)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := owners(t, c, stream, cfg.Group, cfg.Partitions); count(got, "") != cfg.Partitions {
		t.Errorf("owners after shutdown = %v, want every partition given up", got)
	}
}

// TestPartitionsRebalanceBetweenRuntimes runs two consumers of one group in
// one process over 16 partitions: the second takes half of them as it
// joins, the first takes them back when the second stops, and through both
// changes every message runs once, in its key's order.
func TestPartitionsRebalanceBetweenRuntimes(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfgA := partitionedConfig(t, srv, 16, "a")
	cfgB := cfgA
	cfgB.Consumer = "b"
	c := srv.Client(t)
	stream := cfgA.Streams[0]
	keys := keyNames(64)
	l := newKeyLog()
	seq := 0
	publishRound := func() {
		seq++
		for _, k := range keys {
			publishKeyed(t, c, stream, 16, "keyed", k, seq)
		}
	}
	ownedBy := func(want map[string]int) func() bool {
		return func() bool {
			got := owners(t, c, stream, cfgA.Group, 16)
			for who, n := range want {
				if count(got, who) != n {
					return false
				}
			}
			return true
		}
	}

	a := startWorker(t, srv, cfgA, keyedMux(l, "a"))
	eventually(t, "a owns all 16 partitions", ownedBy(map[string]int{"a": 16}))
	for range 10 {
		publishRound()
	}
	b := startWorker(t, srv, cfgB, keyedMux(l, "b"))
	for range 10 { // while the partitions change hands
		publishRound()
	}
	eventually(t, "a and b own 8 partitions each", ownedBy(map[string]int{"a": 8, "b": 8}))
	for range 10 {
		publishRound()
	}
	eventually(t, "30 rounds handled", func() bool { return l.total() >= 30*len(keys) })
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a owns all 16 partitions again", ownedBy(map[string]int{"a": 16}))
	for range 10 {
		publishRound()
	}
	eventually(t, "40 rounds handled", func() bool { return l.total() >= 40*len(keys) })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfgA.Group, 16) == 0 })
	l.check(t, keys, 40)
	l.mu.Lock()
	var byB int
	for _, k := range keys {
		byB += count(l.by[k], "b")
	}
	l.mu.Unlock()
	if byB == 0 {
		t.Error("b handled nothing while it owned partitions")
	}
	if members := c.ZRange(context.Background(), wire.PartitionMembersKey(stream, cfgA.Group), 0, -1).Val(); !slices.Equal(members, []string{"a"}) {
		t.Errorf("members = %v, want [a] after b left", members)
	}
	_ = a
}

// TestPartitionTakeOverRunsPendingFirst: a consumer that took partitions
// from one that left (its owner keys still running out) runs the entries
// left pending there first, in ID order, before anything new; a suspect
// (delivered twice without finishing) among them runs on its own turn.
func TestPartitionTakeOverRunsPendingFirst(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 4, "heir")
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	const perKey = 10
	keys := keyNames(12)
	for _, p := range wire.PartitionStreams(stream, cfg.Partitions) {
		if err := c.XGroupCreateMkStream(ctx, p, cfg.Group, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for s := 1; s <= perKey; s++ {
		for _, k := range keys {
			publishKeyed(t, c, stream, cfg.Partitions, "keyed", k, s)
		}
	}
	// The departed consumer read the first entries of each partition and
	// never finished them; one it was given twice.
	left := map[string]bool{}
	var twice string
	for _, p := range wire.PartitionStreams(stream, cfg.Partitions) {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: cfg.Group, Consumer: "gone", Streams: []string{p, ">"}, Count: 5}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res[0].Messages {
			left[p+"/"+e.ID] = true
		}
		if twice == "" {
			twice = p + "/" + res[0].Messages[2].ID
			if err := c.XClaim(ctx, &redis.XClaimArgs{Stream: p, Group: cfg.Group, Consumer: "gone", Messages: []string{res[0].Messages[2].ID}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Set(ctx, wire.PartitionOwnerKey(p, cfg.Group), "gone", time.Second).Err(); err != nil {
			t.Fatal(err)
		}
	}

	l := newKeyLog()
	var mu sync.Mutex
	attempts := map[string]int{}
	mux := NewMux()
	mux.HandleFunc("keyed", func(ctx context.Context, m *Message) error {
		key := m.Key
		seq, _ := strconv.Atoi(string(m.Data))
		l.begin(key, seq, m.Attempt, "heir")
		defer l.end(key)
		mu.Lock()
		attempts[m.Stream+"/"+m.ID] = m.Attempt
		mu.Unlock()
		return nil
	})
	startWorker(t, srv, cfg, mux)
	eventually(t, "every message handled", func() bool { return l.total() >= perKey*len(keys) })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
	l.check(t, keys, perKey)
	mu.Lock()
	defer mu.Unlock()
	for id, a := range attempts {
		want := 1
		switch {
		case id == twice:
			want = 3
		case left[id]:
			want = 2
		}
		if a != want {
			t.Errorf("entry %s ran as attempt %d, want %d (each unfinished delivery is an attempt)", id, a, want)
		}
	}
}

// TestPartitionRetryInPlaceKeepsKeyOrder: a keyed message that fails is
// retried where it is, its key's later messages waiting behind it; it is
// dead-lettered to its partition's dead-letter stream when its attempts run
// out or its error is permanent, and the key goes on. A message without a
// key is retried the usual way, through its partition's delayed set.
func TestPartitionRetryInPlaceKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.MaxAttempts = 3
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	var mu sync.Mutex
	var runs []string // key:seq@attempt, in the order they ran
	var plainTries, delays int
	mux := NewMux()
	mux.HandleFunc("keyed", func(ctx context.Context, m *Message) error {
		key, seq := m.Key, string(m.Data)
		mu.Lock()
		runs = append(runs, fmt.Sprintf("%s:%s@%d", key, seq, m.Attempt))
		mu.Unlock()
		switch key + ":" + seq {
		case "k:2":
			if m.Attempt < 3 {
				return errors.New("not yet")
			}
		case "k:4":
			return Permanent(errors.New("refused"))
		case "j:1":
			return errors.New("never")
		case "d:1":
			mu.Lock()
			delays++
			again := delays == 1
			mu.Unlock()
			if again {
				return Delay(20*time.Millisecond, errors.New("wait a moment"))
			}
		}
		return nil
	})
	mux.HandleFunc("plain", func(ctx context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		plainTries++
		if plainTries < 2 {
			return errors.New("plain fails once")
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux)
	for seq := 1; seq <= 5; seq++ {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", "k", seq)
	}
	for seq := 1; seq <= 3; seq++ {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", "j", seq)
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", "d", seq)
	}
	plainStream := wire.PartitionStream(stream, 0)
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: plainStream, Values: []string{wire.FieldType, "plain", wire.FieldData, "p"}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every message settled", func() bool {
		return outcomeSum(h, "keyed", OutcomeAcked) == 9 && outcomeSum(h, "keyed", OutcomeDead) == 2 && outcomeSum(h, "plain", OutcomeAcked) == 1
	})
	eventually(t, "nothing pending", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })

	mu.Lock()
	byKey := map[string][]string{}
	for _, r := range runs {
		k, _, _ := strings.Cut(r, ":")
		byKey[k] = append(byKey[k], r)
	}
	mu.Unlock()
	want := map[string][]string{
		"k": {"k:1@1", "k:2@1", "k:2@2", "k:2@3", "k:3@1", "k:4@1", "k:5@1"},
		"j": {"j:1@1", "j:1@2", "j:1@3", "j:2@1", "j:3@1"},
		"d": {"d:1@1", "d:1@1", "d:2@1", "d:3@1"},
	}
	if diff := cmp.Diff(want, byKey); diff != "" {
		t.Errorf("runs per key (-want +got):\n%s", diff)
	}
	// Dead letters land in the partition's own dead-letter stream.
	for key, seq := range map[string]string{"k": "4", "j": "1"} {
		p := wire.PartitionStream(stream, wire.PartitionFor(key, cfg.Partitions))
		dead := c.XRange(ctx, wire.DeadLetterKey(p), "-", "+").Val()
		found := false
		for _, d := range dead {
			if d.Values[wire.FieldKey] == key && d.Values[wire.FieldData] == seq {
				found = true
			}
		}
		if !found {
			t.Errorf("%s:%s is not in %s: %v", key, seq, wire.DeadLetterKey(p), dead)
		}
	}
	if got := outcomeSum(h, "keyed", OutcomeRetried); got != 4 {
		t.Errorf("keyed retried = %d, want 4 (k:2 twice, j:1 twice)", got)
	}
	if got := outcomeSum(h, "plain", OutcomeRetried); got != 1 {
		t.Errorf("plain retried = %d, want 1 (through the delayed set)", got)
	}
	for _, p := range wire.PartitionStreams(stream, cfg.Partitions) {
		if n := c.ZCard(ctx, wire.DelayedKey(p)).Val(); n != 0 {
			t.Errorf("%s holds %d, want 0", wire.DelayedKey(p), n)
		}
	}
	// Only the plain message went through a delayed set: keyed retries add
	// no entry to the stream.
	if n := c.XLen(ctx, plainStream).Val(); n < 2 {
		t.Errorf("%s has %d entries, want the plain message and its retried copy", plainStream, n)
	}
}

// TestPartitionedOnClusterClient runs partitioned streams through a cluster
// client against a one-node cluster, which refuses any command whose keys
// span slots: the scripts, pipelined acknowledgements, retries, dead
// letters and promotions all stay within one slot each.
func TestPartitionedOnClusterClient(t *testing.T) {
	t.Parallel()
	srv, cc := testredis.OneNodeCluster(t)
	cfg := partitionedConfig(t, srv, 8, "c1")
	c := srv.Client(t)
	stream := cfg.Streams[0]
	var mu sync.Mutex
	tries := map[string]int{}
	mux := NewMux()
	mux.HandleFunc("keyed", func(ctx context.Context, m *Message) error {
		mu.Lock()
		tries[m.ID]++
		n := tries[m.ID]
		mu.Unlock()
		switch data := string(m.Data); {
		case data == "perm":
			return Permanent(errors.New("refused"))
		case data == "flaky" && n < 2:
			return errors.New("once")
		}
		return nil
	})
	h := startWorker(t, srv, cfg, mux, WithRedis(cc))
	for i := range 200 {
		data := "ok"
		switch i % 20 {
		case 3:
			data = "flaky"
		case 7:
			data = "perm"
		}
		vals := []string{wire.FieldType, "keyed", wire.FieldData, data}
		key := "k" + strconv.Itoa(i%13)
		if i%5 == 0 {
			key = "" // no key: the usual retry path
		}
		if key != "" {
			vals = append(vals, wire.FieldKey, key)
		}
		part := i % cfg.Partitions
		if key != "" {
			part = wire.PartitionFor(key, cfg.Partitions)
		}
		if err := cc.XAdd(context.Background(), &redis.XAddArgs{Stream: wire.PartitionStream(stream, part), Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every message settled", func() bool {
		return outcomeSum(h, "keyed", OutcomeAcked) == 190 && outcomeSum(h, "keyed", OutcomeDead) == 10
	})
	eventually(t, "nothing pending", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
}

// TestPartitionLostToAnotherConsumer: a consumer that finds its partition
// owned by another (its lease ran out during a stall, say) stops reading it
// at once, and takes it back, running what arrived meanwhile, once the
// other has given it up.
func TestPartitionLostToAnotherConsumer(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	l := newKeyLog()
	logs := &syncBuffer{}
	startWorker(t, srv, cfg, keyedMux(l, "c1"), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	eventually(t, "c1 owns both partitions", func() bool {
		return count(owners(t, c, stream, cfg.Group, 2), "c1") == 2
	})
	key := "k0"
	part := wire.PartitionStream(stream, wire.PartitionFor(key, 2))
	publishKeyed(t, c, stream, 2, "keyed", key, 1)
	eventually(t, "seq 1 handled", func() bool { return l.total() == 1 })

	if err := c.Set(ctx, wire.PartitionOwnerKey(part, cfg.Group), "thief", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// Its fetching stops, and what it read settles. (A real owner takes a
	// partition only once its lease has run out, a renewal period after the
	// fetching stopped by itself, so no read of the old owner is in flight.)
	eventually(t, "c1 to give the partition up", func() bool {
		return strings.Contains(logs.String(), "partition lost") && strings.Contains(logs.String(), "partition given up")
	})
	publishKeyed(t, c, stream, 2, "keyed", key, 2)
	// c1 reads the partition no more: seq 2 waits, undelivered, through
	// several renewal periods (a bounded look for something that must not
	// happen).
	for deadline := time.Now().Add(4 * cfg.PartitionLease / 3); time.Now().Before(deadline); {
		if l.total() != 1 {
			t.Fatalf("c1 handled %d messages after losing the partition", l.total()-1)
		}
		time.Sleep(10 * time.Millisecond) // observing an absence, with a deadline
	}
	if err := c.Del(ctx, wire.PartitionOwnerKey(part, cfg.Group)).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c1 takes the partition back and handles seq 2", func() bool { return l.total() == 2 })
	l.check(t, []string{key}, 2)
}

// lostReply makes the next read that delivers entries fail as if its reply
// were lost on the way: Redis delivered them, so they are pending for this
// consumer, but the runtime never sees them (a primary killed after
// replicating the read, a connection cut mid-reply).
type lostReply struct {
	armed atomic.Bool
	lost  atomic.Int32 // entries delivered by the lost read
}

func (l *lostReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if n := readDelivered(cmd); err == nil && n > 0 && l.armed.CompareAndSwap(true, false) {
			l.lost.Store(int32(n))
			err = errors.New("read tcp: connection reset by peer (test: reply lost)")
			cmd.SetErr(err)
		}
		return err
	}
}

func (l *lostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A read whose reply is lost after Redis delivered its entries leaves them
// pending for this consumer, unseen. On an ordered partition the fetcher
// must run them before anything read after them: reading on, the key's
// later messages would run first and the lost ones only when reclaimed.
func TestLostReadReplyKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	lost := &lostReply{}
	client := srv.Client(t)
	client.AddHook(lost)
	keyOrderAcrossLostRead(t, srv, client, func() { lost.armed.Store(true) }, func() bool { return lost.lost.Load() > 0 })
}

// keyOrderAcrossLostRead runs 4 keys of 10 messages each on an ordered
// partition, with client as the worker's: the first message of each key,
// then, once arm has set up the loss of the read that delivers the next
// ones, the rest in one transaction. Every message must run, in order, and
// be acknowledged; lost reports whether a read was lost at all.
func keyOrderAcrossLostRead(t *testing.T, srv *testredis.Server, client *redis.Client, arm func(), lost func() bool) {
	t.Helper()
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.ReclaimMinIdle = time.Second
	cfg.ReclaimInterval = 5 * time.Second // the reclaimer would find the lost entries only after the rest ran
	c := srv.Client(t)
	ctx := context.Background()
	stream := cfg.Streams[0]
	keys := keyNames(4)
	const perKey = 10
	l := newKeyLog()
	startWorker(t, srv, cfg, keyedMux(l, cfg.Consumer), WithRedis(client))
	for _, k := range keys {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", k, 1)
	}
	eventually(t, "the first messages handled", func() bool { return l.total() >= len(keys) })
	// The worker waits for the next entries; the read that delivers them
	// is lost, and every later message is there for the next read to take.
	arm()
	pipe := c.TxPipeline()
	for seq := 2; seq <= perKey; seq++ {
		for _, k := range keys {
			publishKeyed(t, pipe, stream, cfg.Partitions, "keyed", k, seq)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	total := perKey * len(keys)
	eventually(t, "every message handled", func() bool { return l.total() >= total })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
	if !lost() {
		t.Fatal("no read was lost: the test tested nothing")
	}
	l.check(t, keys, perKey)
}

// A hot key's messages, read together many more at a time than
// shiftMost, wait in one long queue behind the one running, and still run
// one at a time in order.
func TestHotKeyRunsInOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	cfg := partitionedConfig(t, srv, 2, "c1")
	c := srv.Client(t)
	stream := cfg.Streams[0]
	const perKey = 300 // more than shiftMost waiting at once
	keys := keyNames(1)
	for seq := 1; seq <= perKey; seq++ {
		publishKeyed(t, c, stream, cfg.Partitions, "keyed", keys[0], seq)
	}
	l := newKeyLog()
	startWorker(t, srv, cfg, keyedMux(l, cfg.Consumer))
	eventually(t, "every message handled", func() bool { return l.total() >= perKey })
	eventually(t, "every message acknowledged", func() bool { return pendingIn(t, c, stream, cfg.Group, cfg.Partitions) == 0 })
	l.check(t, keys, perKey)
}

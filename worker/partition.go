package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// Partitioned streams (WORKER_PARTITIONS above 1). Each stream S of
// WORKER_STREAMS is N streams {S:0} … {S:N-1}, each its own hash tag, so
// that on a Redis Cluster they spread over the nodes. A producer routes an
// event by its partition key to wire.PartitionFor(key, N), so the events of
// a key are in one partition, in order.
//
// Each partition is read by one consumer of the group at a time, as Kafka
// assigns partitions: that is what keeps a key's messages in order across
// several worker processes (within a process, the gate of ordered.go does).
//
//   - Membership: every worker of the group records itself in {S}:members:
//     <group>, a sorted set scored by when its membership runs out, every
//     third of WORKER_PARTITION_LEASE; members that stopped doing so drop
//     out. Sorted by name, the live members agree on each one's share: N/L
//     partitions, one more for the first N mod L.
//   - Ownership: a partition belongs to the consumer named in its owner key
//     {S:i}:owner:<group>, set when nobody owns it with the lease as TTL and
//     renewed by a script that extends it only while it names this consumer
//     (one key per call, so each call is in one slot). A worker takes free
//     partitions up to its share. One that holds more gives the extras up: it
//     stops reading the partition, leaves what waits behind a key pending,
//     waits until what runs has finished and its acknowledgements are
//     written, and only then deletes the owner key (if it still names it).
//   - Take-over: a worker that takes a partition first claims and runs the
//     entries still pending there for other consumers (one that died, one
//     that left) in ID order, before it reads new ones (takeover.go). A
//     crashed owner's messages may so run twice (at-least-once), but a key's
//     first deliveries stay in order.
//   - A worker stops reading a partition two thirds of a lease after its
//     last renewal that worked, by a timer of its own, whatever holds up the
//     renewals (Redis unreachable, a stalled process): a third of a lease —
//     at least one read's block — before another worker may take it. It
//     stops at once when a renewal finds another owner. What it runs
//     finishes, and it gives the partition up once that is acknowledged.
//
// Reclaim passes claim only in partitions this worker owns and has taken
// over, so they never take a live owner's entries out of order; the
// take-over does that job for partitions changing hands.

// streamKeys are the stream keys the runtime reads for cfg: WORKER_STREAMS,
// or every partition of each when WORKER_PARTITIONS is above 1.
func streamKeys(cfg config.Config) []string {
	if cfg.Partitions <= 1 {
		return cfg.Streams
	}
	out := make([]string, 0, len(cfg.Streams)*cfg.Partitions)
	for _, s := range cfg.Streams {
		out = append(out, wire.PartitionStreams(s, cfg.Partitions)...)
	}
	return out
}

// fetchedStreams are the streams each read by a fetch loop for as long as
// the runtime runs: WORKER_STREAMS, or none when they are partitioned (a
// partition is read while it is owned).
func fetchedStreams(cfg config.Config) []string {
	if cfg.Partitions > 1 {
		return nil
	}
	return cfg.Streams
}

// partitionDeps are what the partitions need of the runtime.
type partitionDeps struct {
	cfg        config.Config
	client     redis.UniversalClient
	logger     *slog.Logger                                   // the process logger
	live       *liveness                                      // for the partitions loop's beat
	order      *orderGate                                     // per-key order in the partitions read
	cluster    *clusterRoutes                                 // told of failures that may mean a changed slot map
	leaseEvery time.Duration                                  // how often the messages waiting behind their keys are leased
	takeOver   func(ctx context.Context, s *streamState) bool // claims and runs what others left pending (takeover.go)
	fetchLoop  func(ctx context.Context, s *streamState)      // reads a partition until ctx ends (fetch.go)
}

// partitions takes, reads and gives up the partitions of this consumer.
type partitions struct {
	partitionDeps
	log    *slog.Logger
	lease  time.Duration // an owner key's TTL, and a membership's
	every  time.Duration // how often the membership is renewed and the shares balanced; owner keys twice as often
	groups []*partGroup
	all    []*partition
	beat   *beat

	membersOK atomic.Bool // the last membership update worked

	drained         chan *partition // a partition given up has settled
	fetchersStopped chan struct{}   // closed once shutdown has stopped every fetcher
	leaveCh         chan struct{}
	loopDone        chan struct{}
	leasesDone      chan struct{}
	started         atomic.Bool
	leaveOnce       sync.Once
	fetchers        sync.WaitGroup // the take-over and fetch goroutine of each owned partition
	renewals        sync.WaitGroup // renewal pipelines, one per primary; the loop may stop waiting for one

	drainCtx    context.Context // cancelled by leave: settling stops
	drainCancel context.CancelFunc
	drains      sync.WaitGroup
}

// partGroup is one partitioned stream.
type partGroup struct {
	stream  string // the logical name, without braces
	members string // its members key
	parts   []*partition
}

type partState int

const (
	partFree      partState = iota // another consumer's, or nobody's
	partOwned                      // this consumer's: taken over, then read
	partReleasing                  // being given up: this consumer's until what runs has settled
)

type partition struct {
	g     *partGroup
	idx   int
	s     *streamState
	owner string // its owner key

	// Only the loop goroutine touches these.
	state     partState
	cancel    context.CancelFunc // stops its fetching
	fetchDone chan struct{}      // closed when its fetching has stopped
	renewedAt time.Time          // when the last renewal that worked was sent
	expiry    *time.Timer        // stops its fetching when the lease is about to run out unrenewed

	fetching atomic.Bool // taken over and read now: reclaim passes may claim in it
}

// newPartitions prepares the partitions of the configured streams.
func newPartitions(d partitionDeps) *partitions {
	cfg := d.cfg
	p := &partitions{
		partitionDeps: d, log: d.logger.With("component", "partitions"),
		lease: cfg.PartitionLease, every: cfg.PartitionLease / 3,
		beat:    d.live.Register("partitions"),
		drained: make(chan *partition), fetchersStopped: make(chan struct{}),
		leaveCh: make(chan struct{}), loopDone: make(chan struct{}), leasesDone: make(chan struct{}),
	}
	p.drainCtx, p.drainCancel = context.WithCancel(context.Background())
	for _, s := range cfg.Streams {
		g := &partGroup{stream: s, members: wire.PartitionMembersKey(s, cfg.Group)}
		for i, name := range wire.PartitionStreams(s, cfg.Partitions) {
			// A partition's fetcher beats only while it is owned; the
			// partitions loop reports on them all to /healthz.
			pt := &partition{g: g, idx: i, s: &streamState{name: name, beat: &beat{}}, owner: wire.PartitionOwnerKey(name, cfg.Group)}
			pt.s.beat.beat()
			g.parts = append(g.parts, pt)
			p.all = append(p.all, pt)
		}
		p.groups = append(p.groups, g)
	}
	if cfg.Concurrency <= cfg.Partitions {
		p.log.Warn("WORKER_CONCURRENCY is not above WORKER_PARTITIONS: a worker that owns many partitions keeps one handler slot per idle partition in a blocking read, and has few left to run messages",
			"concurrency", cfg.Concurrency, "partitions", cfg.Partitions)
	}
	return p
}

// Run reads the partitions this consumer owns, taking and giving them up as
// the group's members come and go, until ctx ends; it returns once their
// fetching has stopped. Ownership is kept (renewed) until leave, so that
// nobody takes a partition while its last messages here finish: the loops
// it starts end in leave.
func (p *partitions) Run(ctx context.Context) error {
	p.started.Store(true)
	go p.loop(ctx)
	go p.leaseLoop()
	<-p.fetchersStopped
	return nil
}

// leaseLoop renews the leases of the messages waiting behind their keys
// until leave. It is a goroutine of its own so that a slow Redis (a
// failover) never holds up the renewal of the owner keys.
func (p *partitions) leaseLoop() {
	defer close(p.leasesDone)
	t := time.NewTicker(p.leaseEvery)
	defer t.Stop()
	for {
		select {
		case <-p.leaveCh:
			return
		case <-t.C:
			p.order.renewLeases()
		}
	}
}

// leave gives up every partition and the group membership; engine.Run
// calls it once the acknowledgements are written. Safe when run never ran,
// and twice.
func (p *partitions) leave() {
	if !p.started.Load() {
		return
	}
	p.leaveOnce.Do(func() { close(p.leaveCh) })
	<-p.loopDone
	<-p.leasesDone
}

// ownedFunc returns what reclaim passes may claim in: the partitions taken
// over and read now. Nil when the streams are not partitioned.
func (p *partitions) ownedFunc() func() []string {
	return func() []string {
		var out []string
		for _, pt := range p.all {
			if pt.fetching.Load() {
				out = append(out, pt.s.name)
			}
		}
		return out
	}
}

// ready reports, for /readyz, whether the membership is kept and every
// partition read now has its group and answers reads.
func (p *partitions) ready() error {
	if !p.membersOK.Load() {
		return errors.New("redis is not answering the partition membership updates")
	}
	for _, pt := range p.all {
		if !pt.fetching.Load() {
			continue
		}
		if !pt.s.groupReady.Load() || !pt.s.redisOK.Load() {
			return errors.New("redis is not answering reads of partition " + pt.s.name)
		}
	}
	return nil
}

func (p *partitions) loop(ctx context.Context) {
	defer close(p.loopDone)
	defer p.renewals.Wait() // a renewal the loop stopped waiting for
	renewTick := time.NewTicker(p.every / 2)
	defer renewTick.Stop()
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	stop, stopping := ctx.Done(), false
	healthy := p.renewPass(stopping)
	p.balancePass(ctx, stopping, healthy)
	for {
		select {
		case <-stop:
			stop, stopping = nil, true
			p.stopFetching()
		case <-p.leaveCh:
			p.drainCancel()
			p.drains.Wait()
			p.releaseAll()
			return
		case pt := <-p.drained:
			p.settled(pt)
		case <-renewTick.C:
			healthy = p.renewPass(stopping)
		case <-tick.C:
			p.balancePass(ctx, stopping, healthy)
		}
	}
}

// renewPass renews what this consumer owns, twice per renewal period (a
// renewal that fails, in a failover, leaves time for two more before the
// fetching stops by itself), and gives up the partitions whose fetching
// stopped so. It reports whether every renewal worked.
func (p *partitions) renewPass(stopping bool) bool {
	healthy := p.renew()
	if stopping {
		return healthy
	}
	for _, pt := range p.all {
		if pt.state != partOwned {
			continue
		}
		select {
		case <-pt.fetchDone:
			p.log.Warn("partition lease was about to run out before a renewal worked (a stalled process, or Redis unreachable); stopped reading it",
				"partition", pt.s.name, "last_renewed", pt.renewedAt)
			p.release(pt)
		default:
		}
	}
	return healthy
}

// balancePass renews this consumer's membership and, unless it is
// stopping, takes or gives up partitions to hold its share. While every
// renewal fails (healthy false: Redis unreachable) it does no more: its
// calls would wait out their timeouts and balance on a view Redis cannot
// confirm. When only some fail (one primary of a cluster, in a failover) it
// goes on: each of its calls is bounded by opCtx.
func (p *partitions) balancePass(ctx context.Context, stopping, healthy bool) {
	if !healthy {
		p.membersOK.Store(false)
		p.beat.beat() // alive: waiting for Redis is not stuck
		return
	}
	ok := true
	for _, g := range p.groups {
		live, err := p.members(g)
		if err != nil {
			ok = false
			p.cluster.failed(err)
			p.log.Warn("updating the partition membership failed", "stream", g.stream, "error", err)
			continue
		}
		if !stopping {
			p.balance(ctx, g, live)
		}
	}
	p.membersOK.Store(ok)
	// Alive when every partition read now was read lately.
	stale := time.Now().Add(-(p.cfg.Block + 30*time.Second)).UnixNano()
	for _, pt := range p.all {
		if pt.fetching.Load() && pt.s.beat.last.Load() < stale {
			return
		}
	}
	p.beat.beat()
}

// readable is how long after a renewal was sent a partition may still be
// read: two thirds of the lease. The last third is at least a read's block
// (config.Validate), so a read sent before then returns before the lease
// runs out and another worker may take the partition.
func (p *partitions) readable() time.Duration { return p.lease - p.every }

// opCtx bounds one call of the loop to a quarter of a renewal period, so
// that a balancing pass whose calls all time out delays the next renewal
// little.
func (p *partitions) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), min(opTimeout, max(p.every/4, 100*time.Millisecond)))
}

// The partition scripts each touch one key, so each runs in the slot of
// that key on a Redis Cluster.
//
// membersScript records this consumer as a live member of a partitioned
// stream's group until now+lease, forgets the members whose time ran out and
// returns the live ones. The time is Redis's, so workers' clocks need not
// agree.
//
// KEYS[1] -> the members sorted set
// ARGV[1] -> this consumer
// ARGV[2] -> lease, ms
var membersScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 3 * lease)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// members records this consumer in g's membership and returns the live
// members, sorted.
func (p *partitions) members(g *partGroup) ([]string, error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	live, err := membersScript.Run(ctx, p.client, []string{g.members}, p.cfg.Consumer, p.lease.Milliseconds()).StringSlice()
	if err != nil {
		return nil, err
	}
	slices.Sort(live)
	return live, nil
}

// acquireScript takes a partition that nobody owns, or keeps one this
// consumer owns: it renews the ownership, and takes back one whose key ran
// out while nobody else took it (a stalled process), or one owned before a
// restart under the same name.
//
// KEYS[1] -> the partition's owner key
// ARGV[1] -> this consumer
// ARGV[2] -> lease, ms
// Returns 1 when this consumer owns the partition now.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// renew extends the owner key of every partition this consumer holds: one
// pipeline per primary on a Redis Cluster (one in all otherwise), sent side
// by side, each partition judged by its own command's result. A primary
// that failed (a failover) so holds up only its own partitions: the others'
// renewals count, and they keep being read. The loop waits for the answers
// up to the pass's deadline (opCtx); a primary that has not answered by
// then counts as failed for this pass. A key that ran out meanwhile (a
// stalled process) is set again if nobody took it. A partition found owned
// by another, or whose lease could not be renewed before it ran out, stops
// being read at once. It reports false when every renewal failed on an
// error (Redis unreachable as a whole), true when at least one worked or
// none was needed.
func (p *partitions) renew() bool {
	var mine []*partition
	for _, pt := range p.all {
		if pt.state != partFree {
			mine = append(mine, pt)
		}
	}
	if len(mine) == 0 {
		return true
	}
	byNode := map[string][]*partition{}
	var nodes []string
	for _, pt := range mine {
		n := p.nodeOf(pt.owner)
		if _, ok := byNode[n]; !ok {
			nodes = append(nodes, n)
		}
		byNode[n] = append(byNode[n], pt)
	}
	type answer struct {
		node string
		cmds []*redis.Cmd
		sent time.Time
	}
	ctx, cancel := p.opCtx()
	defer cancel()
	answers := make(chan answer, len(nodes)) // buffered: one that comes late is dropped, not blocked
	for _, n := range nodes {
		pts := byNode[n]
		p.renewals.Add(1)
		go func() {
			defer p.renewals.Done()
			pipe := p.client.Pipeline()
			cmds := make([]*redis.Cmd, len(pts))
			for i, pt := range pts {
				cmds[i] = acquireScript.Eval(ctx, pipe, []string{pt.owner}, p.cfg.Consumer, p.lease.Milliseconds())
			}
			sent := time.Now()
			_, _ = pipe.Exec(ctx) // each command's error is looked at below
			answers <- answer{node: n, cmds: cmds, sent: sent}
		}()
	}
	worked, failed := 0, 0
	var firstErr error
	judge := func(pt *partition, n int64, err error, sent time.Time) {
		switch {
		case err == nil && n == 1:
			worked++
			pt.renewedAt = sent
			if pt.state == partOwned {
				pt.expiry.Reset(time.Until(sent.Add(p.readable())))
			}
		case err == nil:
			worked++
			if pt.state == partOwned {
				p.log.Warn("partition lost: its lease ran out and another consumer took it; stopped reading it",
					"partition", pt.s.name)
				p.release(pt)
			}
		default:
			if failed++; firstErr == nil {
				firstErr = err
			}
			p.cluster.failed(err)
			if pt.state == partOwned && time.Since(pt.renewedAt) > p.readable() {
				p.log.Warn("partition lease could not be renewed before it ran out; stopped reading it",
					"partition", pt.s.name, "error", err)
				p.release(pt)
			}
		}
	}
	for range nodes {
		select {
		case a := <-answers:
			for i, pt := range byNode[a.node] {
				n, err := a.cmds[i].Int64()
				judge(pt, n, err, a.sent)
			}
			delete(byNode, a.node)
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	for _, pts := range byNode { // no answer by the deadline
		for _, pt := range pts {
			judge(pt, 0, ctx.Err(), time.Time{})
		}
	}
	if failed > 0 {
		p.log.Warn("renewing partition ownership failed; retrying", "failed", failed, "of", len(mine), "error", firstErr)
	}
	return worked > 0 || failed == 0
}

// nodeOf is the primary that serves key as the cluster client's slot map
// has it now, or "" off a cluster.
func (p *partitions) nodeOf(key string) string {
	if p.cluster == nil {
		return ""
	}
	c, err := p.cluster.c.MasterForKey(context.Background(), key)
	if err != nil {
		return "?"
	}
	return c.Options().Addr
}

// balance takes free partitions of g up to this consumer's share among the
// live members, or gives up those above it. Members prefer partitions from
// different starting points, so that the shares settle without contention.
func (p *partitions) balance(ctx context.Context, g *partGroup, live []string) {
	me := p.cfg.Consumer
	idx, found := slices.BinarySearch(live, me)
	if !found {
		return
	}
	n, l := len(g.parts), len(live)
	share := n / l
	if idx < n%l {
		share++
	}
	first := idx * n / l
	rank := func(pt *partition) int { return (pt.idx - first + n) % n }
	var owned, free []*partition
	for _, pt := range g.parts {
		switch pt.state {
		case partOwned:
			owned = append(owned, pt)
		case partFree:
			free = append(free, pt)
		case partReleasing:
		}
	}
	if len(owned) > share {
		slices.SortFunc(owned, func(a, b *partition) int { return rank(b) - rank(a) })
		for _, pt := range owned[:len(owned)-share] {
			p.log.Info("giving a partition up to balance the group", "partition", pt.s.name, "share", share, "members", l)
			p.release(pt)
		}
		return
	}
	need := share - len(owned)
	if need == 0 || len(free) == 0 {
		return
	}
	slices.SortFunc(free, func(a, b *partition) int { return rank(a) - rank(b) })

	// Which are free in Redis too (or still ours from an earlier run).
	octx, cancel := p.opCtx()
	defer cancel()
	pipe := p.client.Pipeline()
	gets := make([]*redis.StringCmd, len(free))
	for i, pt := range free {
		gets[i] = pipe.Get(octx, pt.owner)
	}
	_, _ = pipe.Exec(octx)
	var want []*partition
	for i, pt := range free {
		v, err := gets[i].Result()
		switch {
		case errors.Is(err, redis.Nil) || (err == nil && v == me):
			want = append(want, pt)
		case err != nil:
			p.cluster.failed(err)
		}
		if len(want) == need {
			break
		}
	}
	if len(want) == 0 {
		return
	}
	pipe = p.client.Pipeline()
	takes := make([]*redis.Cmd, len(want))
	for i, pt := range want {
		takes[i] = acquireScript.Eval(octx, pipe, []string{pt.owner}, me, p.lease.Milliseconds())
	}
	sent := time.Now()
	_, _ = pipe.Exec(octx)
	for i, pt := range want {
		if n, err := takes[i].Int(); err == nil && n == 1 {
			p.start(ctx, pt, sent)
		} else if err != nil {
			p.cluster.failed(err)
		}
	}
}

// start reads a partition just taken: the take-over first, then fetching.
func (p *partitions) start(ctx context.Context, pt *partition, taken time.Time) {
	pt.state, pt.renewedAt = partOwned, taken
	pt.s.beat.beat()
	p.order.reset(pt.s.name)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	pt.cancel, pt.fetchDone = cancel, done
	// The fetching stops by itself when the lease is about to run out, even
	// if this loop is held up: a read sent then still returns (within a
	// block period) before another worker can take the partition.
	pt.expiry = time.AfterFunc(time.Until(taken.Add(p.readable())), cancel)
	p.fetchers.Add(1)
	go func() {
		defer p.fetchers.Done()
		defer close(done)
		if p.takeOver(fctx, pt.s) && fctx.Err() == nil {
			pt.fetching.Store(true)
			p.fetchLoop(fctx, pt.s)
		}
		pt.fetching.Store(false)
	}()
	p.log.Info("partition taken", "partition", pt.s.name)
}

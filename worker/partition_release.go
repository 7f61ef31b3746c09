package worker

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Giving partitions up: to balance the group, when another consumer owns
// one, when its lease is about to run out unrenewed, and at shutdown.

// release stops reading a partition and, in the background, settles it:
// what waits behind a key is left pending, and what runs is waited for until
// its outcome is written. The loop then deletes the owner key if it is
// still this consumer's (settled). A partition lost to another consumer
// settles as soon as what runs here has finished; one whose lease could not
// be renewed (Redis unreachable, the cluster failing over) settles once
// Redis answers again and takes the acknowledgements, so that taking it
// again runs nothing twice.
func (p *partitions) release(pt *partition) {
	pt.state = partReleasing
	pt.fetching.Store(false)
	pt.expiry.Stop()
	pt.cancel()
	done := pt.fetchDone
	p.drains.Add(1)
	go func() {
		defer p.drains.Done()
		select {
		case <-done:
		case <-p.drainCtx.Done():
			return
		}
		p.order.abandon(pt.s.name)
		p.waitSettled(pt)
		select {
		case p.drained <- pt:
		case <-p.drainCtx.Done():
		}
	}()
}

// waitSettled waits until nothing this consumer read from pt is pending but
// what it left pending on purpose: what ran has been acknowledged (or
// retried or dead-lettered). It gives up after a handler timeout and a
// lease, for an entry whose outcome could not be written.
func (p *partitions) waitSettled(pt *partition) {
	deadline := time.Now().Add(p.cfg.HandlerTimeout + p.lease)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		left, err := p.unsettled(pt)
		if err == nil && left == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.log.Warn("giving a partition up with entries of this consumer still pending; its next owner runs them again",
				"partition", pt.s.name, "pending", left, "error", err)
			return
		}
		select {
		case <-t.C:
		case <-p.drainCtx.Done():
			return
		}
	}
}

// unsettled counts the entries of pt pending for this consumer that it did
// not leave pending on purpose.
func (p *partitions) unsettled(pt *partition) (int, error) {
	ctx, cancel := p.opCtx()
	defer cancel()
	left, start := 0, "-"
	for {
		pend, err := p.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: pt.s.name, Group: p.cfg.Group, Consumer: p.cfg.Consumer, Start: start, End: "+", Count: 1000,
		}).Result()
		if err != nil {
			return -1, err
		}
		for _, e := range pend {
			if !p.order.abandoned(pt.s.name, e.ID) {
				left++
			}
		}
		if len(pend) < 1000 {
			return left, nil
		}
		start = "(" + pend[len(pend)-1].ID
	}
}

// releaseOwnerScript gives a partition up, if this consumer still owns it.
//
// KEYS[1] -> the partition's owner key
// ARGV[1] -> this consumer
var releaseOwnerScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// settled finishes giving a partition up.
func (p *partitions) settled(pt *partition) {
	if pt.state != partReleasing {
		return
	}
	pt.state = partFree
	ctx, cancel := p.opCtx()
	defer cancel()
	if err := releaseOwnerScript.Run(ctx, p.client, []string{pt.owner}, p.cfg.Consumer).Err(); err != nil {
		p.cluster.failed(err)
		p.log.Warn("could not delete a partition's owner key; another consumer takes the partition when the lease runs out",
			"partition", pt.s.name, "lease", p.lease, "error", err)
		return
	}
	p.log.Info("partition given up", "partition", pt.s.name)
}

// stopFetching stops every partition's fetching at shutdown and makes
// retries in place give up.
func (p *partitions) stopFetching() {
	for _, pt := range p.all {
		if pt.state != partFree && pt.cancel != nil {
			pt.expiry.Stop()
			pt.cancel()
		}
	}
	p.fetchers.Wait()
	close(p.fetchersStopped)
	p.order.shutdown()
}

// releaseAll deletes every owner key this consumer holds, and its
// membership, so that the others take its partitions at once.
func (p *partitions) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := p.client.Pipeline()
	n := 0
	for _, pt := range p.all {
		if pt.expiry != nil {
			pt.expiry.Stop()
		}
		if pt.state != partFree {
			releaseOwnerScript.Eval(ctx, pipe, []string{pt.owner}, p.cfg.Consumer)
			pt.state = partFree
			n++
		}
	}
	for _, g := range p.groups {
		pipe.ZRem(ctx, g.members, p.cfg.Consumer)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		p.log.Warn("could not give the partitions up at shutdown; the others take them when the lease runs out",
			"lease", p.lease, "error", err)
		return
	}
	if n > 0 {
		p.log.Info("partitions given up at shutdown", "count", n)
	}
}

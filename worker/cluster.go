package worker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterRoutes has a Redis Cluster client reload its slot map after an
// error that may mean the cluster changed. go-redis reloads it on a MOVED
// reply, but a primary that died answers nothing: until the map is reloaded
// (every minute by itself), the client keeps sending that primary's slots to
// the dead address, even after a replica has been promoted in its place. A
// reload that comes too early, before the promotion, changes nothing; the
// next error asks again. Nil for a client that is not a cluster client.
type clusterRoutes struct {
	c    *redis.ClusterClient
	last atomic.Int64 // unix ns of the last reload asked for
}

// reloadEvery spaces reloads out: go-redis itself reloads at most every
// 200ms, and a failing node makes every loop of the runtime fail at once.
const reloadEvery = 250 * time.Millisecond

func newClusterRoutes(c redis.UniversalClient) *clusterRoutes {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	return &clusterRoutes{c: cc}
}

// failed is told of a command's error; when it may come from a change of
// the cluster, the slot map is reloaded.
func (cr *clusterRoutes) failed(err error) {
	if cr == nil || !routingError(err) {
		return
	}
	now := time.Now().UnixNano()
	last := cr.last.Load()
	if now-last < int64(reloadEvery) || !cr.last.CompareAndSwap(last, now) {
		return
	}
	cr.c.ReloadState(context.Background())
}

// routingError reports whether err may mean that a slot is served by
// another node now: no reply at all (a connection refused, reset or timed
// out), or a reply about the cluster's state.
func routingError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return true
	}
	msg := re.Error()
	for _, p := range []string{"MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "LOADING", "MASTERDOWN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

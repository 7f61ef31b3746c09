package worker

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/wire"
)

// errCrossSlot is returned by checkSlots for a stream whose keys a Redis
// Cluster would put in different hash slots.
var errCrossSlot = errors.New("its keys are in different hash slots")

// checkSlots refuses, on a Redis Cluster (client is a *redis.ClusterClient),
// any stream whose keys do not all hash to one slot. The runtime touches
// them together in one Lua script or pipeline step (retry: S and S:delayed;
// dead-letter: S and S:dlq; promote: S:delayed, S and S:dlq; consumer
// clean-up: S and the heartbeat key), and a cluster refuses such a command
// with CROSSSLOT, so a worker that started would fail message by message.
// Any other client passes: one server has no slots. The error names each
// stream and says how to name it: with a hash tag, {orders}.
func checkSlots(client redis.UniversalClient, streams []string, group, consumer string) error {
	if _, ok := client.(*redis.ClusterClient); !ok {
		return nil
	}
	var errs []error
	for _, s := range streams {
		keys := slotKeys(s, group, consumer)
		want := wire.Slot(keys[0])
		for _, k := range keys[1:] {
			if got := wire.Slot(k); got != want {
				fix := tagged(s)
				errs = append(errs, fmt.Errorf("stream %q: %w: %q is in slot %d and %q in slot %d, and on Redis Cluster the keys the worker uses together must share one; name the stream with a hash tag, e.g. WORKER_STREAMS=%s, so that %s, %s and %s share a slot",
					s, errCrossSlot, keys[0], want, k, got, fix, fix, wire.DelayedKey(fix), wire.DeadLetterKey(fix)))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// slotKeys are the keys the runtime uses with stream s in one multi-key
// command, the stream first. The dedupe mark stands for every id.
func slotKeys(s, group, consumer string) []string {
	return []string{s, wire.DelayedKey(s), wire.DeadLetterKey(s), wire.DedupeKey(s, "id"), wire.HeartbeatKey(s, group, consumer)}
}

// tagged is s made a hash tag, the name checkSlots suggests.
func tagged(s string) string {
	s = strings.NewReplacer("{", "", "}", "").Replace(s)
	if s == "" {
		s = "events"
	}
	return "{" + s + "}"
}

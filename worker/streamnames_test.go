package worker

import (
	"errors"
	"testing"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// TestConfigRefusesTheRuntimesKeysAsStreams keeps config's list of the
// runtime's key shapes in step with the builders in keys.go and
// reclaim/keys.go: every key they build beside a stream is refused as
// WORKER_STREAMS, the streams themselves are not. A new key builder belongs
// in this list and in config's.
func TestConfigRefusesTheRuntimesKeysAsStreams(t *testing.T) {
	partition := PartitionStream("orders", 3)
	for _, s := range []string{"orders", "{orders}", partition} {
		cfg := config.Default()
		cfg.Streams = []string{s}
		if err := cfg.Validate(); err != nil {
			t.Errorf("stream %q refused: %v", s, err)
		}
	}
	for _, key := range []string{
		DelayedKey("orders"), DelayedKey("{orders}"), DelayedKey(partition),
		DeadLetterKey("orders"), DeadLetterKey("{orders}"), DeadLetterKey(partition),
		dedupeKey("orders", "42"), dedupeKey(partition, "42"),
		wire.HeartbeatKey("orders", "workers", "pod-1"), wire.HeartbeatKey(partition, "workers", "pod-1"),
		partitionOwnerKey(partition, "workers"),
		partitionMembersKey("orders", "workers"),
	} {
		cfg := config.Default()
		cfg.Streams = []string{key}
		err := cfg.Validate()
		var cerr *config.Error
		if !errors.As(err, &cerr) || cerr.Var != "WORKER_STREAMS" {
			t.Errorf("WORKER_STREAMS=%s: Validate() = %v, want it refused as the runtime's own key", key, err)
		}
	}
}

package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamworker/streamworker/wire"
)

// TestConfigRefusesTheRuntimesKeysAsStreams: every key the wire package
// builds beside a stream is refused as WORKER_STREAMS, and said to be what
// it is; the streams themselves are not. A new key builder belongs in this
// list, in wire.ParseCompanion and in runtimeKeyWhat.
func TestConfigRefusesTheRuntimesKeysAsStreams(t *testing.T) {
	partition := wire.PartitionStream("orders", 3)
	for _, s := range []string{"orders", "{orders}", partition} {
		cfg := Default()
		cfg.Streams = []string{s}
		if err := cfg.Validate(); err != nil {
			t.Errorf("stream %q refused: %v", s, err)
		}
	}
	for _, key := range []string{
		wire.DelayedKey("orders"), wire.DelayedKey("{orders}"), wire.DelayedKey(partition),
		wire.DeadLetterKey("orders"), wire.DeadLetterKey("{orders}"), wire.DeadLetterKey(partition),
		wire.CancelledKey("orders"), wire.CancelledKey(partition),
		wire.DedupeKey("orders", "42"), wire.DedupeKey(partition, "42"),
		wire.HeartbeatKey("orders", "workers", "pod-1"), wire.HeartbeatKey(partition, "workers", "pod-1"),
		wire.PartitionOwnerKey(partition, "workers"),
		wire.PartitionMembersKey("orders", "workers"),
		wire.TrimLeaseKey("orders"), wire.TrimLeaseKey(partition),
	} {
		cfg := Default()
		cfg.Streams = []string{key}
		err := cfg.Validate()
		var cerr *Error
		if !errors.As(err, &cerr) || cerr.Var != "WORKER_STREAMS" {
			t.Errorf("WORKER_STREAMS=%s: Validate() = %v, want it refused as the runtime's own key", key, err)
			continue
		}
		kind, _, _ := wire.ParseCompanion(key)
		if what, ok := runtimeKeyWhat[kind]; !ok || !strings.Contains(err.Error(), what) {
			t.Errorf("WORKER_STREAMS=%s: %v; want it to say what the key is (runtimeKeyWhat[%v])", key, err, kind)
		}
	}
}

package wire_test

import (
	"context"
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// Slot must agree with the server's own CLUSTER KEYSLOT, hash tags and
// their corner cases included: the runtime's start check, the building
// blocks' keys and their sharded subscriptions all rest on it.
func TestSlotMatchesServer(t *testing.T) {
	t.Parallel()
	_, cc := testredis.OneNodeCluster(t)
	ctx := context.Background()
	for _, k := range []string{
		"", "a", "foo", "users", "123456789", "orders", "orders:delayed", "{orders}", "{orders}:dlq", "{orders:3}",
		"{orders:3}:dedupe:x", "{orders}.created", "{orders}.paid", "x{orders}y", "{}orders", "{orders", "orders}",
		"{a}{b}", "{{a}}", "{user1000}.following", "{user:1000}:followers", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{}", "}{", "a{b", "ünïcode", "ключ{заказы}", "\x00\xff",
		wire.HeartbeatKey("{orders}", "workers", "pod-{0}"), wire.PartitionMembersKey("orders", "workers"),
	} {
		want, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", k, err)
		}
		if got := wire.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d; CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}

func TestHashTag(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		key, tag string
		ok       bool
	}{
		{"user:{42}:cart", "42", true},
		{"{a}{b}", "a", true},
		{"a{}b", "", false},
		{"a{b", "", false},
		{"a}b{c}", "c", true},
		{"{}{x}", "", false},
		{"plain", "", false},
	} {
		tag, ok := wire.HashTag(tt.key)
		if tag != tt.tag || ok != tt.ok {
			t.Errorf("HashTag(%q) = %q, %v; want %q, %v", tt.key, tag, ok, tt.tag, tt.ok)
		}
	}
}

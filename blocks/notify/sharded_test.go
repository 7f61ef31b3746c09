package notify_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/notify"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// Sharded pub/sub on a single node (Redis 7 has SPUBLISH and SSUBSCRIBE
// outside Cluster too), with channels in several slots.
func TestSharded(t *testing.T) {
	t.Parallel()
	rdb := testredis.Shared(t).Client(t)
	prefix := testredis.Prefix(t)
	chans := []string{prefix + "a", prefix + "b", prefix + "c"}
	testSharded(t, rdb, chans)
}

// On Redis Cluster, channels of several slots are split into one SSUBSCRIBE
// per slot (one SSUBSCRIBE across slots is refused with CROSSSLOT), and a
// subscription the server ends — its slot moved away — is renewed once the
// slot is served again. The cluster is one node owning every slot.
func TestShardedOnCluster(t *testing.T) {
	t.Parallel()
	srv, cc := testredis.OneNodeCluster(t)
	chans := []string{"{orders}.created", "{orders}.paid", "users", "stock"}
	s := testSharded(t, cc, chans)

	// Take the slot of "users" away: the node ends that subscription.
	admin := srv.Client(t)
	ctx := context.Background()
	slot := admin.ClusterKeySlot(ctx, "users").Val()
	lost := s.n.Stats().Lost
	if err := admin.ClusterDelSlots(ctx, int(slot)).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.n.Stats().Lost == lost {
		if time.Now().After(deadline) {
			t.Fatalf("subscription not ended by CLUSTER DELSLOTS; stats %+v", s.n.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if err := admin.ClusterAddSlots(ctx, int(slot)).Err(); err != nil {
		t.Fatal(err)
	}
	s.waitSubscribed(true)
	pub := notify.New(cc, &notify.Options{Sharded: true})
	if n, err := pub.Publish(ctx, "users", "back"); err != nil || n != 1 {
		t.Fatalf("SPUBLISH after the slot came back = %d, %v; want 1 receiver", n, err)
	}
	if m := s.receive(); m.Channel != "users" || string(m.Payload) != `"back"` {
		t.Fatalf("got %s on %q, want \"back\" on users", m.Payload, m.Channel)
	}
}

func testSharded(t *testing.T, rdb redis.UniversalClient, chans []string) *subscriber {
	t.Helper()
	opt := notify.Options{Sharded: true, HealthCheck: 200 * time.Millisecond}
	s := startSubscriber(t, rdb, opt, channels(chans...), nil)
	// One subscription per slot: wait for the others.
	slots := map[int64]bool{}
	for _, c := range chans {
		slots[keySlot(c)] = true
	}
	for range len(slots) - 1 {
		s.waitSubscribed(false)
	}

	pub := notify.New(rdb, &notify.Options{Sharded: true})
	ctx := context.Background()
	for _, c := range chans {
		n, err := pub.Publish(ctx, c, "hello "+c)
		if err != nil || n != 1 {
			t.Fatalf("SPUBLISH to %q = %d, %v; want 1 receiver", c, n, err)
		}
	}
	var got []string
	for range chans {
		m := s.receive()
		got = append(got, m.Channel)
		if want := `"hello ` + m.Channel + `"`; string(m.Payload) != want {
			t.Errorf("payload on %q = %s, want %s", m.Channel, m.Payload, want)
		}
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(chans)); !slices.Equal(got, want) {
		t.Errorf("received on %v, want %v", got, want)
	}
	// A classic subscriber does not see sharded events.
	if n, _ := rdb.Publish(ctx, chans[0], "classic").Result(); n != 0 {
		t.Errorf("PUBLISH reached %d sharded subscribers, want 0", n)
	}
	return s
}

// keySlot is the slot CLUSTER KEYSLOT gives, computed here so that the
// single-node test needs no cluster (wire's tests hold it to the server's).
func keySlot(key string) int64 { return int64(wire.Slot(key)) }

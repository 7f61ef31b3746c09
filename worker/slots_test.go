package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

func TestCheckSlots(t *testing.T) {
	t.Parallel()
	_, cc := testredis.OneNodeCluster(t)
	ctx := context.Background()
	// Why the check exists: the runtime's scripts fail on such a name.
	err := retryScript.Run(ctx, cc, []string{"orders", wire.DelayedKey("orders")}, "g", "0-1", 0, "x").Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("retry script on an untagged stream = %v, want CROSSSLOT", err)
	}

	for _, tc := range []struct {
		name    string
		streams []string
		want    []string // "" parts of the error; none for nil
	}{
		{"Tagged", []string{"{orders}", "{payments}"}, nil},
		{"Partitions", wire.PartitionStreams("orders", 4), nil},
		{"TagInside", []string{"shop:{orders}:v2"}, nil},
		{"Untagged", []string{"orders"}, []string{
			`stream "orders": its keys are in different hash slots: "orders" is in slot 105 and "orders:delayed" in slot 582, and on Redis Cluster the keys the worker uses together must share one; ` +
				"name the stream with a hash tag, e.g. WORKER_STREAMS={orders}, so that {orders}, {orders}:delayed and {orders}:dlq share a slot",
		}},
		{"EmptyTag", []string{"{}orders"}, []string{`stream "{}orders"`, "WORKER_STREAMS={orders}"}},
		{"EveryBadStreamNamed", []string{"{ok}", "orders", "payments"}, []string{`stream "orders"`, `stream "payments"`, "WORKER_STREAMS={payments}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSlots(cc, tc.streams, "workers", "pod-0")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckSlots(%q) = %v, want nil", tc.streams, err)
				}
				return
			}
			if !errors.Is(err, errCrossSlot) {
				t.Fatalf("CheckSlots(%q) = %v, want ErrCrossSlot", tc.streams, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
	t.Run("HeartbeatKeyOutOfSlot", func(t *testing.T) {
		// A tagged group name moves the heartbeat key of an untagged
		// stream; the stream's tag is what keeps them together.
		if err := checkSlots(cc, []string{"{orders}"}, "{g}", "c"); err != nil {
			t.Errorf("tagged stream, tagged group: %v", err)
		}
		if err := checkSlots(cc, []string{"orders"}, "{g}", "c"); !errors.Is(err, errCrossSlot) {
			t.Errorf("untagged stream: %v, want ErrCrossSlot", err)
		}
	})
	t.Run("SingleServer", func(t *testing.T) {
		if err := checkSlots(testredis.Shared(t).Client(t), []string{"orders"}, "workers", "pod-0"); err != nil {
			t.Errorf("CheckSlots on a single server = %v, want nil: it has no slots", err)
		}
	})
}

// The runtime refuses to start on a cluster with a stream it could not
// serve, before it touches Redis.
func TestRunRefusesCrossSlotStreams(t *testing.T) {
	t.Parallel()
	_, cc := testredis.OneNodeCluster(t)
	ctx := context.Background()
	cfg := config.Default()
	cfg.Streams, cfg.Consumer, cfg.HTTPAddr = []string{"{ok}", "orders"}, "c1", "off"
	err := Run(ctx, cfg, NewMux(), WithRedis(cc), WithLogger(slog.New(slog.DiscardHandler)), WithRegistry(prometheus.NewRegistry()))
	if !errors.Is(err, errCrossSlot) || !strings.Contains(err.Error(), "WORKER_STREAMS={orders}") {
		t.Fatalf("Run = %v, want ErrCrossSlot naming the fix", err)
	}
	if n := cc.Exists(ctx, "{ok}", "orders").Val(); n != 0 {
		t.Errorf("a refused start created %d streams", n)
	}
}

package testredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	cc := c.Client(t)
	ctx := context.Background()
	for _, k := range []string{"{a}x", "{b}x", "{c}x", "{d}x"} {
		if err := cc.Set(ctx, k, "1", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	if n := len(c.Nodes); n != 6 {
		t.Fatalf("%d nodes", n)
	}
	// Kill the primary of one key: its replica takes over.
	p := c.PrimaryFor(t, "{a}x")
	if n, err := p.Client(t).Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	p.Kill(t)
	c.WaitHealthy(t)
	if np := c.PrimaryFor(t, "{a}x"); np == p {
		t.Fatal("the dead primary still serves the slot")
	}
	// go-redis keeps routing to a dead primary until its slot map is
	// reloaded; a MOVED reply or ReloadState does that.
	cc.ReloadState(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := cc.Get(ctx, "{a}x").Result()
		if err == nil {
			if got != "1" {
				t.Fatalf("{a}x = %q after failover, want the replicated value", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a failover, with a deadline
	}
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	st := StartSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: st.Master, SentinelAddrs: st.SentinelAddrs()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	st.Primary.Kill(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := c.Set(ctx, "k2", "v", 0).Err(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes never resumed after the sentinel failover")
		}
		time.Sleep(50 * time.Millisecond) // polling a failover, with a deadline
	}
	if got := c.Get(ctx, "k").Val(); got != "v" {
		t.Errorf("k = %q after failover, want the replicated value", got)
	}
}

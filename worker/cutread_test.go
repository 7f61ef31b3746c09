package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/internal/testredis"
)

// cutRead cuts the next XREADGROUP of new entries that delivers some. A
// read sent with the acknowledgements of messages run on the fetcher
// (readAcking) follows their XACKs in one pipeline: their replies, integers,
// come first, often alone while the read blocks, and are passed on; the
// read's own reply decides.
func cutRead() *testredis.Cut {
	return &testredis.Cut{
		Cmd: func(c []byte) bool {
			return bytes.Contains(c, []byte("xreadgroup")) && bytes.Contains(c, []byte("\r\n>\r\n"))
		},
		Reply: func(r []byte) bool {
			for len(r) > 0 && r[0] == ':' { // an XACK's reply
				i := bytes.Index(r, []byte("\r\n"))
				if i < 0 {
					return false
				}
				r = r[i+2:]
			}
			return len(r) > 0 && !nullReply(r)
		},
	}
}

// nullReply reports whether a reply is RESP3's or RESP2's null: a read that
// found nothing.
func nullReply(b []byte) bool {
	return bytes.HasPrefix(b, []byte("_\r\n")) || bytes.HasPrefix(b, []byte("*-1\r\n"))
}

// A read whose connection breaks after Redis ran it is not resent: go-redis
// would resend it (its MaxRetries are left at their default here), the
// resent read would deliver the keys' later messages, and those the first
// one delivered would stay pending, unseen, until a reclaim ran them out of
// order. The failure reaches the fetcher instead, which runs them first.
func TestCutReadIsNotResent(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	proxy := testredis.NewCutProxy(t, srv.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	keyOrderAcrossLostRead(t, srv, client, func() { proxy.Arm(cutRead()) }, func() bool { return proxy.Cuts() > 0 })
}

// After a lost read, the fetcher replays the entries it was delivered
// unseen, claiming those idle for a min-idle (replayOwn). When that claim's
// connection breaks after Redis ran it, the entries it took are this
// consumer's with their idle time reset: a resent claim would skip them,
// the replay would move on past them, and they would run only when
// reclaimed, after their keys' later messages. The claim is sent once, and
// its failure holds reads back until they are idle again.
func TestCutReplayClaimKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	proxy := testredis.NewCutProxy(t, srv.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	// The replay's claim script: this consumer (c1), then the min-idle of
	// keyOrderAcrossLostRead's config (1000 ms), among its arguments.
	claim := &testredis.Cut{
		Cmd: func(c []byte) bool {
			return (bytes.Contains(c, []byte("eval")) || bytes.Contains(c, []byte("fcall"))) &&
				bytes.Contains(c, []byte("\r\n$2\r\nc1\r\n$4\r\n1000\r\n"))
		},
		// Not NOSCRIPT: then nothing ran.
		Reply: func(r []byte) bool { return !bytes.HasPrefix(r, []byte("-NOSCRIPT")) },
	}
	read := cutRead()
	read.Next = claim
	keyOrderAcrossLostRead(t, srv, client, func() { proxy.Arm(read) }, func() bool { return proxy.Cuts() == 2 })
}

// A read of new entries whose connection breaks after Redis ran it fails
// with an error that says it may have run (sendonce.Unsent is false), and is
// not resent: a resent read would have come back empty (redis.Nil), the
// first one's entry pending unseen.
func TestCutGroupReadIsSentOnce(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	proxy := testredis.NewCutProxy(t, srv.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	stream := testredis.Prefix(t) + "s"
	c := srv.Client(t)
	if err := c.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"a", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	r := &engine{client: client}
	r.cfg.Group, r.cfg.Consumer = "g", "c"
	proxy.Arm(cutRead())
	var g groupReader
	_, err := g.read(ctx, r, stream, 10, time.Second)
	switch {
	case errors.Is(err, redis.Nil):
		t.Errorf("a read through a cut connection = %v: it was resent, and found the entry the first one took pending", err)
	case err == nil || sendonce.Unsent(err):
		t.Errorf("a read through a cut connection = %v, unsent %t; want an error that may have been sent", err, sendonce.Unsent(err))
	}
	if n := c.XPending(ctx, stream, "g").Val().Count; n != 1 {
		t.Errorf("%d entries pending after the cut read, want 1: it ran once, and was not resent", n)
	}
	if proxy.Cuts() != 1 {
		t.Errorf("the proxy cut %d reads, want 1", proxy.Cuts())
	}
}

// A failed read or replay claim holds an ordered partition's reads back
// only when it may have given this consumer entries: it reached Redis, and
// Redis did not answer it with an error (which a failover's CLUSTERDOWN is:
// it must not put off the replay a cut read set up).
func TestArmResyncOnlyWhenEntriesMayHaveComeUnseen(t *testing.T) {
	t.Parallel()
	r := &engine{order: newOrderGate(gateDeps{}, []string{"p"})}
	r.cfg.ReclaimMinIdle = time.Minute
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, c := range []struct {
		stream string
		err    error
		arm    bool
	}{
		{"p", io.EOF, true},
		{"p", fmt.Errorf("claiming pending entries: %w", io.EOF), true},
		{"p", context.DeadlineExceeded, true},
		{"p", refused, false},
		{"p", redis.ErrPoolTimeout, false},
		{"p", replyError("CLUSTERDOWN The cluster is down"), false},
		{"p", fmt.Errorf("claiming pending entries: %w", replyError("NOPERM this user has no permissions")), false},
		{"unordered", io.EOF, false},
	} {
		f := &fetcher{r: r, s: &streamState{name: c.stream}}
		f.armResync(c.err)
		if got := !f.resyncAt.IsZero(); got != c.arm {
			t.Errorf("stream %s, error %v: resync armed %t, want %t", c.stream, c.err, got, c.arm)
		}
	}
}

// A keyed message that waited behind its key for a lease period is
// confirmed as this consumer's before it runs. When Redis does not answer
// that confirmation (a primary failing over), the message is not left out
// for a reclaim pass, which would run it after the key's later messages:
// it is tried again, and the key's later messages wait behind it.
func TestUnconfirmedMessageKeepsItsKeyOrder(t *testing.T) {
	t.Parallel()
	u := startUnconfirmed(t)
	if u.ran(3) {
		t.Fatalf("the key's third message ran while its second waited to be confirmed (order %v)", u.order())
	}
	u.failing.Store(false)
	eventually(t, "all three messages run", func() bool { return u.ran(2) && u.ran(3) })
	if got := u.order(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("the key's messages ran in the order %v, want [1 2 3]", got)
	}
}

// Shutdown does not wait for such a confirmation: the key is given up, its
// message and the key's later ones left pending, unrun, for the next owner.
func TestUnconfirmedMessageGivesItsKeyUpAtShutdown(t *testing.T) {
	t.Parallel()
	u := startUnconfirmed(t)
	if err := u.h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := u.order(); !slices.Equal(got, []int{1}) {
		t.Fatalf("the key's messages ran in the order %v, want [1] (the second unconfirmed, the third behind it)", got)
	}
	if p := pendingIn(t, u.c, u.stream, u.h.cfg.Group, u.h.cfg.Partitions); p != 2 {
		t.Fatalf("%d entries pending after shutdown, want 2: the second and third message, for the next owner", p)
	}
}

// unconfirmed is a worker whose key k0 has run its first message, whose
// second waited a lease period behind it and now waits for a confirmation
// Redis does not answer (every command about it cut while failing), and
// whose third waits behind the second.
type unconfirmed struct {
	h       *harness
	c       *redis.Client // straight to Redis
	stream  string
	failing *atomic.Bool
	mu      sync.Mutex
	seqs    []int // the key's messages, in the order they started
}

func (u *unconfirmed) order() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seqs)
}

func (u *unconfirmed) ran(seq int) bool { return slices.Contains(u.order(), seq) }

func startUnconfirmed(t *testing.T) *unconfirmed {
	t.Helper()
	srv := testredis.Shared(t)
	proxy := testredis.NewCutProxy(t, srv.Addr)
	// Not resent by go-redis: each call cut is one failure the worker sees.
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	cfg := partitionedConfig(t, srv, 2, "c1")
	cfg.ReclaimMinIdle = 2 * time.Second // a lease period of 500 ms
	cfg.ReclaimInterval = time.Minute    // no reclaim pass within the test: one would run a message left out
	cfg.ConsumerGoneAfter = 3 * time.Minute
	u := &unconfirmed{c: srv.Client(t), stream: cfg.Streams[0], failing: &atomic.Bool{}}
	const key = "k0"
	started := make(chan struct{})
	release := make(chan struct{})
	mux := NewMux()
	mux.HandleFunc("keyed", func(_ context.Context, m *Message) error {
		seq, _ := strconv.Atoi(string(m.Data))
		u.mu.Lock()
		u.seqs = append(u.seqs, seq)
		u.mu.Unlock()
		if seq == 1 {
			close(started)
			<-release
		}
		return nil
	})
	u.h = startWorker(t, srv, cfg, mux, WithRedis(client))
	publishKeyed(t, u.c, u.stream, cfg.Partitions, "keyed", key, 1)
	<-started
	second := publishKeyed(t, u.c, u.stream, cfg.Partitions, "keyed", key, 2)
	// Every command about the second message fails from now on, its
	// reply cut: the gate's renewals of its lease while it waits, then
	// its confirmation.
	u.failing.Store(true)
	cut := &testredis.Cut{Cmd: func(c []byte) bool { return u.failing.Load() && bytes.Contains(c, []byte(second)) }}
	cut.Next = cut
	proxy.Arm(cut)
	eventually(t, "a renewal of the waiting message's lease cut", func() bool { return proxy.Cuts() > 0 })
	cuts := proxy.Cuts()
	close(release)
	// At most one renewal was on its way: the rest are its confirmation,
	// tried again (left out, the message would be cut once).
	eventually(t, "the waiting message's confirmation tried again", func() bool { return proxy.Cuts() >= cuts+3 })
	publishKeyed(t, u.c, u.stream, cfg.Partitions, "keyed", key, 3)
	cuts = proxy.Cuts()
	eventually(t, "the confirmation tried again after the third message came", func() bool { return proxy.Cuts() >= cuts+2 })
	return u
}

package worker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/internal/testredis"
)

// cutProxy is a TCP proxy in front of Redis. Armed, it cuts the connection
// of the next XREADGROUP that delivers entries once Redis has answered it,
// without passing the answer on: Redis ran the read, its entries are
// pending for the reader, and the reader's connection breaks after the
// command went out, as when a primary dies mid-read. That is the failure
// go-redis answers by resending the command on a new connection.
type cutProxy struct {
	ln       net.Listener
	upstream string
	armed    atomic.Bool
	cut      atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newCutProxy(t *testing.T, upstream string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		var reading atomic.Bool // the command awaiting its reply is an XREADGROUP of new entries
		p.wg.Add(2)
		go func() { // commands
			defer p.wg.Done()
			defer server.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					cmd := bytes.ToLower(buf[:n])
					reading.Store(bytes.Contains(cmd, []byte("xreadgroup")) && bytes.Contains(cmd, []byte("\r\n>\r\n")))
					_, _ = server.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // replies
			defer p.wg.Done()
			defer client.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && reading.Load() && !nullReply(buf[:n]) && p.armed.CompareAndSwap(true, false) {
					p.cut.Add(1)
					_ = server.Close()
					return
				}
				if n > 0 {
					_, _ = client.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// nullReply reports whether a reply is RESP3's or RESP2's null: a read that
// found nothing.
func nullReply(b []byte) bool {
	return bytes.HasPrefix(b, []byte("_\r\n")) || bytes.HasPrefix(b, []byte("*-1\r\n"))
}

func (p *cutProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A read whose connection breaks after Redis ran it is not resent: go-redis
// would resend it (its MaxRetries are left at their default here), the
// resent read would deliver the keys' later messages, and those the first
// one delivered would stay pending, unseen, until a reclaim ran them out of
// order. The failure reaches the fetcher instead, which runs them first.
func TestCutReadIsNotResent(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	proxy := newCutProxy(t, srv.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.ln.Addr().String()})
	t.Cleanup(func() { _ = client.Close() })
	keyOrderAcrossLostRead(t, srv, client, func() { proxy.armed.Store(true) }, func() bool { return proxy.cut.Load() > 0 })
}

// A read of new entries whose connection breaks after Redis ran it fails
// with an error that says it may have run (sendonce.Unsent is false), and is
// not resent: a resent read would have come back empty (redis.Nil), the
// first one's entry pending unseen.
func TestCutGroupReadIsSentOnce(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	proxy := newCutProxy(t, srv.Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.ln.Addr().String()})
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
	proxy.armed.Store(true)
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
	if proxy.cut.Load() != 1 {
		t.Errorf("the proxy cut %d reads, want 1", proxy.cut.Load())
	}
}

package producer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/streamworker/streamworker/internal/testredis"
)

// replyProxy is a TCP proxy in front of Redis that forwards every command.
// A dropper (newReplyDropper) forwards every reply until the connection has
// sent a write (XADD, ZADD), and drops its replies from then on: each write
// happens and its client never learns so, as when a connection breaks after
// the command went out; a client that resent the write, on a new
// connection, would write it again. A holder (newReplyHolder) forwards
// every reply until hold is set, and from then on holds each back until
// release is closed.
type replyProxy struct {
	ln        net.Listener
	upstream  string
	dropAfter bool // a dropper
	hold      atomic.Bool
	release   chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []*proxied
}

type proxied struct {
	client, server net.Conn
	drop           atomic.Bool
}

func newReplyDropper(t *testing.T, upstream string) *replyProxy {
	return newReplyProxy(t, upstream, true)
}

func newReplyHolder(t *testing.T, upstream string) *replyProxy {
	return newReplyProxy(t, upstream, false)
}

func newReplyProxy(t *testing.T, upstream string, dropAfter bool) *replyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &replyProxy{ln: ln, upstream: upstream, dropAfter: dropAfter, release: make(chan struct{})}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(d.close)
	return d
}

func (d *replyProxy) accept() {
	defer d.wg.Done()
	for {
		client, err := d.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", d.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p := &proxied{client: client, server: server}
		d.mu.Lock()
		d.conns = append(d.conns, p)
		d.mu.Unlock()
		d.wg.Add(2)
		go func() { // commands: forwarded until the client hangs up
			defer d.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && d.dropAfter && isWrite(buf[:n]) {
					p.drop.Store(true) // before Redis can answer
				}
				if n > 0 {
					_, _ = server.Write(buf[:n])
				}
				if err != nil {
					_ = server.Close()
					return
				}
			}
		}()
		go func() { // replies: forwarded unless dropped, once released when held
			defer d.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && d.hold.Load() {
					<-d.release
				}
				if n > 0 && !p.drop.Load() {
					_, _ = client.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func isWrite(cmd []byte) bool {
	cmd = bytes.ToLower(cmd)
	return bytes.Contains(cmd, []byte("xadd")) || bytes.Contains(cmd, []byte("zadd"))
}

// releaseReplies lets the replies held, and those to come, through.
func (d *replyProxy) releaseReplies() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.release:
	default:
		close(d.release)
	}
}

// close stops the proxy, releasing held replies, once everything a client
// sent has reached Redis.
func (d *replyProxy) close() {
	d.releaseReplies()
	_ = d.ln.Close()
	d.mu.Lock()
	for _, p := range d.conns {
		// Ends the command copier after what it has read; it then closes
		// the server side, which ends the reply copier.
		_ = p.client.(*net.TCPConn).CloseRead()
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	for _, p := range d.conns {
		_ = p.client.Close()
	}
	d.mu.Unlock()
}

// A write whose reply is lost happened exactly once: the producer reports
// the timeout and does not resend it.
func TestLostReplyIsNotResent(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	admin := srv.Client(t)
	ctx := context.Background()
	stream := testredis.Prefix(t) + "s"
	d := newReplyDropper(t, srv.Addr)
	client, err := NewClient("redis://" + d.ln.Addr().String() + "/0?read_timeout=200ms")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p := New(client, Options{})

	_, err = p.Publish(ctx, stream, Event{Type: "one"})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Publish = %v, want a read timeout", err)
	}
	_, err = p.PublishBatch(ctx, stream, []Event{{Type: "batch"}, {Type: "batch"}, {Type: "batch"}})
	var berr *BatchError
	if !errors.As(err, &berr) || berr.Failed != 3 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PublishBatch = %v, want all 3 writes unconfirmed by a timeout", err)
	}
	_, err = p.PublishItems(ctx, stream, []Item{{Event: Event{Type: "item"}}})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PublishItems = %v, want a read timeout", err)
	}
	sent, err := p.SendItems(ctx, stream, []Item{{Event: Event{Type: "sent"}}, {Event: Event{Type: "sent"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sent.Wait(); !errors.As(err, &berr) || berr.Failed != 2 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("SendItems then Wait = %v, want both writes unconfirmed by a timeout", err)
	}
	d.close() // every command the client sent has now reached Redis

	if n := admin.XLen(ctx, stream).Val(); n != 7 {
		t.Errorf("stream has %d entries, want 7: each write once, none resent", n)
	}
}

package testredis

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// CutProxy is a TCP proxy in front of a Redis. Armed with a Cut, it cuts
// the connection of the next command the Cut matches once Redis has
// answered it, without passing the answer on: Redis ran the command (a
// read's entries are pending for the reader, a claim's entries are
// claimed), and the client's connection breaks after the command went out,
// as when a primary dies mid-command. That is the failure go-redis answers
// by resending the command on a new connection, unless told not to.
type CutProxy struct {
	ln       net.Listener
	upstream string
	armed    atomic.Pointer[Cut]
	cuts     atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// Cut is a command a CutProxy cuts, and the Cut it arms next once it has.
type Cut struct {
	Cmd   func(cmd []byte) bool   // the command as sent, lower-cased
	Reply func(reply []byte) bool // Redis's reply to it; nil: any
	Next  *Cut
}

// CutCommand cuts the next command whose name or arguments hold s
// (lower-case).
func CutCommand(s string) *Cut {
	return &Cut{Cmd: func(c []byte) bool { return bytes.Contains(c, []byte(s)) }}
}

// NewCutProxy starts a proxy to upstream (host:port), closed at the end of
// the test.
func NewCutProxy(t testing.TB, upstream string) *CutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{ln: ln, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port, for the client under test.
func (p *CutProxy) Addr() string { return p.ln.Addr().String() }

// Arm makes c the next command to cut.
func (p *CutProxy) Arm(c *Cut) { p.armed.Store(c) }

// Cuts is how many commands the proxy has cut.
func (p *CutProxy) Cuts() int { return int(p.cuts.Load()) }

func (p *CutProxy) accept() {
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
		var cutting atomic.Pointer[Cut] // the armed cut, when it matched the command awaiting its reply
		p.wg.Add(2)
		go func() { // commands
			defer p.wg.Done()
			defer server.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					c := p.armed.Load()
					if c != nil && !c.Cmd(bytes.ToLower(buf[:n])) {
						c = nil
					}
					cutting.Store(c)
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
				if c := cutting.Load(); n > 0 && c != nil && (c.Reply == nil || c.Reply(buf[:n])) && p.armed.CompareAndSwap(c, c.Next) {
					p.cuts.Add(1)
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

func (p *CutProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

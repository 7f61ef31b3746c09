package testredis

import (
	"syscall"
	"testing"
)

// Pause freezes the server with SIGSTOP, as a host paused, a stalled fork
// or a long DEBUG SLEEP would: connections stay open, nothing is answered
// and nothing is refused. Resume (or the end of the test) thaws it.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if s.docker != nil {
		t.Skip("pausing a containerised redis is not supported; needs redis-server on PATH")
	}
	s.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { s.signal(t, syscall.SIGCONT) })
}

// Resume thaws a server frozen by Pause.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		t.Fatalf("testredis: no redis-server process to signal")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Logf("signalling redis-server %s: %v", s.Addr, err)
	}
}

// Package redisserver runs the one Redis every benchmark talks to: a
// throwaway redis-server without persistence on a free loopback port.
package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is the Redis the benchmarks talk to: a redis-server this package
// started, or an existing one named by BENCH_REDIS_URL (Start only).
type Server struct {
	// Addr is host:port.
	Addr string

	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// Start starts a throwaway redis-server, or, when BENCH_REDIS_URL is set,
// uses that server instead (its CPU is then not measured). The server
// outlives ctx, which bounds the start only; Stop ends it.
func Start(ctx context.Context) (*Server, error) {
	if u := os.Getenv("BENCH_REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("BENCH_REDIS_URL=%q: %w", u, err)
		}
		return &Server{Addr: opt.Addr}, nil
	}
	return StartOwn(ctx)
}

// StartOwn starts a throwaway redis-server without persistence on a free
// loopback port, whatever BENCH_REDIS_URL says: for a harness that flushes
// the server between runs. The server outlives ctx, which bounds the start
// only; Stop ends it.
func StartOwn(ctx context.Context) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server is not on PATH: install it (apt-get install redis-server) or set BENCH_REDIS_URL")
	}
	dir, err := os.MkdirTemp("", "streamworker-bench-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // a free port can be taken between finding and binding it
		port, err := freePort(ctx)
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
		if lastErr = s.launch(ctx, port); lastErr == nil {
			return s, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func (s *Server) launch(ctx context.Context, port int) error {
	logPath := filepath.Join(s.dir, "redis.log")
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "redis-server",
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", logPath, "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	if err := s.waitReady(ctx); err != nil {
		s.kill()
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("redis-server on %s did not start: %w\n%s", s.Addr, err, log)
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("process exited")
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err = c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond) // polling a starting process, with a deadline
	}
	return err
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Pid is the redis-server's process ID, 0 for an external server.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop kills a server this package started and removes its directory. It
// is safe to call more than once and on an external server.
func (s *Server) Stop() {
	s.kill()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *Server) kill() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

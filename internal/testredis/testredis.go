// Package testredis gives tests a real Redis: a throwaway redis-server process
// on a free loopback port (or the server named by TEST_REDIS_URL, or a Docker
// container through dockertest when Docker is all the machine has). Tests share
// one server per package and isolate themselves with random key prefixes, so
// they can run in parallel; tests that kill or restart Redis start their own.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// Server is one Redis the tests talk to.
type Server struct {
	// Addr is host:port.
	Addr string

	external bool
	args     []string
	dir      string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	docker *dockerRedis
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Main runs a package's tests, stops the shared server afterwards, and checks
// that no goroutine outlived the tests. Call it from TestMain.
func Main(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if shared != nil {
		shared.stop()
		_ = os.RemoveAll(shared.dir)
	}
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Shared returns the package's Redis, starting it on first use. It honours
// TEST_REDIS_URL. Never kill or flush it: other tests run against it.
func Shared(t testing.TB) *Server {
	t.Helper()
	s, err := sharedServer()
	if err != nil {
		t.Fatalf("starting shared redis: %v", err)
	}
	return s
}

func sharedServer() (*Server, error) {
	sharedOnce.Do(func() {
		if u := os.Getenv("TEST_REDIS_URL"); u != "" {
			opt, err := redis.ParseURL(u)
			if err != nil {
				sharedErr = fmt.Errorf("TEST_REDIS_URL=%q: %w", u, err)
				return
			}
			shared = &Server{Addr: opt.Addr, external: true}
			return
		}
		dir, err := os.MkdirTemp("", "testredis-shared-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = start(dir, nil)
	})
	return shared, sharedErr
}

// Start starts a Redis of the test's own, stopped when the test ends; extra
// arguments go to redis-server (for example "--appendonly", "yes").
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := start(t.TempDir(), args)
	if err != nil {
		t.Fatalf("starting redis: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

func start(dir string, args []string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return startDocker(args)
	}
	return startWith(dir, args, nil)
}

// startWith starts redis-server on a free port for which portOK (when not
// nil) also holds. A leading argument that is a file (a config file) stays
// first, as redis-server requires.
func startWith(dir string, args []string, portOK func(int) bool) (*Server, error) {
	var lastErr error
	for range 20 { // a free port can be taken between finding and binding it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if portOK != nil && !portOK(port) {
			continue
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: args, dir: dir}
		s.logPath = filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
		if lastErr = s.launch(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *Server) launch() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	extra := s.args
	if len(extra) > 0 && strings.HasSuffix(extra[0], ".conf") {
		args, extra = append(args, extra[0]), extra[1:]
	}
	args = append(args,
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", s.logPath, "--daemonize", "no")
	args = append(args, extra...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("redis-server on %s did not start: %w\n%s", s.Addr, err, log)
	}
	return nil
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err = c.Ping(ctx).Err()
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

// Client returns a client closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// alive reports whether the server process is running.
func (s *Server) alive() bool {
	if s.external || s.docker != nil {
		return true
	}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill stops the server at once with SIGKILL, as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if s.docker != nil {
		s.docker.kill(t)
		return
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a killed server again on the same port and data directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if s.docker != nil {
		t.Skip("restarting a containerised redis keeps no fixed port; needs redis-server on PATH")
	}
	if err := s.launch(); err != nil {
		t.Fatalf("restarting redis: %v", err)
	}
}

func (s *Server) mustOwn(t testing.TB) {
	if s.external || s == shared {
		t.Fatalf("testredis: kill or restart only a server from Start, not the shared one")
	}
}

func (s *Server) stop() {
	if s.docker != nil {
		s.docker.purge()
		return
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Prefix returns a random key prefix for one test, so tests sharing a server
// never see each other's keys.
func Prefix(t testing.TB) string {
	t.Helper()
	return "t" + RandomID() + ":"
}

// RandomID returns 8 random hex characters.
func RandomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MustShared is Shared for code that has no testing.TB, such as Example
// functions and TestMain: it panics when no server can be started.
func MustShared() *Server {
	s, err := sharedServer()
	if err != nil {
		panic("testredis: starting shared redis: " + err.Error())
	}
	return s
}

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamworker/streamworker/wire"
)

// testWeb runs streamctl web as an operator would and talks to it as curl
// does: the pages name the streams, a change without a token is refused, the
// security headers are there, and SIGTERM stops it with exit status 0.
func testWeb(t *testing.T, c *binary) {
	f := c.fixture(t)
	f.add(f.stream, "type", "order.created")
	f.group("workers")
	dead := f.dead("order.paid", "<b>declined</b>")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "web", "--addr", "127.0.0.1:0")
	cmd.Env = []string{"GORACE=halt_on_error=1", "REDIS_URL=" + c.redisURL, "STREAMCTL_WEB_TOKEN=ops:0123456789abcdef0123"}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("streamctl web said nothing: %v", lines.Err())
	}
	m := regexp.MustCompile(`serving the dashboard on (http://127\.0\.0\.1:\d+), changes allowed for tokens: ops$`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("first line %q", lines.Text())
	}
	rest := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stderr); rest <- string(b) }()
	base := m[1]

	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for path, want := range map[string]string{
		"/":                     f.stream,
		"/stream?s=" + f.stream: "workers",
		"/dlq?s=" + f.stream:    "&lt;b&gt;declined&lt;/b&gt;",
	} {
		code, body, h := get(path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d, want 200 with %q", path, code, want)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: security headers missing: %v", path, h)
		}
	}
	resp, err := http.Post(base+"/dlq/action", "application/x-www-form-urlencoded",
		strings.NewReader("s="+f.stream+"&do=purge-selected&confirm=yes&id="+dead))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without a token = %d, want 403", resp.StatusCode)
	}
	if n := f.c.XLen(f.ctx, wire.DeadLetterKey(f.stream)).Val(); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("streamctl web after SIGTERM: %v", err)
	}
	log := <-rest
	if !strings.Contains(log, "request refused") || strings.Contains(log, "declined") {
		t.Errorf("log: want the refusal and no field of an entry:\n%s", log)
	}
}

func testWebUsage(t *testing.T, c *binary) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"BadAddr", []string{"web", "--addr", "8090"}, nil, "streamctl: --addr \"8090\": want host:port, e.g. 127.0.0.1:8090\n"},
		{"ShortToken", []string{"web"}, []string{"STREAMCTL_WEB_TOKEN=ops:short"}, "streamctl: STREAMCTL_WEB_TOKEN: token 1 (ops): the secret has 5 bytes; at least 16 are needed (e.g. openssl rand -hex 32)\n"},
		{"BadGoneAfter", []string{"web"}, []string{"WORKER_CONSUMER_GONE_AFTER=soon"}, "streamctl: WORKER_CONSUMER_GONE_AFTER=\"soon\": want a positive duration such as 1h (the workers' setting)\n"},
		{"FastSampling", []string{"web", "--sample-every", "10ms"}, nil, "streamctl: --sample-every 10ms: at least 1s\n"},
		{"Argument", []string{"web", "now"}, nil, "streamctl: unexpected argument \"now\" (every input is a flag)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, tc.args, tc.env...)
			r.Want(t, 2)
			if want := tc.want + "Run 'streamctl web --help' for usage.\n"; r.Stderr != want {
				t.Errorf("stderr = %q, want %q", r.Stderr, want)
			}
		})
	}
	// An address in use is a runtime failure.
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.run(t, []string{"web", "--addr", ln.Addr().String()}).Want(t, 1, "--addr: listen tcp "+ln.Addr().String())
}

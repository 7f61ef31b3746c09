package compare

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/bench/internal/usage"
)

// Machine is where a run happened and with what.
type Machine struct {
	Commit         string // git describe of the working tree, "-dirty" with uncommitted changes
	CPUs           int    // runtime.NumCPU, what nproc says
	CPUModel       string // /proc/cpuinfo "model name"
	MemTotal       string // /proc/meminfo MemTotal
	Kernel         string
	GoVersion      string
	RedisVersion   string
	RedisAllocator string
	Modules        map[string]string // versions of the systems' modules, from the build info
	LoadStart      float64           // one-minute load average when the run began
	LoadEnd        float64           // and when it ended
	GOMAXPROCS     string            // the GOMAXPROCS environment variable the children inherit; "" when unset
}

func describeMachine(ctx context.Context, admin *redis.Client) (Machine, error) {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		CPUModel:   procField("/proc/cpuinfo", "model name"),
		MemTotal:   memTotal(),
		GoVersion:  runtime.Version(),
		LoadStart:  loadAverage(),
		GOMAXPROCS: os.Getenv("GOMAXPROCS"),
		Modules:    map[string]string{},
		Commit:     gitDescribe(ctx),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	var err error
	if m.RedisVersion, err = infoField(ctx, admin, "server", "redis_version"); err != nil {
		return m, fmt.Errorf("asking redis-server its version: %w", err)
	}
	m.RedisAllocator, _ = infoField(ctx, admin, "memory", "mem_allocator")
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/redis/go-redis/v9", "github.com/hibiken/asynq", "github.com/ThreeDotsLabs/watermill",
				"github.com/ThreeDotsLabs/watermill-redisstream", "gonum.org/v1/plot":
				m.Modules[d.Path] = d.Version
			}
		}
	}
	return m, nil
}

// gitDescribe names the commit of the working directory's tree, or
// "unknown" outside a git checkout.
func gitDescribe(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// procField is the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}

// memTotal is /proc/meminfo's MemTotal in GiB.
func memTotal() string {
	v := procField("/proc/meminfo", "MemTotal") // "24683620 kB"
	var kb int64
	if _, err := fmt.Sscanf(v, "%d kB", &kb); err != nil {
		return v
	}
	return fmtBytes(kb << 10)
}

func loadAverage() float64 { return usage.LoadAverage() }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func fmtBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// fmtDuration rounds d to about three significant digits.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return sig3(d.Seconds()) + " s"
	case d >= time.Millisecond:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	}
	return sig3(float64(d)/float64(time.Microsecond)) + " µs"
}

// sig3 formats v with about three significant digits, without exponent.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v != 0 && math.Abs(v) < 0.1:
		return fmt.Sprintf("%.3f", v) // a small ratio keeps a digit that is not 0
	}
	return fmt.Sprintf("%.2f", v)
}

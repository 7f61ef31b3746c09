// Package usage measures what a phase of a benchmark costs: wall time, CPU of
// this process and of the redis-server, heap allocations, and peak memory.
package usage

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Snapshot is what this process and the Redis server have spent so far. Two
// snapshots around a phase give its Cost.
type Snapshot struct {
	At       time.Time
	CPU      time.Duration // this process, user + system
	RedisCPU time.Duration // the redis-server process, user + system; -1 when unknown
	Mallocs  uint64        // heap objects allocated by this process
	Bytes    uint64        // heap bytes allocated by this process
}

// Measure takes a snapshot. redisPid is the redis-server to include, 0 for
// none. It stops the world briefly (runtime.ReadMemStats), so take it
// outside the hot loop.
func Measure(redisPid int) Snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u := Snapshot{At: time.Now(), CPU: selfCPU(), RedisCPU: -1, Mallocs: ms.Mallocs, Bytes: ms.TotalAlloc}
	if redisPid > 0 {
		if d, err := procCPU(redisPid); err == nil {
			u.RedisCPU = d
		}
	}
	return u
}

// Cost is what one phase spent: the difference of two snapshots.
type Cost struct {
	Wall, CPU, RedisCPU time.Duration // RedisCPU is -1 when unknown
	Mallocs, Bytes      uint64
}

// Sub returns the cost from start to u.
func (u Snapshot) Sub(start Snapshot) Cost {
	c := Cost{
		Wall: u.At.Sub(start.At), CPU: u.CPU - start.CPU, RedisCPU: -1,
		Mallocs: u.Mallocs - start.Mallocs, Bytes: u.Bytes - start.Bytes,
	}
	if u.RedisCPU >= 0 && start.RedisCPU >= 0 {
		c.RedisCPU = u.RedisCPU - start.RedisCPU
	}
	return c
}

// Add sums two costs.
func (c Cost) Add(d Cost) Cost {
	out := Cost{
		Wall: c.Wall + d.Wall, CPU: c.CPU + d.CPU, RedisCPU: -1,
		Mallocs: c.Mallocs + d.Mallocs, Bytes: c.Bytes + d.Bytes,
	}
	if c.RedisCPU >= 0 && d.RedisCPU >= 0 {
		out.RedisCPU = c.RedisCPU + d.RedisCPU
	}
	return out
}

// PeakRSS is the peak resident set size of a process that has exited, in
// bytes (its ru_maxrss), or -1 when the platform does not say.
func PeakRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // kilobytes on Linux
	}
	return -1
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU reads another process's user + system time from /proc. Its
// resolution is one clock tick (10ms), so phases should run for seconds.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields are
	// counted after the last ')', where field 3 (state) comes first.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseInt(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[stime]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad cpu times", pid)
	}
	return time.Duration(u+s) * clockTick, nil
}

// LoadAverage is the machine's one-minute load average, -1 when unknown. A
// run taken while other work keeps the cores busy shows it here.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return -1
	}
	return v
}

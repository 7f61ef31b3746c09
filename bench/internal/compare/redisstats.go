package compare

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CommandStat is Redis's time in one command over a run, from INFO
// commandstats. A script's time (evalsha) holds that of the commands it
// calls, which Redis counts under their own names too.
type CommandStat struct {
	Name  string
	Calls int64
	Usec  int64
}

// commandStats reads INFO commandstats: every command's calls and µs of
// Redis's time so far, by name.
func commandStats(ctx context.Context, c *redis.Client) (map[string]CommandStat, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info), nil
}

// parseCommandStats reads the lines "cmdstat_<name>:calls=N,usec=N,..." of
// INFO commandstats; other lines, and fields it does not know, are skipped.
func parseCommandStats(info string) map[string]CommandStat {
	out := map[string]CommandStat{}
	for _, line := range strings.Split(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		name, ok = strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		s := CommandStat{Name: name}
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "calls":
				s.Calls = n
			case "usec":
				s.Usec = n
			}
		}
		out[name] = s
	}
	return out
}

// commandDelta is what each command added between before and after,
// leaving out those not called; the most time first.
func commandDelta(before, after map[string]CommandStat) []CommandStat {
	var out []CommandStat
	for name, a := range after {
		b := before[name]
		if a.Calls <= b.Calls {
			continue
		}
		out = append(out, CommandStat{Name: name, Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec})
	}
	slices.SortFunc(out, func(x, y CommandStat) int {
		return cmp.Or(cmp.Compare(y.Usec, x.Usec), strings.Compare(x.Name, y.Name))
	})
	return out
}

// commandUsecPerMsg is the µs of Redis's time in command per message of m;
// 0 when it was not called.
func commandUsecPerMsg(m Measurement, command string) float64 {
	for _, s := range m.RedisCommands {
		if s.Name == command && m.N > 0 {
			return float64(s.Usec) / float64(m.N)
		}
	}
	return 0
}

// commandMedian is the median over w's runs of commandUsecPerMsg.
func commandMedian(w Workload, command string) float64 {
	return summarize(each(w.Runs, func(m Measurement) float64 { return commandUsecPerMsg(m, command) })).Median
}

// renderCommandTable writes where Redis's time went per message, by
// command, for the variants ws of one system: the commands that took at
// least 0.01 µs a message in any of them, the most first.
func renderCommandTable(b *strings.Builder, ws []Workload) {
	var cols []Workload
	for _, w := range ws {
		if len(w.Runs) > 0 && len(w.Runs[0].RedisCommands) > 0 {
			cols = append(cols, w)
		}
	}
	if len(cols) == 0 {
		return
	}
	most := map[string]float64{}
	for _, w := range cols {
		for _, m := range w.Runs {
			for _, s := range m.RedisCommands {
				most[s.Name] = max(most[s.Name], commandMedian(w, s.Name))
			}
		}
	}
	var names []string
	for name, v := range most {
		if v >= 0.01 {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(x, y string) int {
		return cmp.Or(cmp.Compare(most[y], most[x]), strings.Compare(x, y))
	})
	fmt.Fprintf(b, "\nWhere Redis's time went over each consume, µs per message (`INFO commandstats` before and after it; median of the runs). A script (`evalsha`) holds the time of the commands it calls, which are counted in their own rows too. Redis CPU is the whole process's, from /proc: commands, the event loop and the sockets.\n\n")
	fmt.Fprintf(b, "| command |")
	for _, w := range cols {
		fmt.Fprintf(b, " %s |", w.Name)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---|", len(cols)))
	for _, name := range names {
		fmt.Fprintf(b, "| %s |", name)
		for _, w := range cols {
			fmt.Fprintf(b, " %s |", fmtMicros(commandMedian(w, name)))
		}
		fmt.Fprintln(b)
	}
	fmt.Fprintf(b, "| Redis CPU |")
	for _, w := range cols {
		fmt.Fprintf(b, " %s |", fmtMicros(summarize(each(w.Runs, Measurement.RedisCPUPerMsg)).Median))
	}
	fmt.Fprintln(b)
}

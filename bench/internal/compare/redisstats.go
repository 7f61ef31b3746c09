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
// leaving out those not called; the most time first. A command whose
// counters went down was reset in between (CONFIG RESETSTAT): all it has
// after is counted.
func commandDelta(before, after map[string]CommandStat) []CommandStat {
	var out []CommandStat
	for name, a := range after {
		d := a
		if b := before[name]; a.Calls >= b.Calls && a.Usec >= b.Usec {
			d.Calls, d.Usec = a.Calls-b.Calls, a.Usec-b.Usec
		}
		if d.Calls > 0 {
			out = append(out, d)
		}
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

// scriptMedian is commandMedian of the script calls: EVALSHA, and EVAL,
// which go-redis sends when Redis does not have the script yet.
func scriptMedian(w Workload) float64 {
	return summarize(each(w.Runs, func(m Measurement) float64 {
		return commandUsecPerMsg(m, "evalsha") + commandUsecPerMsg(m, "eval")
	})).Median
}

// hasCommands reports whether any run of w has Redis's time per command.
func hasCommands(w Workload) bool {
	return slices.ContainsFunc(w.Runs, func(m Measurement) bool { return len(m.RedisCommands) > 0 })
}

// allCommands reports whether every run of w has its commands counted: a
// run without them counts as 0 µs in commandMedian, so a difference taken
// over runs with and without them says nothing.
func allCommands(w Workload) bool {
	return !slices.ContainsFunc(w.Runs, func(m Measurement) bool { return len(m.RedisCommands) == 0 })
}

// renderCommandTable writes where Redis's time went per message, by
// command, for the variants of ws that system ran: the commands that took
// at least 0.01 µs a message in any of them, the most first.
func renderCommandTable(b *strings.Builder, ws []Workload, system string) {
	var cols []Workload
	for _, w := range ws {
		if w.System == system && hasCommands(w) {
			cols = append(cols, w)
		}
	}
	if len(cols) == 0 {
		return
	}
	most := map[string]float64{}
	for _, w := range cols {
		seen := map[string]bool{}
		for _, m := range w.Runs {
			for _, s := range m.RedisCommands {
				if !seen[s.Name] {
					seen[s.Name] = true
					most[s.Name] = max(most[s.Name], commandMedian(w, s.Name))
				}
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
	fmt.Fprintf(b, "\nWhere Redis's time went over each of %s's consumes, µs per message (`INFO commandstats` before and after the consuming child, its start-up and shutdown included; median of the runs). A script (`evalsha`) holds the time of the commands it calls, which are counted in their own rows too. Redis CPU is the whole process's over the timed phase only, from /proc: commands, the event loop and the sockets.\n\n", label(system))
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
		fmt.Fprintf(b, " %s |", fmtMicros(redisCPUMedian(w.Runs)))
	}
	fmt.Fprintln(b)
}

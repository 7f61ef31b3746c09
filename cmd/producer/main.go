// Command producer puts events into streams: one from flags, many from a
// JSONL file or stdin in pipelined batches, or generated load, to a stream or
// to the partitions of a partitioned one. It connects to the worker's stream
// Redis with the worker's settings (REDIS_URL or --redis-url, a Redis Cluster
// or Sentinel). It never resends a write whose reply was lost (that could
// duplicate the event): it reports it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/producer"
)

func main() {
	// go-redis logs failed dials itself; the command reports the error once.
	redis.SetLogger(quietLogger{})
	setGCDefault(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{
		in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv, isTerminal: isTerminal,
		oneProc: func() { oneProcDefault(os.Getenv, runtime.GOMAXPROCS) },
	})
	stop()
	os.Exit(cli.ExitCode("producer", err, os.Stderr))
}

// gcPercent is the garbage collector target the command runs with when
// neither GOGC nor GOMEMLIMIT is set, the worker daemon's
// (worker.DefaultGCPercent) for the same reason: the live heap of send
// --file and load is a few megabytes (the batches being read and sent), so
// at Go's default of 100 they collect every few megabytes of allocation,
// hundreds of times a second at full speed. 400 collects a quarter as often
// for a few more megabytes of memory.
const gcPercent = 400

// setGCDefault sets the garbage collector target to gcPercent unless the
// environment (read through getenv) already says how to collect.
func setGCDefault(getenv func(string) string) {
	if getenv("GOGC") == "" && getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// oneProcDefault runs the process on one P (set(1), runtime.GOMAXPROCS)
// unless the environment (read through getenv) sets GOMAXPROCS. send
// --file calls it: its work is one pipeline in file order (decode a line,
// write its XADD, read the reply), which one core runs at the speed Redis
// takes it, and with more Ps the runtime wakes and spins threads for each
// hand-off between its goroutines, on the cores Redis needs when it runs on
// the same machine. Measured against redis-cli --pipe of the same 1,000,000
// XADDs, one Redis on the same two cores: 2.59 -> 1.92 µs of CPU per event,
// 0.77 -> 0.93x redis-cli's rate (medians of 6 interleaved rounds).
func oneProcDefault(getenv func(string) string, set func(int) int) {
	if getenv("GOMAXPROCS") == "" {
		set(1)
	}
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// stdio is what the process gets from outside besides its arguments.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	getenv   func(string) string
	// isTerminal reports whether progress written to w is seen on a
	// terminal, where it is a progress bar rather than periodic lines.
	isTerminal func(w io.Writer) bool
	// oneProc, when not nil, makes the process run on one P unless told
	// otherwise (oneProcDefault); tests, which share their process, leave
	// it nil.
	oneProc func()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// app holds the settings every subcommand shares.
type app struct {
	io       stdio
	redisURL string
}

// connect returns the client every subcommand uses.
func (a *app) connect() (redis.UniversalClient, error) {
	return producer.Connect(a.io.getenv, a.redisURL)
}

// explain adds to a command's error the setting to check when Redis could
// not be reached: go-redis's dial error names an address, not where the
// command got it from. The setting is shown with its value, the password
// redacted. (When Redis refuses the connection the producer's
// *AccessError names the setting: Options.Settings.)
func (a *app) explain(err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return err
	}
	r := config.RedisEnv(a.io.getenv)
	switch r.RedisMode() {
	case config.ModeCluster:
		return fmt.Errorf("%w (cannot reach Redis: check REDIS_CLUSTER_ADDRS=%q)", err, r.RedisTarget())
	case config.ModeSentinel:
		return fmt.Errorf("%w (cannot reach Redis: check REDIS_SENTINEL_ADDRS=%q and REDIS_SENTINEL_MASTER=%q)",
			err, strings.Join(r.RedisSentinelAddrs, ","), r.RedisSentinelMaster)
	}
	return fmt.Errorf("%w (cannot reach Redis: check the host and port in %s and that Redis is up there)", err, a.urlSetting())
}

// urlSetting names the Redis URL in use and shows it without its password:
// --redis-url="…", REDIS_URL="…", or the default when REDIS_URL is unset.
// The user name, password and database come from it in every mode.
func (a *app) urlSetting() string {
	if a.redisURL != "" {
		return fmt.Sprintf("--redis-url=%q", config.Redact(a.redisURL))
	}
	if u := a.io.getenv("REDIS_URL"); u != "" {
		return fmt.Sprintf("REDIS_URL=%q", config.Redact(u))
	}
	return fmt.Sprintf("REDIS_URL (unset, so %s)", config.RedisEnv(a.io.getenv).RedisURL)
}

func run(ctx context.Context, args []string, sio stdio) error {
	a := &app{io: sio}
	root := &cobra.Command{
		Use:   "producer",
		Short: "Put events into streamworker streams",
		Long: `Put events into streamworker streams: one from flags, many from a JSONL file
or stdin in pipelined batches, or generated load.

` + cli.ConnectionHelp + `

A write whose reply is lost is reported, never resent: give events an id and
let the worker's dedupe window absorb a resend.`,
		Args:          cli.UnknownCommand,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cli.Usagef(cmd, "missing command: send or load") },
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cli.Root(root, args, &a.redisURL)
	root.AddCommand(a.sendCommand(), a.loadCommand())
	root.SetIn(sio.in)
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	return a.explain(root.ExecuteContext(ctx))
}

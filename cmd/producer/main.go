// Command producer puts events into streams: one from flags, many from a
// JSONL file or stdin in pipelined batches, or generated load. It connects to
// the worker's stream Redis: REDIS_URL, or --redis-url. It never resends a
// write whose reply was lost (that could duplicate the event): it reports it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/producer"
)

func main() {
	// go-redis logs failed dials itself; the command reports the error once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv, isTerminal: isTerminal})
	stop()
	os.Exit(exitCode(err, os.Stderr))
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

func run(ctx context.Context, args []string, sio stdio) error {
	a := &app{io: sio}
	root := &cobra.Command{
		Use:   "producer",
		Short: "Put events into streamworker streams",
		Long: `Put events into streamworker streams: one from flags, many from a JSONL file
or stdin in pipelined batches, or generated load.

Connects to the worker's stream Redis with the worker's settings: REDIS_URL
(default redis://127.0.0.1:6379/0) and, for rediss://, REDIS_TLS_CA,
REDIS_TLS_CERT and REDIS_TLS_KEY; --redis-url overrides REDIS_URL.

A write whose reply is lost is reported, never resent: give events an id and
let the worker's dedupe window absorb a resend.`,
		Args:          unknownCommand,
		RunE:          func(cmd *cobra.Command, _ []string) error { return usagef(cmd, "missing command: send or load") },
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// "producer sned --stream x": the unknown command, not its flag.
		if name := subcommandArg(cmd, args); name != "" {
			return unknownCommand(cmd, []string{name})
		}
		return &usageError{cmd: cmd.CommandPath(), err: err}
	})
	root.PersistentFlags().StringVar(&a.redisURL, "redis-url", "", "Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")
	root.AddCommand(a.sendCommand(), a.loadCommand())
	root.SetArgs(args)
	root.SetIn(sio.in)
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	return root.ExecuteContext(ctx)
}

// usageError is a command line that cannot run as given: exit status 2.
type usageError struct {
	cmd string // the command path, for the --help hint
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

// exitError ends the process with code and no further message: what went
// wrong was reported already.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode reports err on stderr and returns the exit status: 0 ok, 1 failure,
// 2 usage (a bad flag, or a bad setting as for the worker), 130 interrupted.
func exitCode(err error, stderr io.Writer) int {
	var uerr *usageError
	var cerr *config.Error
	var xerr *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cerr):
		fmt.Fprintf(stderr, "producer: %v\n", err)
		return 2
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "producer: %v\nRun '%s --help' for usage.\n", err, uerr.cmd)
		return 2
	case errors.As(err, &xerr):
		return xerr.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "producer: interrupted")
		return 130
	default:
		fmt.Fprintf(stderr, "producer: %v\n", err)
		return 1
	}
}

// unknownCommand refuses arguments to a command that only has subcommands.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	cmd.SuggestionsMinimumDistance = 2
	s := cmd.SuggestionsFor(args[0])
	for _, c := range cmd.Commands() { // "replay-all": replay
		if c.IsAvailableCommand() && strings.HasPrefix(args[0], c.Name()) {
			s = append(s, c.Name())
		}
	}
	if len(s) > 0 {
		return usagef(cmd, "unknown command %q for %q; did you mean %q?", args[0], cmd.CommandPath(), s[0])
	}
	return usagef(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
}

// subcommandArg returns the argument in the place of a subcommand of cmd,
// when cmd has subcommands and one was typed: the first argument after
// cmd's own path that is not a flag.
func subcommandArg(cmd *cobra.Command, args []string) string {
	if !cmd.HasSubCommands() {
		return ""
	}
	path := strings.Fields(cmd.CommandPath())[1:]
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "-"):
		case len(path) > 0 && a == path[0]:
			path = path[1:]
		case len(path) == 0:
			for _, c := range cmd.Commands() {
				if c.Name() == a || c.HasAlias(a) {
					return "" // a real subcommand: the flag is what is wrong
				}
			}
			return a
		default:
			return ""
		}
	}
	return ""
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "unexpected argument %q (every input is a flag)", args[0])
	}
	return nil
}

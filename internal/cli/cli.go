// Package cli holds what the command-line tools share: usage errors, exit
// statuses and the checks cobra leaves to its users.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/wire"
)

// UsageError is a command line that cannot run as given: exit status 2.
type UsageError struct {
	Cmd string // the command path, for the --help hint
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError for cmd.
func Usagef(cmd *cobra.Command, format string, args ...any) error {
	return &UsageError{Cmd: cmd.CommandPath(), Err: fmt.Errorf(format, args...)}
}

// ExitError ends the process with code and no further message: what went
// wrong was reported already.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode reports err on stderr, prefixed with the command name, and returns the exit status: 0 ok, 1 failure,
// 2 usage (a bad flag, or a bad setting as for the worker), 130 interrupted.
func ExitCode(name string, err error, stderr io.Writer) int {
	var uerr *UsageError
	var cerr *config.Error
	var xerr *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cerr):
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, uerr.Cmd)
		return 2
	case errors.As(err, &xerr):
		return xerr.Code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, name+": interrupted")
		return 130
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}

// UnknownCommand refuses arguments to a command that only has subcommands.
func UnknownCommand(cmd *cobra.Command, args []string) error {
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
		return Usagef(cmd, "unknown command %q for %q; did you mean %q?", args[0], cmd.CommandPath(), s[0])
	}
	return Usagef(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
}

// SubcommandArg returns the argument in the place of a subcommand of cmd,
// when cmd has subcommands and one was typed: the first argument after
// cmd's own path that is not a flag.
func SubcommandArg(cmd *cobra.Command, args []string) string {
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

// NoArgs refuses positional arguments.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef(cmd, "unexpected argument %q (every input is a flag)", args[0])
	}
	return nil
}

// CheckPartitions refuses a --partitions count out of range, and braces in
// the --stream name of a partitioned stream: its partitions {S:0} … are
// hash tags of their own.
func CheckPartitions(cmd *cobra.Command, stream string, n int) error {
	switch {
	case n < 1 || n > config.MaxPartitions:
		return Usagef(cmd, "--partitions %d: want 1 to %d (1: the stream is not partitioned)", n, config.MaxPartitions)
	case n > 1 && strings.ContainsAny(stream, "{}"):
		return Usagef(cmd, "--stream %q with --partitions %d: a partitioned stream is named without braces, its partitions are %s … %s",
			stream, n, wire.PartitionStream(stream, 0), wire.PartitionStream(stream, n-1))
	}
	return nil
}

// ConnectionHelp is how the command-line tools reach Redis, for their help.
const ConnectionHelp = `Connects to the worker's stream Redis with the worker's settings: REDIS_URL
(default redis://127.0.0.1:6379/0) and, for rediss://, REDIS_TLS_CA,
REDIS_TLS_CERT and REDIS_TLS_KEY; --redis-url overrides REDIS_URL. For a
Redis Cluster set REDIS_CLUSTER_ADDRS (seed nodes, host:port,...); for
Sentinel REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER (and
REDIS_SENTINEL_PASSWORD if the Sentinels have one). REDIS_URL then gives the
user, password and TLS only, its host is not used.`

// Root finishes a tool's root command the way every tool has it: no
// completion command, a misspelt subcommand reported as unknown rather than
// as a flag error of the root, the --redis-url flag into redisURL, and args.
func Root(root *cobra.Command, args []string, redisURL *string) {
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// "producer sned --stream x": the unknown command, not its flag.
		if name := SubcommandArg(cmd, args); name != "" {
			return UnknownCommand(cmd, []string{name})
		}
		return &UsageError{Cmd: cmd.CommandPath(), Err: err}
	})
	root.PersistentFlags().StringVar(redisURL, "redis-url", "", "Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")
	root.SetArgs(args)
}

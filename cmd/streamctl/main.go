// Command streamctl shows and repairs what is happening in streamworker's
// streams: per stream its length, delayed and dead-letter counts, consumer
// groups with pending entries, lag and consumers; the pending entries
// themselves; and the dead-letter stream, whose entries it lists, replays into
// the stream or purges. It connects to the worker's stream Redis: REDIS_URL,
// or --redis-url.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/streamadmin"
)

func main() {
	// go-redis logs failed dials itself; the command reports the error once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{out: os.Stdout, err: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(cli.ExitCode("streamctl", err, os.Stderr))
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// stdio is what the process gets from outside besides its arguments.
type stdio struct {
	out, err io.Writer
	getenv   func(string) string
}

// app holds the settings every subcommand shares.
type app struct {
	io       stdio
	redisURL string
}

// admin connects and returns the Admin every subcommand uses, and the
// function that closes its connection.
func (a *app) admin() (*streamadmin.Admin, func(), error) {
	client, err := producer.Connect(a.io.getenv, a.redisURL)
	if err != nil {
		return nil, nil, err
	}
	return streamadmin.New(client), func() { _ = client.Close() }, nil
}

func run(ctx context.Context, args []string, sio stdio) error {
	a := &app{io: sio}
	root := &cobra.Command{
		Use:   "streamctl",
		Short: "Inspect and repair streamworker streams",
		Long: `Inspect and repair streamworker streams: status of streams, groups and
consumers; pending entries; the dead-letter stream (list, replay, purge).

Connects to the worker's stream Redis with the worker's settings: REDIS_URL
(default redis://127.0.0.1:6379/0) and, for rediss://, REDIS_TLS_CA,
REDIS_TLS_CERT and REDIS_TLS_KEY; --redis-url overrides REDIS_URL.

Exit status: 0 ok, 1 failure, 2 usage.`,
		Args: cli.UnknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef(cmd, "missing command: status, pending or dlq")
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// "producer sned --stream x": the unknown command, not its flag.
		if name := cli.SubcommandArg(cmd, args); name != "" {
			return cli.UnknownCommand(cmd, []string{name})
		}
		return &cli.UsageError{Cmd: cmd.CommandPath(), Err: err}
	})
	root.PersistentFlags().StringVar(&a.redisURL, "redis-url", "", "Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379/0)")
	root.AddCommand(a.statusCommand(), a.pendingCommand(), a.dlqCommand())
	root.SetArgs(args)
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	return root.ExecuteContext(ctx)
}

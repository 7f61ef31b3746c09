package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

func (a *app) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, replay or purge dead letters",
		Long: `List, replay or purge the entries of a stream's dead-letter stream (S:dlq):
the messages the worker gave up on, with the error, the attempts made, the
original entry ID and when they failed. A partitioned stream has a dead-letter
stream per partition: name one partition, such as --stream '{orders:3}'
(streamctl status --partitions N shows which have dead letters).`,
		Args: cli.UnknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef(cmd, "missing command: ls, replay or purge")
		},
	}
	cmd.AddCommand(a.dlqLsCommand(), a.dlqReplayCommand(), a.dlqPurgeCommand())
	return cmd
}

func (a *app) dlqLsCommand() *cobra.Command {
	var (
		stream string
		limit  int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "ls --stream S [--limit N] [--json]",
		Short: "List dead letters, oldest first",
		Example: `  streamctl dlq ls --stream orders
  streamctl dlq ls --stream orders --json | jq -r '.entries[].fields.error'`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkStreamLimit(cmd, stream, limit); err != nil {
				return err
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			entries, total, err := admin.DeadLetters(cmd.Context(), stream, limit)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.io.out, dlqJSON(stream, entries, total))
			}
			writeDLQ(a.io.out, a.io.err, stream, entries, total, limit)
			if total == 0 {
				a.partitionNote(cmd.Context(), stream)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "stream key whose dead letters to list (required)")
	fl.Int64Var(&limit, "limit", 100, "most entries to list")
	fl.BoolVar(&asJSON, "json", false, "print JSON (every field of every entry) instead of a table")
	return cmd
}

func writeDLQ(w, notes io.Writer, stream string, entries []streamadmin.DeadLetter, total, limit int64) {
	key := wire.DeadLetterKey(stream)
	if len(entries) == 0 {
		fmt.Fprintf(w, "no dead letters in %s\n", key)
		return
	}
	t := newTable(w, "ID", "TYPE", "ATTEMPTS", "FAILED AT", "ORIGIN ID", "ERROR")
	for _, e := range entries {
		f := e.Fields
		failed := f[wire.FieldFailedAt]
		if ts, err := time.Parse(time.RFC3339Nano, failed); err == nil {
			failed = ts.UTC().Format(time.RFC3339)
		}
		t.row(e.ID, orDash(f[wire.FieldType]), orDash(f[wire.FieldAttempts]), orDash(failed), orDash(f[wire.FieldOriginID]), clip(orDash(f[wire.FieldError]), 72))
	}
	t.flush()
	if int64(len(entries)) < total {
		fmt.Fprintf(notes, "streamctl: showing %d of %d dead letters (--limit %d)\n", len(entries), total, limit)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type (
	dlqDoc struct {
		Stream  string          `json:"stream"`
		DLQ     string          `json:"dlq"`
		Length  int64           `json:"length"`
		Entries []deadLetterDoc `json:"entries"`
	}
	deadLetterDoc struct {
		ID     string            `json:"id"`
		Fields map[string]string `json:"fields"`
	}
)

func dlqJSON(stream string, entries []streamadmin.DeadLetter, total int64) dlqDoc {
	doc := dlqDoc{Stream: stream, DLQ: wire.DeadLetterKey(stream), Length: total, Entries: make([]deadLetterDoc, 0, len(entries))}
	for _, e := range entries {
		doc.Entries = append(doc.Entries, deadLetterDoc{ID: e.ID, Fields: e.Fields})
	}
	return doc
}

// selection is the --id/--all choice of replay and purge.
type selection struct {
	stream string
	ids    []string
	all    bool
}

func (s *selection) flags(cmd *cobra.Command, verb string) {
	fl := cmd.Flags()
	fl.StringVar(&s.stream, "stream", "", "stream key whose dead letters to "+verb+" (required)")
	fl.StringSliceVar(&s.ids, "id", nil, "dead-letter entry ID to "+verb+"; repeat or comma-separate for several")
	fl.BoolVar(&s.all, "all", false, verb+" every dead letter there is when the command starts")
}

func (s *selection) check(cmd *cobra.Command) error {
	switch {
	case s.stream == "":
		return cli.Usagef(cmd, "--stream is required")
	case s.all && len(s.ids) > 0:
		return cli.Usagef(cmd, "--all and --id cannot be used together")
	case !s.all && len(s.ids) == 0:
		return cli.Usagef(cmd, "name the entries with --id, or use --all")
	}
	for _, id := range s.ids {
		if err := streamadmin.CheckID(id); err != nil {
			return cli.Usagef(cmd, "--id: %v", err)
		}
	}
	return nil
}

func (a *app) dlqReplayCommand() *cobra.Command {
	var sel selection
	cmd := &cobra.Command{
		Use:   "replay --stream S (--id ID... | --all)",
		Short: "Move dead letters back into their stream",
		Long: `Move dead letters back into their stream, to be processed again from attempt 1.
Each move is atomic: the copy is added to the stream without the fields the
worker added when it gave up (error, attempts, failed_at, group, consumer) and
without attempt; origin_id, id, data and the rest are kept; the dead letter is
deleted only once its copy is in. Entries without a type are left where they
are (the worker would dead-letter them again) and make the exit status 1, as
do IDs that are not in the dead-letter stream.`,
		Example: `  streamctl dlq replay --stream orders --id 1795653475376-0
  streamctl dlq replay --stream orders --all`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sel.check(cmd); err != nil {
				return err
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			return a.replay(cmd, admin, sel)
		},
	}
	sel.flags(cmd, "replay")
	return cmd
}

func (a *app) replay(cmd *cobra.Command, admin *streamadmin.Admin, sel selection) error {
	ctx, out, key := cmd.Context(), a.io.out, wire.DeadLetterKey(sel.stream)
	if sel.all {
		n, noType, err := admin.ReplayAll(ctx, sel.stream)
		fmt.Fprintf(out, "replayed %s from %s into %s\n", deadLetters(n), key, sel.stream)
		if err != nil {
			return err
		}
		if len(noType) > 0 {
			return fmt.Errorf("%s without a type field stay in %s (the worker would dead-letter them again; purge them with --id): %s",
				deadLetters(len(noType)), key, strings.Join(noType, ", "))
		}
		return nil
	}
	res, err := admin.Replay(ctx, sel.stream, sel.ids)
	var failed int
	for _, r := range res {
		if r.Outcome == streamadmin.Replayed {
			fmt.Fprintf(out, "replayed %s as %s\n", r.ID, r.NewID)
			continue
		}
		failed++
		fmt.Fprintf(a.io.err, "streamctl: %s: %s\n", r.ID, r.Outcome)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return &cli.ExitError{Code: 1}
	}
	return nil
}

func (a *app) dlqPurgeCommand() *cobra.Command {
	var (
		sel selection
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "purge --stream S (--id ID... | --all) --yes",
		Short: "Delete dead letters for good",
		Long: `Delete dead letters for good. --yes confirms. With --all, the entries there
are when the command starts are deleted; any dead-lettered meanwhile stay.
IDs that are not in the dead-letter stream make the exit status 1.`,
		Example: `  streamctl dlq purge --stream orders --id 1795653475376-0 --yes
  streamctl dlq purge --stream orders --all --yes`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sel.check(cmd); err != nil {
				return err
			}
			if !yes {
				return cli.Usagef(cmd, "purge deletes dead letters for good: add --yes to confirm")
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			ctx, key := cmd.Context(), wire.DeadLetterKey(sel.stream)
			if sel.all {
				n, err := admin.PurgeAll(ctx, sel.stream)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.io.out, "purged %s from %s\n", deadLetters(n), key)
				return nil
			}
			n, missing, err := admin.Purge(ctx, sel.stream, sel.ids)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.out, "purged %s from %s\n", deadLetters(n), key)
			for _, id := range missing {
				fmt.Fprintf(a.io.err, "streamctl: %s: not in %s\n", id, key)
			}
			if len(missing) > 0 {
				return &cli.ExitError{Code: 1}
			}
			return nil
		},
	}
	sel.flags(cmd, "purge")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm: the entries are deleted for good")
	return cmd
}

// deadLetters is "1 dead letter", "2 dead letters".
func deadLetters[N int | int64](n N) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}

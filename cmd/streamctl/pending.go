package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
)

func (a *app) pendingCommand() *cobra.Command {
	var (
		stream, group string
		limit         int64
		asJSON        bool
	)
	cmd := &cobra.Command{
		Use:   "pending --stream S [--group G] [--limit N] [--json]",
		Short: "List entries delivered and not acknowledged",
		Long: `List the pending entries of a stream's consumer group (of every group without
--group), lowest IDs first: the consumer holding each, its idle time, how many
times it was delivered, and its type. An entry trimmed or deleted from the
stream while pending shows as (deleted). For a partitioned stream name one
partition, such as {orders:3}; streamctl status --partitions N lists them.`,
		Example: `  streamctl pending --stream orders
  streamctl pending --stream orders --group workers --limit 1000 --json`,
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
			pending, err := admin.Pending(cmd.Context(), stream, group, limit)
			if err != nil {
				return a.partitionHint(cmd.Context(), err, stream)
			}
			if asJSON {
				return writeJSON(a.io.out, pendingJSON(stream, pending))
			}
			writePending(a.io.out, a.io.err, stream, pending, limit)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "stream key (required)")
	fl.StringVar(&group, "group", "", "consumer group (default: every group)")
	fl.Int64Var(&limit, "limit", 100, "most entries to list per group")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func writePending(w, notes io.Writer, stream string, groups []streamadmin.GroupPending, limit int64) {
	var rows int
	for _, g := range groups {
		rows += len(g.Entries)
	}
	if rows == 0 {
		fmt.Fprintf(w, "nothing pending on stream %q\n", stream)
		return
	}
	t := newTable(w, "GROUP", "ID", "CONSUMER", "IDLE", "DELIVERIES", "TYPE")
	for _, g := range groups {
		for _, e := range g.Entries {
			typ := e.Type
			if e.Deleted {
				typ = "(deleted)"
			}
			t.row(g.Group, e.ID, e.Consumer, age(e.Idle), itoa(e.Deliveries), typ)
		}
	}
	t.flush()
	for _, g := range groups {
		if int64(len(g.Entries)) < g.Total {
			fmt.Fprintf(notes, "streamctl: group %s: showing %d of %d pending entries (--limit %d)\n", printable(g.Group), len(g.Entries), g.Total, limit)
		}
	}
}

type (
	pendingDoc struct {
		Stream string            `json:"stream"`
		Groups []pendingGroupDoc `json:"groups"`
	}
	pendingGroupDoc struct {
		Group   string            `json:"group"`
		Pending int64             `json:"pending"`
		Entries []pendingEntryDoc `json:"entries"`
	}
	pendingEntryDoc struct {
		ID         string `json:"id"`
		Consumer   string `json:"consumer"`
		IdleMS     int64  `json:"idle_ms"`
		Deliveries int64  `json:"deliveries"`
		Type       string `json:"type"`
		Deleted    bool   `json:"deleted"`
	}
)

func pendingJSON(stream string, groups []streamadmin.GroupPending) pendingDoc {
	doc := pendingDoc{Stream: stream, Groups: make([]pendingGroupDoc, 0, len(groups))}
	for _, g := range groups {
		gd := pendingGroupDoc{Group: g.Group, Pending: g.Total, Entries: make([]pendingEntryDoc, 0, len(g.Entries))}
		for _, e := range g.Entries {
			gd.Entries = append(gd.Entries, pendingEntryDoc{
				ID: e.ID, Consumer: e.Consumer, IdleMS: e.Idle.Milliseconds(), Deliveries: e.Deliveries, Type: e.Type, Deleted: e.Deleted,
			})
		}
		doc.Groups = append(doc.Groups, gd)
	}
	return doc
}

// checkStreamLimit refuses a missing --stream and a --limit below 1.
func checkStreamLimit(cmd *cobra.Command, stream string, limit int64) error {
	switch {
	case stream == "":
		return cli.Usagef(cmd, "--stream is required")
	case limit <= 0:
		return cli.Usagef(cmd, "--limit %d: want a positive number", limit)
	}
	return nil
}

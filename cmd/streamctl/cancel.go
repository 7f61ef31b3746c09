package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
)

func (a *app) cancelCommand() *cobra.Command {
	var (
		stream, group string
		asJSON        bool
	)
	cmd := &cobra.Command{
		Use:   "cancel --stream S [--group G] [--json] ID...",
		Short: "Keep events that have not run from running",
		Long: `Keep events that have not run from running. Each ID is an entry ID
(1700000000000-0) or the id field a producer gave an event:

  - A retry or delayed event waiting in S:delayed is removed from it. A retry
    is found by the entry ID that failed or by the event's first entry ID
    (its origin_id); a producer's delayed event by its id field.
  - An entry still in the stream, not yet delivered to the group (queued) or
    delivered and not acknowledged (pending), is marked in S:cancelled. The
    worker that next gets it acknowledges it without running it and counts
    it as cancelled in streamworker_messages_total. The mark holds for every
    group, for 7 days. A handler already running the entry finishes, and a
    worker learns of a mark within a second: a cancel affects entries not
    yet started.
  - An entry delivered to the group and acknowledged is already done.

An id field names delayed events only; name an entry in the stream by its
entry ID. --group (default: $WORKER_GROUP, else workers) is the group whose
progress tells queued, pending and done apart. For a partitioned stream name
one partition, such as --stream '{orders:3}'.

Exit status 0 when every ID was cancelled; 1 when any was already done or
not found (each is said on stderr; --json lists every status).`,
		Example: `  streamctl cancel --stream orders 1700000000000-0 1700000000001-0
  streamctl cancel --stream orders --group billing order-42 --json`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			switch {
			case stream == "":
				return cli.Usagef(cmd, "--stream is required")
			case group == "":
				return cli.Usagef(cmd, "--group is empty: want a consumer group name")
			case len(ids) == 0:
				return cli.Usagef(cmd, "name the events to cancel: entry IDs (1700000000000-0) or event id fields")
			}
			for _, id := range ids {
				if id == "" {
					return cli.Usagef(cmd, "an empty ID: want an entry ID (1700000000000-0) or an event id field")
				}
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			res, err := admin.Cancel(cmd.Context(), stream, group, ids)
			if err != nil {
				return a.partitionHint(cmd.Context(), err, stream)
			}
			if asJSON {
				err = writeJSON(a.io.out, cancelJSON(stream, group, res))
			} else {
				writeCancel(a.io.out, a.io.err, stream, group, res)
			}
			if err != nil {
				return err
			}
			for _, r := range res {
				if !r.Status.Cancelled() {
					if r.Status == streamadmin.CancelNotFound && !asJSON {
						a.partitionNote(cmd.Context(), stream)
					}
					return &cli.ExitError{Code: 1}
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "stream key (required)")
	fl.StringVar(&group, "group", defaultGroup(a.io.getenv), "consumer group whose progress tells queued, pending and done apart")
	fl.BoolVar(&asJSON, "json", false, "print JSON: the status of every ID")
	return cmd
}

// defaultGroup is the worker's group: WORKER_GROUP, else its default.
func defaultGroup(getenv func(string) string) string {
	if g := getenv("WORKER_GROUP"); g != "" {
		return g
	}
	return config.Default().Group
}

func writeCancel(w, notes io.Writer, stream, group string, res []streamadmin.CancelResult) {
	for _, r := range res {
		id := printable(r.ID)
		switch r.Status {
		case streamadmin.CancelledDelayed:
			fmt.Fprintf(w, "cancelled %s: removed %d from %s:delayed\n", id, r.Delayed, printable(stream))
		case streamadmin.CancelledQueued:
			fmt.Fprintf(w, "cancelled %s: queued, marked; a worker will acknowledge it without running it\n", id)
		case streamadmin.CancelledPending:
			fmt.Fprintf(w, "cancelled %s: pending on consumer %s, marked; it is acknowledged without running when next delivered (unless it is running now)\n", id, printable(r.Consumer))
		case streamadmin.AlreadyDone:
			fmt.Fprintf(notes, "streamctl: %s: already done: delivered to group %s and acknowledged; nothing to cancel\n", id, printable(group))
		default:
			fmt.Fprintf(notes, "streamctl: %s: not found: no delayed event has it, and it is no entry of %s\n", id, printable(stream))
		}
	}
}

type (
	cancelDoc struct {
		Stream  string            `json:"stream"`
		Group   string            `json:"group"`
		Results []cancelResultDoc `json:"results"`
	}
	cancelResultDoc struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Delayed  int    `json:"delayed_removed,omitempty"`
		Consumer string `json:"consumer,omitempty"`
	}
)

func cancelJSON(stream, group string, res []streamadmin.CancelResult) cancelDoc {
	doc := cancelDoc{Stream: stream, Group: group, Results: make([]cancelResultDoc, 0, len(res))}
	for _, r := range res {
		doc.Results = append(doc.Results, cancelResultDoc{ID: r.ID, Status: string(r.Status), Delayed: r.Delayed, Consumer: r.Consumer})
	}
	return doc
}

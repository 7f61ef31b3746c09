package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
)

func (a *app) scheduleCommand() *cobra.Command {
	var (
		stream     string
		partitions int
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "schedule --stream S [--partitions N] [--json]",
		Short: "List the periodic events published to a stream, with their last and next tick",
		Long: `List the entries of the periodic events (WORKER_SCHEDULE) published to a stream
(WORKER_SCHEDULE_STREAM, by default the worker's first stream): each entry's
type, spec, time zone and missed-tick policy as the workers running it
registered them in Redis, the last tick published and the next one. An entry
is listed once a worker has started with it; one removed from WORKER_SCHEDULE
stays listed, its last tick no longer moving. With --partitions N the stream
is partitioned, and each entry is beside the partition its events go to.`,
		Example: `  streamctl schedule --stream events
  streamctl schedule --stream orders --partitions 8 --json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stream == "" {
				return cli.Usagef(cmd, "--stream is required")
			}
			if err := cli.CheckPartitions(cmd, stream, partitions); err != nil {
				return err
			}
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			entries, err := admin.Schedule(cmd.Context(), stream, partitions, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.io.out, scheduleJSON(stream, entries))
			}
			writeSchedule(a.io.out, stream, entries)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&stream, "stream", "", "the stream the periodic events go to (required)")
	fl.IntVar(&partitions, "partitions", 1, "the stream is split into this many partitions {S:0}…{S:N-1}, as the worker's WORKER_PARTITIONS")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

// tickTime shows a tick in its entry's zone, or - for none.
func tickTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func writeSchedule(w io.Writer, stream string, entries []streamadmin.ScheduleEntry) {
	if len(entries) == 0 {
		fmt.Fprintf(w, "no periodic events registered for stream %q\n", stream)
		return
	}
	t := newTable(w, "STREAM", "TYPE", "SPEC", "TZ", "MISSED", "LAST", "NEXT")
	for _, e := range entries {
		next := tickTime(e.Next)
		if e.Problem != "" {
			next = "? " + e.Problem
		}
		t.row(e.Stream, e.Type, e.Spec, e.TZ, e.Missed, tickTime(e.Last), next)
	}
	t.flush()
}

type (
	scheduleDoc struct {
		Stream  string             `json:"stream"`
		Entries []scheduleEntryDoc `json:"entries"`
	}
	scheduleEntryDoc struct {
		Stream  string  `json:"stream"`
		Type    string  `json:"type"`
		Spec    string  `json:"spec"`
		TZ      string  `json:"tz"`
		Missed  string  `json:"missed"`
		Last    *string `json:"last"` // RFC 3339; null: none published yet
		Next    *string `json:"next"` // RFC 3339; null: never
		Problem string  `json:"problem,omitempty"`
	}
)

func scheduleJSON(stream string, entries []streamadmin.ScheduleEntry) scheduleDoc {
	doc := scheduleDoc{Stream: stream, Entries: make([]scheduleEntryDoc, 0, len(entries))}
	at := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.Format(time.RFC3339Nano)
		return &s
	}
	for _, e := range entries {
		doc.Entries = append(doc.Entries, scheduleEntryDoc{
			Stream: e.Stream, Type: e.Type, Spec: e.Spec, TZ: e.TZ, Missed: e.Missed,
			Last: at(e.Last), Next: at(e.Next), Problem: e.Problem,
		})
	}
	return doc
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/producer"
)

// sendFlags are the flags of producer send.
type sendFlags struct {
	stream, typ, data, id, key, file string
	delay, uniqueFor                 time.Duration
	maxLen                           int64
	maxPayload, batch, partitions    int
	progressEvery                    time.Duration
}

func (a *app) sendCommand() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send --stream S [--partitions N] (--type T [--data JSON] [--id ID [--unique-for D]] [--key K] [--delay D] | --file F)",
		Short: "Send one event, or every line of a JSONL file or stdin",
		Long: `Send one event from flags, and print its entry ID (or, with --delay, the time
it is due). Or send every line of a JSONL file (--file F, or --file - for stdin),
one JSON object per line:

  {"type": "order.created", "data": {"id": 7}, "id": "order-7", "key": "customer-3", "delay": "30s"}

type is required; data is any JSON and is stored as its JSON text; id (an
idempotency key), key (a partition key), delay and unique_for are optional.
Lines are sent in pipelined batches.

With --unique-for D (a line's "unique_for": "D") the event is added only if no
event with its id was sent with --unique-for to the stream within D; the check
and the append are atomic, so of producers racing with one id exactly one adds
it. A duplicate is not an error: it prints a line saying so (exit 0), and in a
file's closing line it counts as a duplicate, not as sent. It needs an id and
cannot be delayed.
The input is UTF-8; a byte order mark at its start is skipped. A type, id or
key that is not valid UTF-8 is refused, not sent altered.
A line that cannot be sent (bad JSON, no type, data over the cap, a bad delay)
is reported on stderr with its number and skipped; the rest are sent. The last
line gives the counts; the exit status is 1 when any line was rejected.

With --partitions N (N > 1, as the worker's WORKER_PARTITIONS) the stream S
is split into the streams {S:0} … {S:N-1}, and each event goes to one: by its
key (--key, or a line's key), so that events with one key keep their order;
else by its id; else round-robin. S is then named without braces. One event
prints its partition before its entry ID. --key without --partitions only
sets the key field.`,
		Example: `  producer send --stream orders --type order.created --data '{"id":7}'
  producer send --stream orders --type reminder.due --data '{}' --delay 30m
  producer send --stream orders --type report.requested --id report-2026-12-05 --unique-for 24h
  producer send --stream orders --file events.jsonl
  producer send --stream orders --partitions 8 --type order.paid --data '{"id":7}' --key customer-3
  gen-events | producer send --stream orders --file -`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.send(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stream, "stream", "", "stream key to send to (required)")
	fl.StringVar(&f.typ, "type", "", "event type (required without --file)")
	fl.StringVar(&f.data, "data", "", "event payload, JSON")
	fl.StringVar(&f.id, "id", "", "idempotency key (the worker can skip repeats of it)")
	fl.StringVar(&f.key, "key", "", "partition key, sent as the key field: events with one key go to one partition, in order")
	fl.IntVar(&f.partitions, "partitions", 1, "split the stream into this many partitions {S:0}…{S:N-1}, as the worker's WORKER_PARTITIONS")
	fl.DurationVar(&f.delay, "delay", 0, "deliver after this long (e.g. 30s, 5m) via the stream's delayed set")
	fl.DurationVar(&f.uniqueFor, "unique-for", 0, "add the event only if its --id was not sent with --unique-for within this long (e.g. 1h)")
	fl.StringVar(&f.file, "file", "", "JSONL input, one event per line; - for stdin")
	fl.Int64Var(&f.maxLen, "maxlen", 0, "trim the stream to about this many entries (XADD MAXLEN ~); 0 keeps all")
	fl.IntVar(&f.maxPayload, "max-payload", producer.DefaultMaxPayload, "refuse events whose data is over this many bytes")
	fl.IntVar(&f.batch, "batch", 500, "with --file, events per pipelined round trip")
	fl.DurationVar(&f.progressEvery, "progress-every", 2*time.Second, "with --file and no terminal, how often to print a progress line")
	_ = fl.MarkHidden("progress-every")
	return cmd
}

func (a *app) send(cmd *cobra.Command, f *sendFlags) error {
	fl := cmd.Flags()
	switch {
	case f.stream == "":
		return cli.Usagef(cmd, "--stream is required")
	case f.maxLen < 0:
		return cli.Usagef(cmd, "--maxlen %d is negative", f.maxLen)
	case f.maxPayload <= 0:
		return cli.Usagef(cmd, "--max-payload %d: want a positive number of bytes", f.maxPayload)
	case f.delay < 0:
		return cli.Usagef(cmd, "--delay %s is negative", f.delay)
	case fl.Changed("unique-for") && f.uniqueFor < time.Millisecond:
		return cli.Usagef(cmd, "--unique-for %s: want a duration of at least 1ms such as 30s or 1h", f.uniqueFor)
	case fl.Changed("unique-for") && f.file == "" && f.id == "":
		return cli.Usagef(cmd, "--unique-for needs --id: the id is what makes two events the same")
	case fl.Changed("unique-for") && f.delay > 0:
		return cli.Usagef(cmd, "--unique-for cannot be used with --delay: a unique publish appends now")
	}
	if err := cli.CheckPartitions(cmd, f.stream, f.partitions); err != nil {
		return err
	}
	if f.file != "" {
		for _, name := range []string{"type", "data", "id", "key", "delay", "unique-for"} {
			if fl.Changed(name) {
				return cli.Usagef(cmd, "--%s cannot be used with --file: each line gives its own", name)
			}
		}
		if f.batch < 1 || f.batch > 10000 {
			return cli.Usagef(cmd, "--batch %d: want 1 to 10000", f.batch)
		}
	} else {
		switch {
		case f.typ == "":
			return cli.Usagef(cmd, "--type is required (or --file to send a JSONL file)")
		case fl.Changed("data") && !json.Valid([]byte(f.data)):
			return cli.Usagef(cmd, "--data is not valid JSON: %s", jsonError(f.data))
		}
	}

	client, err := a.connect()
	if err != nil {
		return err
	}
	defer client.Close()
	tp, flushTraces, err := a.tracerProvider(cmd.Context())
	if err != nil {
		return err
	}
	defer flushTraces()
	p := producer.New(client, producer.Options{MaxPayload: f.maxPayload, MaxLen: f.maxLen, Partitions: f.partitions, Settings: a.urlSetting(), TracerProvider: tp})
	out := a.io.out
	ctx := cmd.Context()

	if f.file == "" {
		e := producer.Event{Type: f.typ, Data: []byte(f.data), ID: f.id, Key: f.key}
		if err := p.Check(e); err != nil {
			return err // refused before anything is sent
		}
		it, verb := producer.Item{Event: e, UniqueFor: f.uniqueFor}, "sending to"
		if f.delay > 0 {
			it.Due, verb = time.Now().Add(f.delay), "scheduling on"
		}
		res, err := p.PublishItems(ctx, f.stream, []producer.Item{it})
		if err != nil {
			stream := f.stream
			if len(res) == 1 {
				stream = res[0].Stream
			}
			var berr *producer.BatchError
			if errors.As(err, &berr) {
				err = berr.Err
			}
			return fmt.Errorf("%s stream %q: %w", verb, stream, err)
		}
		printed := res[0].ID
		if res[0].Duplicate {
			printed = fmt.Sprintf("duplicate: id %q was sent within %s as entry %s; not added", f.id, f.uniqueFor, res[0].ID)
		}
		if f.delay > 0 {
			printed = it.Due.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
		if f.partitions > 1 {
			printed = res[0].Stream + " " + printed
		}
		fmt.Fprintln(out, printed)
		return nil
	}

	in, name, size := a.io.in, "stdin", int64(-1)
	if f.file != "-" {
		file, err := os.Open(f.file)
		if err != nil {
			return err
		}
		defer file.Close()
		in, name = file, f.file
		if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	if a.io.oneProc != nil {
		a.io.oneProc() // oneProcDefault
	}
	s := &fileSender{
		p: p, stream: f.stream, name: name, batch: f.batch, rejects: a.io.err, now: time.Now,
		progress: newProgress(a.io.err, a.io.isTerminal(a.io.err), size, true, f.progressEvery),
	}
	start := time.Now()
	st, err := s.send(ctx, in)
	s.progress.finish()
	elapsed := time.Since(start)
	var dups string
	if st.duplicates > 0 {
		dups = fmt.Sprintf(", %d duplicates not added", st.duplicates)
	}
	fmt.Fprintf(out, "sent %d, rejected %d (%d lines, %d delayed%s) to stream %q%s in %s, %.0f events/s\n",
		st.sent, st.rejected, st.lines, st.delayed, dups, f.stream, partitionsNote(f.partitions), elapsed.Round(time.Millisecond), float64(st.sent)/elapsed.Seconds())
	if err != nil {
		return err
	}
	if st.rejected > 0 {
		return &cli.ExitError{Code: 1}
	}
	return nil
}

// jsonError says where a JSON text goes wrong.
func jsonError(s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return describeJSONError(err).Error()
	}
	return "not JSON"
}

// partitionsNote is " (N partitions)" for a partitioned stream, for the
// closing line.
func partitionsNote(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%d partitions)", n)
}

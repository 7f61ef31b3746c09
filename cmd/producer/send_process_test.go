package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// entries returns the stream's entries as field maps, oldest first.
func entries(t *testing.T, c *redis.Client, stream string) []map[string]any {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		out[i] = m.Values
	}
	return out
}

// decodeEnvelope decodes a delayed-set member (wire.EncodeEnvelope) into
// its token and fields.
func decodeEnvelope(t *testing.T, s string) (string, map[string]string) {
	t.Helper()
	var parts []string
	for s != "" {
		n, rest, ok := strings.Cut(s, ":")
		l, err := strconv.Atoi(n)
		if !ok || err != nil || l > len(rest) {
			t.Fatalf("malformed envelope at %q", s)
		}
		parts, s = append(parts, rest[:l]), rest[l:]
	}
	fields := map[string]string{}
	for i := 1; i+1 < len(parts); i += 2 {
		fields[parts[i]] = parts[i+1]
	}
	return parts[0], fields
}

func testSendOne(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	r := c.run(t, "", []string{"send", "--stream", stream, "--type", "order.created", "--data", `{"id":7}`, "--id", "order-7"})
	r.Want(t, 0)
	id := strings.TrimSpace(r.Stdout)
	got := rc.XRange(context.Background(), stream, id, id).Val()
	if len(got) != 1 {
		t.Fatalf("stdout %q is not the ID of the new entry; stream: %v", r.Stdout, entries(t, rc, stream))
	}
	want := map[string]any{"type": "order.created", "data": `{"id":7}`, "id": "order-7"}
	if diff := cmp.Diff(want, got[0].Values); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
	if r.Stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.Stderr)
	}

	// --maxlen trims approximately: whole nodes of 100 entries.
	for range 3 {
		lines := strings.Repeat(`{"type":"t"}`+"\n", 150)
		c.run(t, lines, []string{"send", "--stream", stream, "--file", "-", "--maxlen", "10"}).Want(t, 0)
	}
	if n := rc.XLen(context.Background(), stream).Val(); n > 250 {
		t.Errorf("stream length %d after 451 events with --maxlen 10: not trimmed", n)
	}
}

func testSendDelayed(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	before := time.Now()
	r := c.run(t, "", []string{"send", "--stream", stream, "--type", "reminder", "--data", `{"n":1}`, "--id", "k", "--delay", "30m"})
	after := time.Now()
	r.Want(t, 0)
	due, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.Stdout))
	if err != nil {
		t.Fatalf("stdout %q is not the due time: %v", r.Stdout, err)
	}
	if due.Before(before.Add(30*time.Minute).Truncate(time.Millisecond)) || due.After(after.Add(30*time.Minute)) {
		t.Errorf("due %s, want 30m after the run (%s..%s)", due, before, after)
	}
	if n := rc.Exists(context.Background(), stream).Val(); n != 0 {
		t.Error("a delayed event went into the stream at once")
	}
	zs := rc.ZRangeWithScores(context.Background(), wire.DelayedKey(stream), 0, -1).Val()
	if len(zs) != 1 || int64(zs[0].Score) != due.UnixMilli() {
		t.Fatalf("delayed set = %v, want one member scored %d", zs, due.UnixMilli())
	}
	_, fields := decodeEnvelope(t, zs[0].Member.(string))
	if diff := cmp.Diff(map[string]string{"type": "reminder", "data": `{"n":1}`, "id": "k"}, fields); diff != "" {
		t.Errorf("delayed fields (-want +got):\n%s", diff)
	}
}

// badLines are input lines that must be rejected, each with the reason the
// producer gives; they are numbered from 2 in the file testSendFile writes.
var badLines = []struct{ line, reason string }{
	{`{bad`, "invalid JSON at byte 2: invalid character 'b' looking for beginning of object key string"},
	{`{"type":"a"`, "invalid JSON: unexpected end of line"},
	{`{"data":{"x":1}}`, `missing "type"`},
	{`{"type":"","data":1}`, `"type" is empty`},
	{`{"type":5}`, `"type" must be a string, got number`},
	{`{"type":"a","id":7}`, `"id" must be a string, got number`},
	{`{"type":"a","delay":"soon"}`, `bad "delay" "soon": want a duration such as 500ms, 30s or 2h`},
	{`{"type":"a","delay":"-1s"}`, `bad "delay" "-1s": it is negative`},
	{`{"type":"a","delay":30}`, `"delay" must be a string, got number`},
	{`[1,2]`, "want a JSON object, got array"},
	{`"just a string"`, "want a JSON object, got string"},
	{`{"type":"a","tpye":"b"}`, `unknown field "tpye" (want type, data, id, key, delay, unique_for)`},
	{`{"type":"a","key":7}`, `"key" must be a string, got number`},
	{`{"type":"a"} {"type":"b"}`, "more than one JSON value on the line"},
	{`{"type":"a","data":"` + strings.Repeat("x", 100) + `"}`, "event too large: data is 102 bytes, the cap is 100 bytes; store the payload elsewhere and send a reference"},
	{`{"type":"a","data":"` + strings.Repeat("x", 70<<10) + `"}`, "line is 71702 bytes: its data cannot be under the cap of 100 bytes"},
	// encoding/json would send these with U+FFFD in place of what was
	// written; two ids could become one.
	{"{\"type\":\"order.\xffcreated\"}", `"type" is not valid UTF-8: byte 0xff at byte 7 of its value`},
	{"{\"type\":\"a\",\"id\":\"k\xc3\"}", `"id" is not valid UTF-8: byte 0xc3 at byte 2 of its value`},
	{`{"type":"a","key":"\ud800x"}`, `"key" is not valid UTF-16: \ud800 is half of a surrogate pair`},
	{`{"type":"\udc00"}`, `"type" is not valid UTF-16: \udc00 is half of a surrogate pair`},
	{"\xef\xbb\xbf{\"type\":\"a\"}", "invalid JSON at byte 1: invalid character 'ï' looking for beginning of value (a byte order mark is allowed only at the start of the input)"},
}

func testSendFile(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	var in strings.Builder
	in.WriteString(`{"type":"first","data":{"n":1},"id":"k1"}` + "\n")
	var wantErr []string
	for i, b := range badLines {
		in.WriteString(b.line + "\n")
		wantErr = append(wantErr, fmt.Sprintf("%%s: line %d: %s", i+2, b.reason))
	}
	in.WriteString("\n   \n") // blank lines are skipped, not rejected
	in.WriteString(`{"type":"later","data":"x","delay":"1h"}` + "\n")
	in.WriteString(`{"type":"last","data":null,"delay":"0s"}`) // no final newline
	path := writeFile(t, "events.jsonl", in.String())

	r := c.run(t, "", []string{"send", "--stream", stream, "--file", path, "--max-payload", "100"})
	r.Want(t, 1)
	if diff := cmp.Diff(strings.ReplaceAll(strings.Join(wantErr, "\n")+"\n", "%s", path), r.Stderr); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	n := len(badLines)
	wantSummary := fmt.Sprintf("sent 3, rejected %d (%d lines, 1 delayed) to stream %q in ", n, n+3, stream)
	if !strings.HasPrefix(r.Stdout, wantSummary) || strings.Count(r.Stdout, "\n") != 1 {
		t.Errorf("stdout = %q, want one line starting %q", r.Stdout, wantSummary)
	}
	want := []map[string]any{
		{"type": "first", "data": `{"n":1}`, "id": "k1"},
		{"type": "last", "data": "null"},
	}
	if diff := cmp.Diff(want, entries(t, rc, stream)); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
	zs := rc.ZRange(context.Background(), wire.DelayedKey(stream), 0, -1).Val()
	if len(zs) != 1 {
		t.Fatalf("delayed set = %v, want the one delayed line", zs)
	}
	if _, f := decodeEnvelope(t, zs[0]); f["type"] != "later" || f["data"] != `"x"` {
		t.Errorf("delayed event = %v", f)
	}
}

// --unique-for: the first send adds the event, a second one with the id
// prints that it was a duplicate and exits 0; a JSONL file sets it per line.
func testSendUnique(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := "{" + testredis.Prefix(t) + "orders}"
	args := []string{"send", "--stream", stream, "--type", "report.requested", "--data", "{}", "--id", "report-1", "--unique-for", "1h"}
	r := c.run(t, "", args)
	r.Want(t, 0)
	first := strings.TrimSpace(r.Stdout)
	if got := rc.XRange(context.Background(), stream, first, first).Val(); len(got) != 1 {
		t.Fatalf("stdout %q is not the ID of the new entry", r.Stdout)
	}
	r = c.run(t, "", args)
	r.Want(t, 0)
	if want := fmt.Sprintf("duplicate: id \"report-1\" was sent within 1h0m0s as entry %s; not added\n", first); r.Stdout != want {
		t.Errorf("second send printed %q, want %q", r.Stdout, want)
	}
	path := writeFile(t, "unique.jsonl", `{"type":"a","id":"report-1","unique_for":"1h"}
{"type":"a","id":"report-2","unique_for":"1h"}
{"type":"a","id":"report-2","unique_for":"1h"}
{"type":"a","id":"report-2"}
{"type":"a","unique_for":"1h"}
{"type":"a","id":"x","unique_for":"forever"}
{"type":"a","id":"x","unique_for":"1h","delay":"1s"}
`)
	r = c.run(t, "", []string{"send", "--stream", stream, "--file", path})
	r.Want(t, 1)
	wantErr := fmt.Sprintf(`%[1]s: line 5: "unique_for" needs an "id": the id is what makes two events the same
%[1]s: line 6: bad "unique_for" "forever": want a duration of at least 1ms such as 30s, 1h or 24h
%[1]s: line 7: "unique_for" cannot be used with "delay": a unique publish appends now
`, path)
	if diff := cmp.Diff(wantErr, r.Stderr); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	if want := fmt.Sprintf("sent 2, rejected 3 (7 lines, 0 delayed, 2 duplicates not added) to stream %q in ", stream); !strings.HasPrefix(r.Stdout, want) {
		t.Errorf("stdout = %q, want it to start %q", r.Stdout, want)
	}
	if n := rc.XLen(context.Background(), stream).Val(); n != 3 {
		t.Errorf("stream has %d entries, want 3: report-1 once, report-2 once unique and once plain", n)
	}
}

// A UTF-8 byte order mark, which some editors write, may start the input.
func testSendFileBOM(t *testing.T, c *binary) {
	rc := c.client(t)
	const in = "\xef\xbb\xbf" + `{"type":"a","data":"\u00e4"}` + "\n" + `{"type":"b"}` + "\n"
	for _, tc := range []struct{ name, stdin, file string }{
		{"File", "", writeFile(t, "bom.jsonl", in)},
		{"Stdin", in, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := testredis.Prefix(t) + "orders"
			r := c.run(t, tc.stdin, []string{"send", "--stream", stream, "--file", tc.file})
			r.Want(t, 0)
			if !strings.HasPrefix(r.Stdout, "sent 2, rejected 0 (2 lines, 0 delayed)") || r.Stderr != "" {
				t.Errorf("stdout %q, stderr %q", r.Stdout, r.Stderr)
			}
			want := []map[string]any{{"type": "a", "data": `"\u00e4"`}, {"type": "b", "data": ""}}
			if diff := cmp.Diff(want, entries(t, rc, stream)); diff != "" {
				t.Errorf("stream (-want +got):\n%s", diff)
			}
		})
	}
}

func testSendFileAllValid(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	var in strings.Builder
	for i := range 1234 { // more than two batches of 500, CRLF line endings
		fmt.Fprintf(&in, `{"type":"t","data":%d}`+"\r\n", i)
	}
	path := writeFile(t, "all.jsonl", in.String())
	r := c.run(t, "", []string{"send", "--stream", stream, "--file", path})
	r.Want(t, 0)
	if !strings.HasPrefix(r.Stdout, "sent 1234, rejected 0 (1234 lines, 0 delayed)") || r.Stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.Stdout, r.Stderr)
	}
	got := entries(t, rc, stream)
	if len(got) != 1234 {
		t.Fatalf("stream has %d entries, want 1234", len(got))
	}
	for i, e := range got {
		if e["data"] != strconv.Itoa(i) {
			t.Fatalf("entry %d = %v, want data %d: lines out of order", i, e, i)
		}
	}
}

func testSendStdin(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	r := c.run(t, `{"type":"a"}`+"\n"+`{"type":"b","data":[1,2]}`+"\n"+"nope\n", []string{"send", "--stream", stream, "--file", "-"})
	r.Want(t, 1, "stdin: line 3: invalid JSON at byte 2: invalid character 'o' in literal null (expecting 'u')")
	if !strings.HasPrefix(r.Stdout, "sent 2, rejected 1 (3 lines, 0 delayed)") {
		t.Errorf("stdout = %q", r.Stdout)
	}
	want := []map[string]any{{"type": "a", "data": ""}, {"type": "b", "data": "[1,2]"}}
	if diff := cmp.Diff(want, entries(t, rc, stream)); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
}

// Without a terminal, progress is plain lines on stderr.
func testSendFileProgressLines(t *testing.T, c *binary) {
	stream := testredis.Prefix(t) + "orders"
	path := writeFile(t, "in.jsonl", strings.Repeat(`{"type":"t"}`+"\n", 50))
	r := c.run(t, "", []string{"send", "--stream", stream, "--file", path, "--batch", "10", "--progress-every", "1ns"})
	r.Want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	// After each batch sent, a line with the input read up to its end
	// (later batches may be read already, while this one was sent).
	want := []string{
		"producer: sent 10, rejected 0 (20% of input read)",
		"producer: sent 20, rejected 0 (40% of input read)",
		"producer: sent 30, rejected 0 (60% of input read)",
		"producer: sent 40, rejected 0 (80% of input read)",
		"producer: sent 50, rejected 0 (100% of input read)",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("progress lines (-want +got):\n%s", diff)
	}
	if strings.ContainsAny(r.Stderr, "\r|█") {
		t.Errorf("stderr has a progress bar without a terminal: %q", r.Stderr)
	}
}

// A Redis error stops the send: the error names the lines and what was sent.
// The batches behind the failed one may have been on their way already;
// those that were are named too, and counted.
func testSendFileRedisError(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	rc.Set(context.Background(), stream, "not a stream", 0)
	path := writeFile(t, "in.jsonl", strings.Repeat(`{"type":"t"}`+"\n", 30))
	r := c.run(t, "", []string{"send", "--stream", stream, "--file", path, "--batch", "10"})
	r.Want(t, 1, fmt.Sprintf("producer: sending lines 1-10 to stream %q: 10 of 10 writes not confirmed (first: #0): WRONGTYPE", stream),
		"(sent so far: 0; writes Redis did not confirm may or may not have happened, and were not resent)")
	var lines int
	if _, err := fmt.Sscanf(r.Stdout, "sent 0, rejected 0 (%d lines", &lines); err != nil || lines%10 != 0 || lines < 10 {
		t.Fatalf("stdout = %q, want the counts up to the failure (and the batches on their way behind it)", r.Stdout)
	}
	for first := 11; first <= 21; first += 10 {
		named := strings.Contains(r.Stderr, fmt.Sprintf("; lines %d-%d were already on their way: 0 of 10 sent", first, first+9))
		if counted := first < lines; named != counted {
			t.Errorf("lines %d-%d: named on their way %v, counted in stdout %v:\n%s%s", first, first+9, named, counted, r.Stdout, r.Stderr)
		}
	}
}

func testUsageErrors(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	file := writeFile(t, "in.jsonl", `{"type":"t"}`)
	s := []string{"--stream", stream}
	t.Run("Cases", func(t *testing.T) { // returns when its parallel subtests have
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"NoCommand", nil, "producer: missing command: send or load\nRun 'producer --help' for usage."},
			{"UnknownCommand", []string{"sned"}, `unknown command "sned" for "producer"; did you mean "send"?`},
			{"UnknownCommandWithFlags", append([]string{"sned", "--type", "t"}, s...), "producer: unknown command \"sned\" for \"producer\"; did you mean \"send\"?\nRun 'producer --help' for usage."},
			{"UnknownRootFlag", []string{"--bogus", "send"}, "producer: unknown flag: --bogus\nRun 'producer --help' for usage."},
			{"UnknownFlag", []string{"send", "--bogus"}, "producer: unknown flag: --bogus\nRun 'producer send --help' for usage."},
			{"ExtraArgument", append([]string{"send", "--type", "t", "extra"}, s...), `unexpected argument "extra"`},
			{"MissingStream", []string{"send", "--type", "t"}, "--stream is required"},
			{"MissingType", append([]string{"send"}, s...), "--type is required (or --file to send a JSONL file)"},
			{"BadDelay", append([]string{"send", "--type", "t", "--delay", "soon"}, s...), `invalid argument "soon" for "--delay" flag: time: invalid duration "soon"`},
			{"NegativeDelay", append([]string{"send", "--type", "t", "--delay", "-5s"}, s...), "--delay -5s is negative"},
			{"BadData", append([]string{"send", "--type", "t", "--data", "{bad"}, s...), "--data is not valid JSON: invalid JSON at byte 2"},
			{"NegativeMaxLen", append([]string{"send", "--type", "t", "--maxlen", "-1"}, s...), "--maxlen -1 is negative"},
			{"BadMaxLen", append([]string{"send", "--type", "t", "--maxlen", "ten"}, s...), `invalid argument "ten" for "--maxlen" flag`},
			{"ZeroMaxPayload", append([]string{"send", "--type", "t", "--max-payload", "0"}, s...), "--max-payload 0: want a positive number of bytes"},
			{"FileWithType", append([]string{"send", "--file", file, "--type", "t"}, s...), "--type cannot be used with --file: each line gives its own"},
			{"FileWithDelay", append([]string{"send", "--file", file, "--delay", "1s"}, s...), "--delay cannot be used with --file"},
			{"FileWithData", append([]string{"send", "--file", file, "--data", "1"}, s...), "--data cannot be used with --file"},
			{"FileWithID", append([]string{"send", "--file", file, "--id", "k"}, s...), "--id cannot be used with --file"},
			{"ZeroBatch", append([]string{"send", "--file", file, "--batch", "0"}, s...), "--batch 0: want 1 to 10000"},
			{"UniqueForWithoutID", append([]string{"send", "--type", "t", "--unique-for", "1h"}, s...), "producer: --unique-for needs --id: the id is what makes two events the same\nRun 'producer send --help' for usage."},
			{"UniqueForZero", append([]string{"send", "--type", "t", "--id", "k", "--unique-for", "0s"}, s...), "--unique-for 0s: want a duration of at least 1ms such as 30s or 1h"},
			{"UniqueForBad", append([]string{"send", "--type", "t", "--id", "k", "--unique-for", "soon"}, s...), `invalid argument "soon" for "--unique-for" flag`},
			{"UniqueForDelayed", append([]string{"send", "--type", "t", "--id", "k", "--unique-for", "1h", "--delay", "1m"}, s...), "--unique-for cannot be used with --delay: a unique publish appends now"},
			{"FileWithUniqueFor", append([]string{"send", "--file", file, "--unique-for", "1h"}, s...), "--unique-for cannot be used with --file: each line gives its own"},
			{"FileWithKey", append([]string{"send", "--file", file, "--key", "k"}, s...), "--key cannot be used with --file: each line gives its own"},
			{"ZeroPartitions", append([]string{"send", "--type", "t", "--partitions", "0"}, s...), "producer: --partitions 0: want 1 to 1024 (1: the stream is not partitioned)\nRun 'producer send --help' for usage."},
			{"NegativePartitions", append([]string{"send", "--type", "t", "--partitions", "-3"}, s...), "--partitions -3: want 1 to 1024"},
			{"TooManyPartitions", append([]string{"send", "--type", "t", "--partitions", "1025"}, s...), "--partitions 1025: want 1 to 1024"},
			{"BadPartitions", append([]string{"send", "--type", "t", "--partitions", "four"}, s...), `invalid argument "four" for "--partitions" flag`},
			{"PartitionedNameWithBraces", []string{"send", "--stream", "{" + stream + "}", "--type", "t", "--partitions", "4"}, `producer: --stream "{` + stream + `}" with --partitions 4: a partitioned stream is named without braces, its partitions are {{` + stream + `}:0} … {{` + stream + `}:3}`},
			{"LoadPartitionedNameWithBraces", []string{"load", "--stream", "{" + stream + "}", "--type", "t", "--count", "1", "--partitions", "2"}, "a partitioned stream is named without braces"},
			{"LoadZeroPartitions", append([]string{"load", "--type", "t", "--count", "1", "--partitions", "0"}, s...), "--partitions 0: want 1 to 1024"},
			{"LoadMissingStream", []string{"load", "--type", "t", "--count", "1"}, "--stream is required"},
			{"LoadMissingType", append([]string{"load", "--count", "1"}, s...), "--type is required"},
			{"LoadMissingCount", append([]string{"load", "--type", "t"}, s...), "--count is required: want a positive number of events"},
			{"LoadBadCount", append([]string{"load", "--type", "t", "--count", "abc"}, s...), `invalid argument "abc" for "--count" flag`},
			{"LoadNegativeRate", append([]string{"load", "--type", "t", "--count", "1", "--rate", "-1"}, s...), "--rate -1 is negative"},
			{"LoadNaNRate", append([]string{"load", "--type", "t", "--count", "1", "--rate", "NaN"}, s...), "--rate NaN: want 0 (no limit) or 0.001 to 1e+07 events per second"},
			{"LoadInfiniteRate", append([]string{"load", "--type", "t", "--count", "1", "--rate", "+Inf"}, s...), "--rate +Inf: want 0 (no limit) or 0.001 to 1e+07 events per second"},
			{"LoadTinyRate", append([]string{"load", "--type", "t", "--count", "2", "--rate", "1e-300"}, s...), "--rate 1e-300: want 0 (no limit) or 0.001 to 1e+07 events per second"},
			{"LoadHugeRate", append([]string{"load", "--type", "t", "--count", "1", "--rate", "1e9"}, s...), "--rate 1e+09: want 0 (no limit) or 0.001 to 1e+07 events per second"},
			{"LoadNegativeSize", append([]string{"load", "--type", "t", "--count", "1", "--size", "-1"}, s...), "--size -1 is negative"},
			{"LoadZeroConcurrency", append([]string{"load", "--type", "t", "--count", "1", "--concurrency", "0"}, s...), "--concurrency 0: want 1 to 1024"},
			{"LoadSizeOverCap", append([]string{"load", "--type", "t", "--count", "1", "--size", "2000", "--max-payload", "1000"}, s...), "--size 2000 is over the data cap of 1000 bytes (--max-payload)"},
			{"LoadUnknownFlag", append([]string{"load", "--type", "t", "--count", "1", "--sise", "1"}, s...), "unknown flag: --sise\nRun 'producer load --help' for usage."},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := c.run(t, "", tc.args)
				r.Want(t, 2, tc.want)
				if r.Stdout != "" {
					t.Errorf("stdout = %q, want nothing", r.Stdout)
				}
			})
		}
	})
	if n := rc.Exists(context.Background(), stream, wire.DelayedKey(stream)).Val(); n != 0 {
		t.Errorf("a refused command line wrote to Redis")
	}
}

func testFailures(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	t.Run("Cases", func(t *testing.T) { // returns when its parallel subtests have
		for _, tc := range []struct {
			name  string
			args  []string
			env   []string
			wants []string
		}{
			{
				"MissingFile",
				[]string{"send", "--stream", stream, "--file", "/nonexistent/events.jsonl"},
				nil,
				[]string{"producer: open /nonexistent/events.jsonl: no such file or directory"},
			},
			{
				"OversizeData",
				[]string{"send", "--stream", stream, "--type", "t", "--data", `"12345"`, "--max-payload", "4"},
				nil,
				[]string{"data is 7 bytes, the cap is 4 bytes"},
			},
			{
				"OversizeDelayed",
				[]string{"send", "--stream", stream, "--type", "t", "--data", `"12345"`, "--max-payload", "4", "--delay", "1s"},
				nil,
				[]string{"data is 7 bytes, the cap is 4 bytes"},
			},
			{
				"RedisDown",
				[]string{"send", "--stream", stream, "--type", "t"},
				[]string{"REDIS_URL=redis://127.0.0.1:1/0"},
				[]string{"producer: sending to stream", "127.0.0.1:1", "connection refused"},
			},
			{
				"RedisDownLoad",
				[]string{"load", "--stream", stream, "--type", "t", "--count", "10"},
				[]string{"REDIS_URL=redis://127.0.0.1:1/0"},
				[]string{"connection refused"},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := c.run(t, "", tc.args, tc.env...)
				r.Want(t, 1, tc.wants...)
			})
		}
	})
	if n := rc.Exists(context.Background(), stream, wire.DelayedKey(stream)).Val(); n != 0 {
		t.Errorf("a failed command wrote to Redis")
	}
}

// A bad connection setting is a configuration error, exit status 2 as for
// the worker, naming the setting, its value (without the password) and what
// is allowed.
func testConfigErrors(t *testing.T, c *binary) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{
			"BadRedisURL",
			[]string{"send", "--stream", "s", "--type", "t"},
			[]string{"REDIS_URL=http://user:secret@host/0"},
			`producer: REDIS_URL="http://user:xxxxx@host/0" is invalid: want a URL such as redis://host:6379/0 or rediss://user:password@host:6380/0` + "\n",
		},
		{
			"BadRedisURLFlag",
			[]string{"send", "--stream", "s", "--type", "t", "--redis-url", "redis://u:secret@h:1/x"},
			nil,
			`producer: --redis-url="redis://u:xxxxx@h:1/x" is invalid: want a database number after the host, such as /0` + "\n",
		},
		{
			"ClusterAndSentinel",
			[]string{"send", "--stream", "s", "--type", "t"},
			[]string{"REDIS_CLUSTER_ADDRS=127.0.0.1:7000", "REDIS_SENTINEL_ADDRS=127.0.0.1:26379", "REDIS_SENTINEL_MASTER=m"},
			`producer: REDIS_CLUSTER_ADDRS="127.0.0.1:7000" is invalid: want unset while REDIS_SENTINEL_ADDRS or REDIS_SENTINEL_MASTER is set: connect to a Redis Cluster (REDIS_CLUSTER_ADDRS) or to a Sentinel-managed primary (REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER), not both` + "\n",
		},
		{
			"BadClusterAddr",
			[]string{"load", "--stream", "s", "--type", "t", "--count", "1"},
			[]string{"REDIS_CLUSTER_ADDRS=127.0.0.1:7000,redis-1"},
			`producer: REDIS_CLUSTER_ADDRS="127.0.0.1:7000,redis-1" is invalid: want comma-separated host:port addresses such as redis-0:6379,redis-1:6379 ("redis-1" is not host:port)` + "\n",
		},
		{
			"SentinelWithoutMaster",
			[]string{"send", "--stream", "s", "--type", "t"},
			[]string{"REDIS_SENTINEL_ADDRS=127.0.0.1:26379"},
			`producer: REDIS_SENTINEL_MASTER="" is invalid: want the name the Sentinels monitor the primary under (sentinel monitor <name> …), required with REDIS_SENTINEL_ADDRS` + "\n",
		},
		{
			"ClusterDatabaseFromFlag",
			[]string{"send", "--stream", "s", "--type", "t", "--redis-url", "redis://:secret@/2"},
			[]string{"REDIS_CLUSTER_ADDRS=127.0.0.1:7000"},
			`producer: --redis-url="redis://:xxxxx@/2" is invalid: want database 0 (or none) with REDIS_CLUSTER_ADDRS: a Redis Cluster has only database 0` + "\n",
		},
		{
			"BadTLSFile",
			[]string{"load", "--stream", "s", "--type", "t", "--count", "1"},
			[]string{"REDIS_URL=rediss://h:1/0", "REDIS_TLS_CA=/nonexistent/ca.pem"},
			`producer: REDIS_TLS_CA="/nonexistent/ca.pem" is invalid: want a readable PEM file of CA certificates (no such file or directory)` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := c.run(t, "", tc.args, tc.env...)
			r.Want(t, 2)
			if r.Stderr != tc.want || r.Stdout != "" {
				t.Errorf("stdout %q, stderr %q; want stderr %q", r.Stdout, r.Stderr, tc.want)
			}
		})
	}
}

func testRedisURLFlag(t *testing.T, c *binary) {
	rc := c.client(t)
	stream := testredis.Prefix(t) + "orders"
	r := c.run(t, "", []string{"send", "--stream", stream, "--type", "t", "--redis-url", c.redisURL}, "REDIS_URL=redis://127.0.0.1:1/0")
	r.Want(t, 0)
	if n := rc.XLen(context.Background(), stream).Val(); n != 1 {
		t.Errorf("stream length %d, want the event sent through --redis-url", n)
	}
}

func testHelp(t *testing.T, c *binary) {
	for _, args := range [][]string{{"--help"}, {"send", "--help"}, {"load", "-h"}, {"help", "send"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := c.run(t, "", args)
			r.Want(t, 0)
			if !strings.Contains(r.Stdout, "Usage:") || r.Stderr != "" {
				t.Errorf("producer %v: stdout %q, stderr %q; want usage on stdout", args, r.Stdout, r.Stderr)
			}
		})
	}
}

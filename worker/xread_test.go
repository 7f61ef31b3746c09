package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/sendonce"
	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/wire"
)

// readDelivered tells whether a command was a read that delivered entries:
// how many for a read go-redis parsed, 1 for a raw read (xread.go) whose
// reply is longer than a nil one, 0 for anything else.
func readDelivered(cmd redis.Cmder) int {
	switch c := cmd.(type) {
	case *sendonce.Cmd:
		return readDelivered(c.Cmder)
	case *redis.XStreamSliceCmd:
		if len(c.Val()) > 0 {
			return len(c.Val()[0].Messages)
		}
	case *redis.RawWriteToCmd:
		if c.Name() == "xreadgroup" && c.Err() == nil && c.Val() > int64(len("*-1\r\n")) {
			return 1
		}
	}
	return 0
}

// messageView is what a test compares of a Message.
type messageView struct {
	ID, Stream, Type, Data, OriginID, IdempotencyKey string
	Attempt                                          int
	Metadata                                         map[string]string
	Fields                                           []string
}

func viewOf(ms []*Message) []messageView {
	out := make([]messageView, 0, len(ms))
	for _, m := range ms {
		out = append(out, messageView{
			ID: m.ID, Stream: m.Stream, Type: m.Type, Data: string(m.Data), OriginID: m.OriginID, IdempotencyKey: m.IdempotencyKey,
			Attempt: m.Attempt, Metadata: m.Metadata, Fields: m.copyFields(),
		})
	}
	return out
}

// eachProtocol runs f in a parallel subtest per RESP version, 2 and 3,
// with a client of srv speaking it.
func eachProtocol(t *testing.T, srv *testredis.Server, f func(t *testing.T, c *redis.Client)) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			t.Parallel()
			opt := *srv.Client(t).Options()
			opt.Protocol = proto
			c := redis.NewClient(&opt)
			t.Cleanup(func() { c.Close() })
			f(t, c)
		})
	}
}

// The raw read parses a reply into the same Messages as go-redis's
// XReadGroup and newMessages, in RESP2 and RESP3, for entries of every
// shape: no fields but type, empty and binary data, extra fields, a field
// name twice, many fields, and an entry deleted after it was delivered.
func TestParseReadMatchesGoRedis(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	many := []any{wire.FieldType, "t"}
	for i := range 40 {
		many = append(many, fmt.Sprintf("f%d", i), strings.Repeat("v", i))
	}
	entries := [][]any{
		{wire.FieldType, "t"},
		{wire.FieldType, "t", wire.FieldData, ""},
		{wire.FieldType, "t", wire.FieldData, "\x00\r\n$3\r\n*1\xff"},
		{wire.FieldType, "t", wire.FieldData, "x", wire.FieldID, "k1", wire.FieldAttempt, "3", wire.FieldOriginID, "1-1", "traceparent", "00-abc"},
		{wire.FieldType, "a", wire.FieldType, "b", "m", "1", "m", "2"},
		{"no-type", "v"},
		many,
	}
	eachProtocol(t, srv, func(t *testing.T, c *redis.Client) {
		stream := testredis.Prefix(t) + "parse"
		for _, g := range []string{"raw", "lib"} {
			if err := c.XGroupCreateMkStream(ctx, stream, g, "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range entries {
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: e}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		read := func(g string) []byte {
			cmd := redis.NewRawCmd(ctx, "xreadgroup", "group", g, "c", "count", 100, "streams", stream, ">")
			if err := c.Process(ctx, cmd); err != nil {
				t.Fatal(err)
			}
			return cmd.Val()
		}
		raw := read("raw")
		got, err := parseRead(stream, raw, time.Time{}, nil)
		if err != nil {
			t.Fatalf("parseRead: %v\n%q", err, raw)
		}
		lib, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "lib", Consumer: "c", Streams: []string{stream, ">"}, Count: 100, Block: -1}).Result()
		if err != nil {
			t.Fatal(err)
		}
		want := newMessages(stream, lib[0].Messages, time.Time{})
		// go-redis's map keeps one value per name and loses the entry's
		// order; compare what the runtime uses of them.
		if diff := cmp.Diff(viewOf(want), viewOf(got), cmp.Transformer("sorted", sortedPairs)); diff != "" {
			t.Errorf("parseRead differs from go-redis (-go-redis +parseRead):\n%s", diff)
		}
		if len(got) != len(entries) {
			t.Fatalf("read %d entries, want %d", len(got), len(entries))
		}
		// Its size is every field's bytes, a name given twice included.
		for i, e := range entries {
			size := 0
			for _, f := range e {
				size += len(f.(string))
			}
			if got[i].size != size {
				t.Errorf("entry %d: size %d, want %d", i, got[i].size, size)
			}
		}

		// Nothing new: a nil reply, in either protocol.
		if got, err := parseRead(stream, read("raw"), time.Time{}, nil); err != nil || got != nil {
			t.Fatalf("empty read: %v, %v", got, err)
		}
		// An entry deleted after delivery comes back with nil fields
		// when the pending list is read (ID 0).
		if err := c.XDel(ctx, stream, got[0].ID).Err(); err != nil {
			t.Fatal(err)
		}
		cmd := redis.NewRawCmd(ctx, "xreadgroup", "group", "raw", "c", "count", 1, "streams", stream, "0")
		if err := c.Process(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		del, err := parseRead(stream, cmd.Val(), time.Time{}, nil)
		if err != nil || len(del) != 1 || del[0].ID != got[0].ID || del[0].fields != nil || del[0].Type != "" {
			t.Fatalf("deleted entry: %+v, %v (%q)", del, err, cmd.Val())
		}
		// An error reply is a redis.Error, as go-redis's are.
		cmd = redis.NewRawCmd(ctx, "xreadgroup", "group", "nope", "c", "count", 1, "streams", stream, ">")
		_ = c.Process(ctx, cmd)
		if _, err := parseRead(stream, cmd.Val(), time.Time{}, nil); !isNoGroup(err) {
			t.Fatalf("missing group: %v, want NOGROUP as a redis.Error", err)
		}
	})
}

// sortedPairs orders a flat field list by name, for comparing field sets
// whose order go-redis's map does not keep.
func sortedPairs(fields []string) []string {
	type pair struct{ k, v string }
	ps := make([]pair, 0, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		ps = append(ps, pair{fields[i], fields[i+1]})
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].k < ps[j-1].k; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	out := make([]string, 0, len(fields))
	for _, p := range ps {
		out = append(out, p.k, p.v)
	}
	return out
}

// A reply that is not an XREADGROUP reply is an error naming where it
// broke, never a panic or a message made of half an entry.
func TestParseReadRefusesMalformedReplies(t *testing.T) {
	t.Parallel()
	good := "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$1\r\nt\r\n"
	if ms, err := parseRead("s", []byte(good), time.Time{}, nil); err != nil || len(ms) != 1 || ms[0].Type != "t" {
		t.Fatalf("the well-formed reply: %v, %v", ms, err)
	}
	for _, bad := range []string{
		"",
		"*",
		"*1\r\n",
		"*2\r\n",
		"%2\r\n",
		":1\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*3\r\n$4\r\ntype\r\n$1\r\nt\r\n$1\r\nx\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$9\r\nt\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$-5\r\nt\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*0\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*x\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*99999999999999999999\r\n",
		"*1\r\n*2\r\n$1\r\ns\r\n*1000000000000\r\n",       // more entries than the bytes could hold: refused, not allocated
		"%1\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n_\r\n", // two entries announced, room for one
	} {
		if ms, err := parseRead("s", []byte(bad), time.Time{}, nil); !errors.Is(err, errBadReply) {
			t.Errorf("parseRead(%q) = %v, %v; want errBadReply", bad, ms, err)
		}
	}
}

// A raw read's buffer is sized for its reply: after one read of entries
// with many fields (a partition key, an idempotency key, a trace context,
// an attempt) the guess for the next read holds its whole reply, in RESP2
// and RESP3, so the buffer is not doubled (and copied) as it fills. With a
// fixed 64 bytes of framing per entry, the guess fell short for entries of
// more than two fields. Nor is it far above the reply.
func TestReplyGuessHoldsTheReply(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	eachProtocol(t, srv, func(t *testing.T, c *redis.Client) {
		stream := testredis.Prefix(t) + "guess"
		if err := c.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
			t.Fatal(err)
		}
		add := func(n int) {
			pipe := c.Pipeline()
			for i := range n {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{
					wire.FieldType, "order.created", wire.FieldData, strings.Repeat("d", 100),
					wire.FieldKey, fmt.Sprintf("customer-%d", i%1000), wire.FieldID, fmt.Sprintf("order-%d", i),
					wire.FieldTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", wire.FieldAttempt, "2",
				}})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		read := func(n int) ([]byte, []*Message) {
			cmd := redis.NewRawCmd(ctx, "xreadgroup", "group", "g", "c", "count", n, "streams", stream, ">")
			if err := c.Process(ctx, cmd); err != nil {
				t.Fatal(err)
			}
			ms, err := parseRead(stream, cmd.Val(), time.Time{}, nil)
			if err != nil || len(ms) != n {
				t.Fatalf("parseRead: %d messages, %v; want %d", len(ms), err, n)
			}
			return cmd.Val(), ms
		}
		// The first read is the runtime's: it learns the framing.
		var z readSizer
		add(10)
		r := &engine{cfg: config.Config{Group: "g", Consumer: "c"}, client: c}
		ms, err := r.readNow(ctx, stream, 10, &z, time.Now(), typeNames{})
		if err != nil || len(ms) != 10 {
			t.Fatalf("readNow: %d messages, %v; want 10", len(ms), err)
		}
		z.observe(batchBytes(ms), len(ms))
		add(200)
		guess := z.reply(stream, 200)
		raw, _ := read(200)
		if guess < len(raw) {
			t.Errorf("the guess for a read of 200 entries is %d bytes, its reply %d: the buffer would be doubled", guess, len(raw))
		}
		if guess > len(raw)+len(raw)/10 {
			t.Errorf("the guess for a read of 200 entries is %d bytes, its reply only %d", guess, len(raw))
		}
	})
}

// Parsing a read allocates per read, not per entry or per field: the
// messages, their pointers, one array of every entry's fields and one of
// their IDs, whatever fields of the runtime's own the entries have (type
// and data, or a partition key, an idempotency key and a retry's beside
// them; other fields go into a Metadata map of each message's own). The
// array of fields was sized for two fields an entry, and grown by append
// in every read of entries with more.
func TestParseReadAllocatesPerRead(t *testing.T) {
	srv := testredis.Shared(t)
	ctx := context.Background()
	c := srv.Client(t)
	shapes := map[string][]any{
		"type and data": {wire.FieldType, "t", wire.FieldData, "payload"},
		"with a key":    {wire.FieldType, "t", wire.FieldData, "payload", wire.FieldKey, "customer-1"},
		"a retry's fields": {wire.FieldType, "t", wire.FieldData, "payload", wire.FieldKey, "customer-1", wire.FieldID, "order-1",
			wire.FieldAttempt, "2", wire.FieldOriginID, "1-1"},
	}
	for name, fields := range shapes {
		stream := testredis.Prefix(t) + strings.ReplaceAll(name, " ", "-")
		if err := c.XGroupCreateMkStream(ctx, stream, "g", "0").Err(); err != nil {
			t.Fatal(err)
		}
		pipe := c.Pipeline()
		for range 100 {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		cmd := redis.NewRawCmd(ctx, "xreadgroup", "group", "g", "c", "count", 100, "streams", stream, ">")
		if err := c.Process(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		raw, types := cmd.Val(), typeNames{}
		if ms, err := parseRead(stream, raw, time.Time{}, types); err != nil || len(ms) != 100 {
			t.Fatalf("%s: parseRead: %d messages, %v; want 100", name, len(ms), err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := parseRead(stream, raw, time.Time{}, types); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 4 {
			t.Errorf("%s: parsing a read of 100 entries makes %v allocations, want 4", name, allocs)
		}
	}
}

// FuzzParseRead: whatever the bytes, parseRead returns messages or an
// error, never panics, and every message it returns has fields in pairs.
func FuzzParseRead(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$1\r\nt\r\n"))
	f.Add([]byte("%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n_\r\n"))
	f.Add([]byte("_\r\n"))
	f.Add([]byte("-NOGROUP no\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ms, err := parseRead("s", raw, time.Time{}, nil)
		if err != nil && ms != nil {
			t.Fatalf("messages and an error: %v, %v", ms, err)
		}
		for _, m := range ms {
			if len(m.fields)%2 != 0 {
				t.Fatalf("fields not in pairs: %q", m.fields)
			}
		}
	})
}

// A raw read with BLOCK, as a quiet stream's fetcher sends it in one
// pipeline with its acknowledgements (readAcking), in RESP2 and RESP3:
// one that times out on a drained stream is no messages and no error (a
// null array in RESP2, a null in RESP3), one that finds entries parses
// them, and one of a group that is gone is the NOGROUP error the fetcher
// recreates the group for.
func TestRawBlockingRead(t *testing.T) {
	t.Parallel()
	srv := testredis.Shared(t)
	ctx := context.Background()
	eachProtocol(t, srv, func(t *testing.T, c *redis.Client) {
		stream := testredis.Prefix(t) + "block"
		if err := c.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
			t.Fatal(err)
		}
		r := &engine{cfg: config.Config{Group: "g", Consumer: "c"}, client: c}
		var z readSizer
		read := func(block time.Duration) ([]*Message, error) {
			buf := &replyBuf{b: make([]byte, 0, z.reply(stream, 1))}
			pipe := c.Pipeline()
			ping := pipe.Ping(ctx) // not alone in its pipeline, as the acknowledgements are not
			cmd := r.xreadCmd(ctx, buf, stream, 10, block)
			_ = pipe.Process(ctx, cmd)
			_, _ = pipe.Exec(ctx)
			if err := ping.Err(); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Err(); err != nil {
				return nil, err
			}
			return parseReply(stream, buf.b, time.Now(), typeNames{}, &z)
		}

		if ms, err := read(time.Millisecond); err != nil || len(ms) != 0 {
			t.Fatalf("a read of a drained stream that timed out: %d messages, %v; want none and no error", len(ms), err)
		}
		for i := range 3 {
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{wire.FieldType, "t", wire.FieldData, fmt.Sprint(i)}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := read(time.Second)
		if err != nil || len(ms) != 3 {
			t.Fatalf("a read of 3 entries: %d messages, %v", len(ms), err)
		}
		for i, m := range ms {
			if m.Type != "t" || string(m.Data) != fmt.Sprint(i) {
				t.Errorf("message %d: type %q, data %q; want t, %d", i, m.Type, m.Data, i)
			}
		}
		if z.framing == 0 {
			t.Error("the read's framing was not learned from its reply")
		}

		if err := c.XGroupDestroy(ctx, stream, "g").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := read(time.Millisecond); !isNoGroup(err) {
			t.Fatalf("a read of a group that is gone: %v, want NOGROUP", err)
		}
	})
}

// A block under a millisecond is sent as one, not as BLOCK 0 (for ever).
func TestRawReadBlockIsNeverZero(t *testing.T) {
	t.Parallel()
	r := &engine{cfg: config.Config{Group: "g", Consumer: "c"}}
	for _, block := range []time.Duration{0, time.Microsecond, 999 * time.Microsecond} {
		args := r.xreadCmd(context.Background(), &replyBuf{}, "s", 1, block).Args()
		if got := args[7]; got != int64(1) {
			t.Errorf("BLOCK for %s: %v (%v), want 1", block, got, args)
		}
	}
	if args := r.xreadCmd(context.Background(), &replyBuf{}, "s", 1, -1).Args(); slices.Contains(args, any("block")) {
		t.Errorf("a read with a negative block has BLOCK: %v", args)
	}
}

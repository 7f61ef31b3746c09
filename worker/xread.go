package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// The reads that bring a busy stream's entries skip go-redis's reply
// parsing: it builds a map of interface values per entry, a quarter of the
// runtime's CPU on a no-op handler. The reply's raw RESP bytes are written
// (redis.RawWriteToCmd) into one buffer sized beforehand from the entries
// of recent reads, and parsed here into the Messages directly: their
// strings and Data point into that buffer. A buffer grown by append
// instead (redis.RawCmd) cost as much CPU as it saved, in copies and in
// large allocations swept and returned to the OS.
//
// Only reads without BLOCK go this way, and a quiet stream's blocking
// read sent in one pipeline with acknowledgements (inline.go readAcking):
// go-redis stretches its read deadline for a blocking command it knows,
// not for a raw one, and a pipeline has the client's read timeout whatever
// it holds. The other blocking reads, and every read on a Redis Cluster
// (where go-redis follows MOVED replies only for the commands it parses),
// use go-redis's XReadGroup.

// readNow reads up to n new entries of stream without blocking and returns
// them as Messages read at sent. The reply's buffer is sized by sizes,
// which learns from the reply how many bytes its entries' framing took.
func (r *engine) readNow(ctx context.Context, stream string, n int, sizes *readSizer, sent time.Time, types typeNames) ([]*Message, error) {
	buf := &replyBuf{b: make([]byte, 0, sizes.reply(stream, n))}
	if err := r.client.Process(ctx, r.xreadCmd(ctx, buf, stream, n, -1)); err != nil {
		return nil, err
	}
	return parseReply(stream, buf.b, sent, types, sizes)
}

// xreadCmd is a raw XREADGROUP of up to n new entries of stream, its reply
// written into buf: with BLOCK block, or without when block is negative.
// A block under a millisecond is one, not BLOCK 0, which waits for ever.
func (r *engine) xreadCmd(ctx context.Context, buf *replyBuf, stream string, n int, block time.Duration) *redis.RawWriteToCmd {
	if block < 0 {
		return redis.NewRawWriteToCmd(ctx, buf, "xreadgroup", "group", r.cfg.Group, r.cfg.Consumer, "count", n, "streams", stream, ">")
	}
	return redis.NewRawWriteToCmd(ctx, buf, "xreadgroup", "group", r.cfg.Group, r.cfg.Consumer, "count", n, "block", max(1, block.Milliseconds()), "streams", stream, ">")
}

// parseReply is parseRead of a raw reply, whose entries' framing sizes
// learns.
func parseReply(stream string, raw []byte, sent time.Time, types typeNames, sizes *readSizer) ([]*Message, error) {
	ms, err := parseRead(stream, raw, sent, types)
	if err == nil {
		sizes.observeReply(stream, len(raw), ms)
	}
	return ms, err
}

// replyBuf takes a raw reply into memory sized for it beforehand. When the
// guess falls short (the first read of a stream, entries grown), it doubles:
// grown by append's rule instead, a 16 MiB reply left five times that in
// garbage behind it.
type replyBuf struct{ b []byte }

func (w *replyBuf) Write(p []byte) (int, error) {
	w.grow(len(p))
	w.b = append(w.b, p...)
	return len(p), nil
}

// ReadFrom reads a bulk string's bytes (io.CopyN hands them over as an
// io.LimitedReader of their length) straight into the buffer.
func (w *replyBuf) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok && lr.N <= 1<<30 {
		n := int(lr.N)
		w.grow(n)
		got, err := io.ReadFull(lr.R, w.b[len(w.b):len(w.b)+n])
		w.b = w.b[:len(w.b)+got]
		lr.N -= int64(got)
		return int64(got), err
	}
	var total int64
	for {
		w.grow(4096)
		n, err := r.Read(w.b[len(w.b):cap(w.b)])
		w.b = w.b[:len(w.b)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// grow makes room for n more bytes.
func (w *replyBuf) grow(n int) {
	if cap(w.b)-len(w.b) >= n {
		return
	}
	b := make([]byte, len(w.b), max(2*cap(w.b), len(w.b)+n))
	copy(b, w.b)
	w.b = b
}

// rawReads reports whether reads without BLOCK are parsed here: not on a
// Redis Cluster.
func (r *engine) rawReads() bool { return r.cluster == nil }

// replyError is an error reply of Redis to a raw command: a redis.Error, so
// that redis.HasErrorPrefix (NOGROUP, OOM) sees it as go-redis's own.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks it as a reply of Redis (redis.Error).
func (replyError) RedisError() {}

// minEntryBytes is the least an entry takes in an XREADGROUP reply: its
// pair's header (*2), the ID as a bulk string ($3 and 0-0) and a nil or an
// empty array of fields, each header ending in CRLF.
const minEntryBytes = len("*2\r\n$3\r\n0-0\r\n_\r\n")

// minStringBytes is the least a field's name or value takes in a reply: an
// empty bulk string, $0 and two CRLFs.
const minStringBytes = len("$0\r\n\r\n")

// errBadReply is a reply that is not what XREADGROUP returns.
var errBadReply = errors.New("unexpected XREADGROUP reply")

// parseRead parses the raw reply of an XREADGROUP of one stream, in RESP2
// or RESP3: nil when nothing was read, else a map (RESP3) or an array
// (RESP2) of one stream name and its entries, each an ID and a flat array
// of fields (nil for an entry deleted since it was delivered).
func parseRead(stream string, raw []byte, readAt time.Time, types typeNames) ([]*Message, error) {
	p := respParser{b: raw}
	typ, n, err := p.header()
	switch {
	case err != nil:
		return nil, err
	case typ == '-':
		return nil, replyError(p.line)
	case typ == '_' || n < 0:
		return nil, nil // nothing to read
	case typ == '%' && n == 2: // RESP3: {stream: entries}, its name and its value
	case typ == '*' && n == 1: // RESP2: [[stream, entries]]
		if typ, n, err = p.header(); err != nil || typ != '*' || n != 2 {
			return nil, p.bad(err)
		}
	default:
		return nil, p.bad(nil)
	}
	if _, err := p.str(); err != nil { // the stream's name
		return nil, err
	}
	typ, count, err := p.header()
	// An entry takes at least minEntryBytes of the reply: a count the rest
	// cannot hold is a bad reply, not a reason to allocate for it.
	if err != nil || typ != '*' || count < 0 || count > (len(p.b)-p.i)/minEntryBytes {
		return nil, p.bad(err)
	}
	ms := make([]Message, count)
	out := make([]*Message, count)
	// Every entry's fields in one array, sized when the first entry's
	// fields are known for that many in each entry left: a stream's entries
	// mostly have the same fields. An entry with more takes a new array,
	// sized so for the entries after it, and earlier entries keep theirs.
	// (Sized for two fields, the array was grown once or twice by append in
	// every read of entries with a partition key or a trace context.)
	var all []string
	// The IDs are copied out of the reply into one small array: they live
	// on in acknowledgements waiting to be sent and in the buffers that
	// held them, and must not keep a reply of megabytes alive there.
	ids := make([]byte, 0, 20*count)
	for i := range count {
		if typ, n, err := p.header(); err != nil || typ != '*' || n != 2 {
			return nil, p.bad(err)
		}
		raw, err := p.str()
		if err != nil {
			return nil, err
		}
		at := len(ids)
		ids = append(ids, raw...)
		id := bytesString(ids[at:])
		typ, n, err := p.header()
		// A string takes at least minStringBytes of the reply: a count of
		// fields the rest cannot hold is a bad reply, not a reason to
		// allocate for it.
		if err != nil || (typ != '*' && typ != '_') || (n > 0 && n%2 != 0) || n > (len(p.b)-p.i)/minStringBytes {
			return nil, p.bad(err)
		}
		if n > cap(all)-len(all) { // n > 0
			// n strings for each entry left, but no more than the rest
			// holds; the product compared without computing it, where it
			// could overflow an int of 32 bits.
			size := (len(p.b) - p.i) / minStringBytes
			if count-i <= size/n {
				size = n * (count - i)
			}
			all = make([]string, 0, size)
		}
		start := len(all)
		for range max(n, 0) {
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			all = append(all, s)
		}
		m := &ms[i]
		var fields []string
		if n > 0 {
			fields = all[start:len(all):len(all)]
		}
		m.fill(stream, id, fields)
		m.Type = types.of(m.Type)
		m.readAt = readAt
		out[i] = m
	}
	return out, nil
}

// typeNames keeps one copy of each type name a fetcher's reads brought. A
// Message's strings point into its read's reply, and its Type ends up in
// metric labels kept for the life of the process: a copy of its own keeps
// the reply from being held with it. Past maxTypeNames names (the stream's
// writers choose them) each is copied anew.
type typeNames map[string]string

const maxTypeNames = 1024

func (t typeNames) of(s string) string {
	if v, ok := t[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if t != nil && len(t) < maxTypeNames {
		t[v] = v
	}
	return v
}

// respParser reads RESP values from a reply held whole in memory.
type respParser struct {
	b    []byte
	i    int
	line []byte // the text of the last simple string or error
}

// header reads the next value's type and, for an aggregate or a bulk
// string, its length (-1 for RESP2's nil); for a simple string or an
// error, p.line is its text.
func (p *respParser) header() (byte, int, error) {
	end := p.i
	for end+1 < len(p.b) && !(p.b[end] == '\r' && p.b[end+1] == '\n') {
		end++
	}
	if end+1 >= len(p.b) || end == p.i {
		return 0, 0, p.bad(nil)
	}
	typ, text := p.b[p.i], p.b[p.i+1:end]
	p.i = end + 2
	switch typ {
	case '*', '%', '~', '$':
		n, err := atoi(text)
		if err != nil {
			return 0, 0, p.bad(err)
		}
		if typ == '%' {
			n *= 2
		}
		return typ, n, nil
	case '+', '-':
		p.line = text
		return typ, 0, nil
	case '_':
		return typ, -1, nil
	}
	return 0, 0, p.bad(nil)
}

// str reads a bulk or simple string, without copying it.
func (p *respParser) str() (string, error) {
	typ, n, err := p.header()
	switch {
	case err != nil:
		return "", err
	case typ == '+':
		return bytesString(p.line), nil
	case typ != '$' || n < 0 || len(p.b)-p.i < n+2:
		return "", p.bad(nil)
	}
	s := bytesString(p.b[p.i : p.i+n])
	p.i += n + 2
	return s, nil
}

func (p *respParser) bad(err error) error {
	if err != nil {
		return fmt.Errorf("%w at byte %d: %w", errBadReply, p.i, err)
	}
	return fmt.Errorf("%w at byte %d", errBadReply, p.i)
}

// atoi parses a RESP length: an optional minus sign and decimal digits.
func atoi(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 18 {
		return 0, strconv.ErrRange
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n, nil
	}
	return n, nil
}

// bytesString returns b as a string without copying it: the reply's bytes
// are never written again once read.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamworker/streamworker/producer"
)

// fileLine is one line of a JSONL input:
//
//	{"type": "order.created", "data": {"id": 7}, "id": "order-7", "key": "customer-3", "delay": "30s"}
//
// data is stored as its JSON text, as --data is.
type fileLine struct {
	Type  *string         `json:"type"`
	Data  json.RawMessage `json:"data"`
	ID    *string         `json:"id"`
	Key   *string         `json:"key"`
	Delay *string         `json:"delay"`
	// UniqueFor makes the line a unique publish (producer.Item.UniqueFor):
	// not added if its id was unique-published within this long.
	UniqueFor *string `json:"unique_for"`
}

// parseLine turns one input line into an item, or says why it cannot be sent.
func parseLine(line []byte, p *producer.Producer, now time.Time) (producer.Item, error) {
	return new(lineDecoder).parse(line, p, func() time.Time { return now })
}

// parse turns one input line into an item, or says why it cannot be sent;
// now is asked only for a delay. The item's data may point into the
// decoder's buffer: it is valid until the next call.
func (d *lineDecoder) parse(line []byte, p *producer.Producer, now func() time.Time) (producer.Item, error) {
	l, err := d.decode(line)
	if err != nil {
		return producer.Item{}, err
	}
	var it producer.Item
	switch {
	case l.Type == nil:
		return it, errors.New(`missing "type"`)
	case *l.Type == "":
		return it, errors.New(`"type" is empty`)
	}
	it.Event = producer.Event{Type: *l.Type, Data: l.Data}
	if l.ID != nil {
		it.Event.ID = *l.ID
	}
	if l.Key != nil {
		it.Event.Key = *l.Key
	}
	if l.Delay != nil {
		delay, err := time.ParseDuration(*l.Delay)
		switch {
		case err != nil:
			return it, fmt.Errorf(`bad "delay" %q: want a duration such as 500ms, 30s or 2h`, *l.Delay)
		case delay < 0:
			return it, fmt.Errorf(`bad "delay" %q: it is negative`, *l.Delay)
		case delay > 0:
			it.Due = now().Add(delay)
		}
	}
	if l.UniqueFor != nil {
		window, err := time.ParseDuration(*l.UniqueFor)
		switch {
		case err != nil || window < time.Millisecond:
			return it, fmt.Errorf(`bad "unique_for" %q: want a duration of at least 1ms such as 30s, 1h or 24h`, *l.UniqueFor)
		case it.Event.ID == "":
			return it, errors.New(`"unique_for" needs an "id": the id is what makes two events the same`)
		case !it.Due.IsZero():
			return it, errors.New(`"unique_for" cannot be used with "delay": a unique publish appends now`)
		}
		it.UniqueFor = window
	}
	if err := checkStrings(line, l); err != nil {
		return it, err
	}
	if err := p.Check(it.Event); err != nil {
		return it, err
	}
	return it, nil
}

// checkStrings refuses a line whose type, id or key encoding/json decoded
// with U+FFFD in place of invalid UTF-8 or of half a UTF-16 surrogate pair:
// the event would go out with a type, id or key other than the one written,
// and two different ids could become one. Only a decoded U+FFFD can be such
// a replacement, so other lines pay nothing.
func checkStrings(line []byte, l fileLine) error {
	replaced := func(s *string) bool { return s != nil && strings.ContainsRune(*s, utf8.RuneError) }
	if !replaced(l.Type) && !replaced(l.ID) && !replaced(l.Key) {
		return nil
	}
	// The same decoder on the same line matches the same keys.
	var raw struct {
		Type json.RawMessage `json:"type"`
		ID   json.RawMessage `json:"id"`
		Key  json.RawMessage `json:"key"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return describeJSONError(err)
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"type", raw.Type}, {"id", raw.ID}, {"key", raw.Key}} {
		if err := checkJSONString(f.raw); err != nil {
			return fmt.Errorf("%q is not %w", f.name, err)
		}
	}
	return nil
}

// checkJSONString checks that raw, a JSON string as written (quotes
// included) or another JSON value, holds only valid UTF-8 and no half of a
// UTF-16 surrogate pair escaped on its own.
func checkJSONString(raw []byte) error {
	if len(raw) < 2 || raw[0] != '"' {
		return nil // null: no string
	}
	for i := 1; i < len(raw)-1; {
		switch {
		case raw[i] == '\\' && raw[i+1] == 'u':
			r, _ := strconv.ParseUint(string(raw[i+2:i+6]), 16, 32)
			switch {
			case r >= 0xd800 && r < 0xdc00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u':
				if lo, _ := strconv.ParseUint(string(raw[i+8:i+12]), 16, 32); lo >= 0xdc00 && lo < 0xe000 {
					i += 12
					continue
				}
				fallthrough
			case r >= 0xd800 && r < 0xe000:
				return fmt.Errorf("valid UTF-16: %s is half of a surrogate pair", raw[i:i+6])
			}
			i += 6
		case raw[i] == '\\':
			i += 2
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("valid UTF-8: byte %#x at byte %d of its value", raw[i], i)
			}
			i += size
		}
	}
	return nil
}

// decodeLine decodes a line strictly, with encoding/json: one JSON object
// (or null) with no fields but type, data, id, key, delay and unique_for.
// It is what lineDecoder.decode falls back to. The common line takes a
// shorter way, json.Unmarshal and a check of its keys, about half the cost
// of a json.Decoder; everything else, errors included, goes through
// decodeLineStrict, which decides.
func decodeLine(line []byte) (fileLine, error) {
	var l fileLine
	if json.Unmarshal(line, &l) == nil && onlyKnownKeys(line) {
		return l, nil
	}
	return decodeLineStrict(line)
}

// decodeLineStrict decodes a line with a json.Decoder that refuses unknown
// fields (as encoding/json matches them) and a second value.
func decodeLineStrict(line []byte) (fileLine, error) {
	var l fileLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return l, errors.New("more than one JSON value on the line")
	}
	return l, nil
}

// onlyKnownKeys reports whether every top-level key of b, a valid JSON
// value, is spelled exactly type, data, id, key, delay or unique_for. It may say no to a line
// encoding/json would accept (a key in capitals or with an escape): such a
// line goes the strict way.
func onlyKnownKeys(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return true // null: no keys
	}
	i++
	for {
		i = skipSpace(b, i)
		if b[i] == '}' {
			return true
		}
		end := endOfString(b, i)
		switch string(b[i+1 : end-1]) {
		case "type", "data", "id", "key", "delay", "unique_for":
		default:
			return false
		}
		i = skipValue(b, skipSpace(b, skipSpace(b, end)+1)) // past the ':'
		i = skipSpace(b, i)
		if b[i] == '}' {
			return true
		}
		i++ // the ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string that starts at b[i] ('"').
func endOfString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				j = endOfString(b, j)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return len(b)
	}
	for i < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[i])) {
		i++
	}
	return i
}

// describeJSONError says what is wrong with a line in words a person who
// wrote it can act on.
func describeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: unexpected end of line")
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Errorf("want a JSON object, got %s", typ.Value)
	case errors.As(err, &typ):
		return fmt.Errorf("%q must be a string, got %s", typ.Field, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s (want type, data, id, key, delay, unique_for)", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// lineReader reads lines of any length, keeping at most max bytes of one.
type lineReader struct {
	r    *bufio.Reader
	max  int
	line []byte
	no   int   // number of the line last returned, from 1
	read int64 // bytes consumed
}

func newLineReader(r io.Reader, maxLen int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10), max: maxLen}
}

// next returns the next line without its line ending (\n or \r\n), and its
// full length; when that is over max the line holds only its first max bytes.
// At the end it returns io.EOF.
func (lr *lineReader) next() (line []byte, length int, err error) {
	lr.line = lr.line[:0]
	var last2 [2]byte // the last two bytes read, for the line ending
	for {
		chunk, err := lr.r.ReadSlice('\n')
		lr.read += int64(len(chunk))
		length += len(chunk)
		if room := lr.max + 2 - len(lr.line); room > 0 {
			lr.line = append(lr.line, chunk[:min(len(chunk), room)]...)
		}
		switch len(chunk) {
		case 0:
		case 1:
			last2 = [2]byte{last2[1], chunk[0]}
		default:
			last2 = [2]byte{chunk[len(chunk)-2], chunk[len(chunk)-1]}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && length == 0:
			return nil, 0, io.EOF
		case err != nil && !errors.Is(err, io.EOF):
			return nil, 0, err
		}
		lr.no++
		if last2[1] == '\n' {
			length--
			if last2[0] == '\r' {
				length--
			}
		}
		return lr.line[:min(length, lr.max)], length, nil
	}
}

// byteOrderMark is U+FEFF in UTF-8.
var byteOrderMark = []byte{0xef, 0xbb, 0xbf}

// fileSender sends the lines of a JSONL input in pipelined batches.
type fileSender struct {
	p      *producer.Producer
	stream string
	// name names the input in reports: a file name, or "stdin".
	name string
	// batch is the most events a batch sends.
	batch int
	// rejects receives one line per rejected input line.
	rejects  io.Writer
	progress *progress
	now      func() time.Time
	// sending, when set, is called before each batch is sent, and
	// settling before its replies are read, with the batch's first input
	// line; tests use them to hold a batch back.
	sending, settling func(firstLine int)
}

// sendStats counts what became of the input.
type sendStats struct {
	lines, sent, delayed, rejected int
	duplicates                     int // unique lines not added: their id was sent within the window
}

func (s sendStats) status() string {
	return fmt.Sprintf("sent %d, rejected %d", s.sent, s.rejected)
}

// sendWindow is how many batches may be on their way to Redis at once, sent
// and not yet confirmed; fileBatches is how many send keeps: those and the
// one being decoded. Each holds the data of its events.
const (
	sendWindow  = 4
	fileBatches = sendWindow + 1
)

// send reads r to its end and sends every valid line. Invalid lines are
// reported and skipped. Batches go out in input order (Producer.SendItems),
// so events keep the input's order; the next batch is read, parsed and
// written while the replies of those before come back, so that Redis waits
// neither on the decoding nor on a round trip. A Redis error stops it: the
// writes of that batch that Redis did not confirm may or may not have
// happened, and nothing is resent. The batches already on their way behind
// the failed one (sendWindow-1 at most) are waited for, counted and named;
// no batch is sent once the failure is known.
func (s *fileSender) send(ctx context.Context, r io.Reader) (sendStats, error) {
	// A line longer than the cap plus room for the other fields cannot
	// hold an event under the cap; it is not kept in memory whole.
	lr := newLineReader(r, s.p.MaxPayload()+64<<10)
	var dec lineDecoder
	free := make(chan *fileBatch, fileBatches)
	for range fileBatches {
		free <- newFileBatch(s.batch)
	}
	// sent carries the batches sent, in input order, to the goroutine that
	// waits for their replies. Only that one updates st and sendErr until
	// it is done; send reads them after.
	sent := make(chan *fileBatch, sendWindow)
	window := make(chan struct{}, sendWindow) // a token per batch on its way
	failed, done := make(chan struct{}), make(chan struct{})
	var st sendStats
	var sendErr error
	go func() {
		defer close(done)
		stopped, refused := false, true // refused: every failure so far is an *AccessError
		for b := range sent {
			before := st.sent
			err := s.settleBatch(b, &st)
			var aerr *producer.AccessError
			if err != nil && !errors.As(err, &aerr) {
				refused = false
			}
			switch {
			case err != nil && !stopped:
				stopped, sendErr = true, err
				close(failed) // nothing is sent after this
			case stopped && len(b.items) > 0:
				// On its way before the failure was known: counted, and named.
				sendErr = fmt.Errorf("%w; lines %d-%d were already on their way: %d of %d sent", sendErr, b.firstLine(), b.lastLine(), st.sent-before, len(b.items))
			case !stopped:
				s.progress.set(b.read, st.status())
			}
			<-window
			free <- b
		}
		switch {
		case !stopped:
		case refused:
			// Refused, not lost: those writes did not happen.
			sendErr = fmt.Errorf("%w (sent so far: %d)", sendErr, st.sent)
		default:
			sendErr = fmt.Errorf("%w (sent so far: %d; writes Redis did not confirm may or may not have happened, and were not resent)", sendErr, st.sent)
		}
	}()
	// stop waits for the replies of the batches sent and returns err, or
	// else the first error they brought.
	stop := func(err error) (sendStats, error) {
		close(sent)
		<-done
		if err == nil {
			err = sendErr
		}
		return st, err
	}
	// handOff sends cur, once fewer than sendWindow batches are on their
	// way, and takes the next free batch; or, once a batch failed or ctx
	// ended, sends nothing more and says so.
	var cur *fileBatch
	handOff := func() bool {
		cur.read = lr.read
		select {
		case <-failed:
			return false
		case <-ctx.Done():
			return false
		case window <- struct{}{}:
		}
		select {
		case <-failed:
			return false
		default:
		}
		s.sendBatch(ctx, cur)
		sent <- cur
		select {
		case <-failed:
			return false
		case cur = <-free:
			cur.reset()
			return true
		}
	}
	cur = <-free
	for {
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		line, n, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return stop(fmt.Errorf("reading %s after line %d: %w", s.name, lr.no, err))
		}
		if lr.no == 1 {
			// Some editors start a UTF-8 file with a byte order mark; it is
			// no part of the first line's JSON.
			if rest, ok := bytes.CutPrefix(line, byteOrderMark); ok {
				line, n = rest, n-len(byteOrderMark)
			}
		}
		if len(bytes.TrimSpace(line)) == 0 && n <= lr.max {
			continue // blank lines are no events
		}
		var it producer.Item
		if n > lr.max {
			err = fmt.Errorf("line is %d bytes: its data cannot be under the cap of %d bytes", n, s.p.MaxPayload())
		} else {
			it, err = dec.parse(line, s.p, s.now)
		}
		if err != nil && bytes.HasPrefix(line, byteOrderMark) {
			err = fmt.Errorf("%w (a byte order mark is allowed only at the start of the input)", err)
		}
		cur.lines++
		if err != nil {
			cur.rejected++
			s.progress.printf(s.rejects, "%s: line %d: %v\n", s.name, lr.no, err)
			continue
		}
		cur.add(it, lr.no)
		if len(cur.items) == s.batch && !handOff() {
			return stop(ctx.Err())
		}
	}
	// The last batch may hold no events, only the count of the lines
	// rejected after the batch before.
	if cur.lines > 0 && !handOff() {
		return stop(ctx.Err())
	}
	st, err := stop(nil)
	s.progress.set(lr.read, st.status())
	return st, err
}

// fileBatch is the events of up to one batch of lines, and the count of
// lines read for it.
type fileBatch struct {
	items           []producer.Item
	lineNos         []int // input line of each item
	lines, rejected int   // lines read and rejected since the batch before
	read            int64 // input bytes read up to the batch's end, for the progress
	// data holds the items' data, one slab a batch rather than an
	// allocation an event; it is reused once the batch has been sent.
	data []byte
	// pending is the batch on its way to Redis (sendBatch), or err why it
	// could not be sent.
	pending *producer.Pending
	err     error
}

// firstLine and lastLine are the input lines of b's first and last events.
func (b *fileBatch) firstLine() int { return b.lineNos[0] }
func (b *fileBatch) lastLine() int  { return b.lineNos[len(b.lineNos)-1] }

func newFileBatch(n int) *fileBatch {
	return &fileBatch{items: make([]producer.Item, 0, n), lineNos: make([]int, 0, n)}
}

// add adds the item of input line no, with a copy of its data: the item's
// data may point into a buffer the next line overwrites.
func (b *fileBatch) add(it producer.Item, no int) {
	if it.Event.Data != nil {
		start := len(b.data)
		b.data = append(b.data, it.Event.Data...)
		it.Event.Data = b.data[start:len(b.data):len(b.data)]
	}
	b.items = append(b.items, it)
	b.lineNos = append(b.lineNos, no)
}

// reset empties b for the next batch. Call it only once b's items are
// sent: their data is written over.
func (b *fileBatch) reset() {
	b.items, b.lineNos, b.lines, b.rejected, b.read, b.data = b.items[:0], b.lineNos[:0], 0, 0, 0, b.data[:0]
	b.pending, b.err = nil, nil
}

// sendBatch sends b's events, if it has any: settleBatch reads what became
// of them.
func (s *fileSender) sendBatch(ctx context.Context, b *fileBatch) {
	if len(b.items) == 0 {
		return
	}
	if s.sending != nil {
		s.sending(b.firstLine())
	}
	b.pending, b.err = s.p.SendItems(ctx, s.stream, b.items)
}

// settleBatch waits for the replies of b's events and adds what became of
// b to st. A batch of only rejected lines is counted and was not sent.
func (s *fileSender) settleBatch(b *fileBatch, st *sendStats) error {
	st.lines += b.lines
	st.rejected += b.rejected
	if len(b.items) == 0 {
		return nil
	}
	if s.settling != nil {
		s.settling(b.firstLine())
	}
	var res []producer.Result
	err := b.err
	if err == nil {
		res, err = b.pending.Wait()
	}
	for i, r := range res {
		if r.Err == nil && r.Duplicate {
			st.duplicates++
			continue
		}
		if r.Err == nil {
			st.sent++
			if !b.items[i].Due.IsZero() {
				st.delayed++
			}
		}
	}
	if err != nil {
		return fmt.Errorf("sending lines %d-%d to stream %q: %w", b.firstLine(), b.lastLine(), s.stream, err)
	}
	return nil
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/streamworker/streamworker/wire"
)

// Message is one stream entry handed to a handler. The entry's fields, and
// what the runtime adds to its retried copies and dead letters, are those of
// package wire.
type Message struct {
	// ID is the stream entry ID, e.g. 1700000000000-0.
	ID string
	// Stream is the stream key the entry was read from.
	Stream string
	// Type is the routing key (the type field).
	Type string
	// Data is the payload (the data field), opaque bytes; empty, not nil,
	// when the field is there but empty. It shares memory with the entry
	// as read, which retries and dead letters copy: read it, and copy it
	// before changing it (its capacity is its length, so an append
	// copies) or keeping it past the handler (it holds the memory of the
	// whole read it came in, as the message's other strings do).
	Data []byte
	// OriginID is the entry ID the message had when it was first added; a
	// retried copy has a new ID but keeps its OriginID (a retry in place,
	// WORKER_RETRY_IN_PLACE_MAX, is the same entry: same ID).
	OriginID string
	// IdempotencyKey is the producer's id field, empty when none was set.
	IdempotencyKey string
	// Key is the partition key (the key field, producer.Event's Key), empty
	// when none was set. On a partitioned stream the messages of a key run
	// one at a time, in stream order.
	Key string
	// Attempt is 1 on the first try and grows with each retry, up to
	// 1,000,000. It comes from the entry's attempt field, which anyone who
	// can write to the stream can set: a value that is not decimal digits,
	// or is 0, counts as 1; one above 1,000,000 counts as 1,000,000, past
	// any attempt limit. The crash-loop protection does not depend on it:
	// deliveries that never finished are counted by Redis.
	Attempt int
	// Deliveries is how many times Redis has delivered this entry to the
	// group, this delivery included: 1 when it was read fresh, more when it
	// was claimed from a consumer that did not finish it (the delivery
	// count of XPENDING, XCLAIM and XAUTOCLAIM). Each claim counts one, so
	// a later delivery of the entry always has a higher count than every
	// earlier one, whichever consumer made it: it is a fencing token.
	// Write it beside a handler's effect in a store that keeps the highest
	// token seen per entry and refuses lower ones, and a handler whose
	// lease was taken over cannot overwrite the work of the one that took
	// it over. A retried copy is a new entry and counts from 1 again (its
	// Attempt grows instead); a retry in place keeps the count it had;
	// renewing a running handler's lease does not count.
	Deliveries int64
	// Metadata holds every other field (traceparent included); nil when
	// there are none. The fields above are not in it.
	Metadata map[string]string

	fields  []string      // the entry as read, field, value, …: for retry and DLQ copies
	size    int           // bytes of the entry's field names and values
	settle  bool          // a suspect (see isolate.go): acknowledged before the next one runs
	readAt  time.Time     // when the read or claim that delivered it (or its last lease renewal) was sent
	started time.Time     // when its handler was called, if the runtime called it
	done    chan struct{} // when not nil, closed once the outcome is recorded
	effects *Effects      // commands to commit with the acknowledgement (effects.go), or nil
	held    *inliner      // when not nil, the fetcher whose next read its acknowledgement waits for (inline.go)
	retried bool          // a retry in place (inplace.go): hidden from our reclaim passes until its handler returns
	// retryDue: it ran on a fetcher and failed, and its retry in place
	// (ordered.go) is to be waited for on a handler goroutine (engine.work)
	retryDue bool
}

// newMessage builds a Message from an entry as go-redis returns it (a
// claim's entries; reads are parsed by parseRead).
func newMessage(stream string, e xEntry) *Message {
	m := &Message{}
	m.fill(stream, e.ID, flatFields(e.Values))
	return m
}

// newMessages builds the Messages of entries as go-redis returns them with
// two allocations, not two per message: the Messages share one array. They
// stay alive together, which is why a read is bounded in bytes as well as
// in entries (see readSizer).
func newMessages(stream string, entries []xEntry, readAt time.Time) []*Message {
	ms := make([]Message, len(entries))
	out := make([]*Message, len(entries))
	for i, e := range entries {
		m := &ms[i]
		m.fill(stream, e.ID, flatFields(e.Values))
		m.readAt = readAt
		out[i] = m
	}
	return out
}

// flatFields is a go-redis field map as a field, value, … list. go-redis
// returns strings; anything else is printed rather than trusted.
func flatFields(values map[string]any) []string {
	if len(values) == 0 {
		return nil
	}
	out := make([]string, 0, 2*len(values))
	for k, v := range values {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		out = append(out, k, s)
	}
	return out
}

// fill sets m from the entry's ID and fields (field, value, …). Data is the
// data field's own bytes, not a copy, so a read's payloads are held once,
// not twice, while its messages run. Where a field name comes twice, the
// last value counts, as in the map go-redis would make of it.
func (m *Message) fill(stream, id string, fields []string) {
	m.ID, m.Stream, m.Attempt, m.Deliveries, m.fields = id, stream, 1, 1, fields
	size := 0
	for i := 0; i+1 < len(fields); i += 2 {
		k, v := fields[i], fields[i+1]
		size += len(k) + len(v)
		switch k {
		case wire.FieldType:
			m.Type = v
		case wire.FieldData:
			m.Data = bytesOf(v)
		case wire.FieldID:
			m.IdempotencyKey = v
		case wire.FieldOriginID:
			m.OriginID = v
		case wire.FieldKey:
			m.Key = v
		case wire.FieldAttempt:
			m.Attempt = parseAttempt(v)
		default:
			if m.Metadata == nil {
				m.Metadata = make(map[string]string, 2)
			}
			m.Metadata[k] = v
		}
	}
	m.size = size
	if m.OriginID == "" {
		m.OriginID = m.ID
	}
}

// field is the value of the entry's field k (the last, if it comes twice).
func (m *Message) field(k string) (string, bool) {
	v, ok := "", false
	for i := 0; i+1 < len(m.fields); i += 2 {
		if m.fields[i] == k {
			v, ok = m.fields[i+1], true
		}
	}
	return v, ok
}

// maxAttempt bounds Message.Attempt, far above any WORKER_MAX_ATTEMPTS, so
// that the arithmetic on attempts cannot overflow.
const maxAttempt = 1_000_000

// parseAttempt reads an attempt field, which is untrusted: decimal digits
// above zero, capped at maxAttempt; anything else is the first attempt.
func parseAttempt(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 1
		}
		if n <= maxAttempt { // past it, only the digits are checked
			n = n*10 + int(c-'0')
		}
	}
	return max(1, min(n, maxAttempt))
}

// bytesOf returns the bytes of s without copying them. The runtime only
// reads them, and handlers are told not to write them (Message.Data).
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// copyFields returns the entry's fields as a flat field/value list with the
// named fields left out: type and data first (what a reader of the DLQ
// looks for), then the others in the entry's order, each name once with
// its last value.
func (m *Message) copyFields(skip ...string) []string {
	out := make([]string, 0, len(m.fields)+8)
	for _, k := range []string{wire.FieldType, wire.FieldData} {
		if v, ok := m.field(k); ok {
			out = append(out, k, v)
		}
	}
	head := len(out)
	var at map[string]int // where each name is in out, for entries with many fields
	if len(m.fields) > 32 {
		at = make(map[string]int, len(m.fields)/2)
	}
next:
	for i := 0; i+1 < len(m.fields); i += 2 {
		k, v := m.fields[i], m.fields[i+1]
		if k == wire.FieldType || k == wire.FieldData {
			continue
		}
		for _, s := range skip {
			if k == s {
				continue next
			}
		}
		if at != nil {
			if j, ok := at[k]; ok {
				out[j+1] = v
				continue
			}
			at[k] = len(out)
		} else {
			for j := head; j < len(out); j += 2 {
				if out[j] == k {
					out[j+1] = v
					continue next
				}
			}
		}
		out = append(out, k, v)
	}
	return out
}

// Handler processes one message. A nil error acknowledges it; an error
// schedules a retry with backoff until the attempts run out; an error wrapped
// with Permanent sends it to the dead-letter stream at once.
type Handler interface {
	HandleMessage(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// HandleMessage calls f(ctx, m).
func (f HandlerFunc) HandleMessage(ctx context.Context, m *Message) error { return f(ctx, m) }

// Middleware wraps a Handler, as net/http middleware wraps an http.Handler.
type Middleware func(Handler) Handler

var (
	// ErrNoType is returned for an entry without a type field; it is
	// permanent.
	ErrNoType = errors.New("message has no type field")
	// ErrNoHandler is returned for a type nobody handles; it is permanent.
	ErrNoHandler = errors.New("no handler for message type")
	// ErrTooLarge is the reason an entry larger than
	// WORKER_MAX_MESSAGE_BYTES is dead-lettered without running its
	// handler; it is permanent.
	ErrTooLarge = errors.New("message is too large")
)

// PermanentError marks an error that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not retryable: the message goes to the dead-letter
// stream at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// DelayError asks the runtime to run the message again after After without
// counting an attempt: the message is not failing, it must wait (a rate
// limit, a resource not yet ready).
type DelayError struct {
	After time.Duration
	Err   error // why; may be nil
}

func (e *DelayError) Error() string {
	if e.Err == nil {
		return "delayed " + e.After.String()
	}
	return "delayed " + e.After.String() + ": " + e.Err.Error()
}

func (e *DelayError) Unwrap() error { return e.Err }

// Delay returns an error that reschedules the message to run again after d,
// at the same attempt: it is acknowledged and a copy waits in the stream's
// delayed set, so it holds no handler slot and survives restarts.
func Delay(d time.Duration, reason error) error {
	return &DelayError{After: max(d, time.Millisecond), Err: reason}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p) || errors.Is(err, ErrNoType) || errors.Is(err, ErrNoHandler) || errors.Is(err, ErrTooLarge)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
)

func TestLineReader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300<<10) // longer than the reader's buffer
	in := "a\r\n\nbc\n" + long + "\r\n" + "tail"
	type line struct {
		Text   string
		Length int
		No     int
	}
	lr := newLineReader(strings.NewReader(in), 10)
	var got []line
	for {
		l, n, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line{string(l), n, lr.no})
	}
	want := []line{
		{"a", 1, 1},
		{"", 0, 2},
		{"bc", 2, 3},
		{"xxxxxxxxxx", len(long), 4}, // cut to max, full length reported
		{"tail", 4, 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if lr.read != int64(len(in)) {
		t.Errorf("read = %d, want %d", lr.read, len(in))
	}
}

func TestParseLine(t *testing.T) {
	t.Parallel()
	p := producer.New(nil, producer.Options{MaxPayload: 8})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, line string
		want       producer.Item
	}{
		{"TypeOnly", `{"type":"a"}`, producer.Item{Event: producer.Event{Type: "a"}}},
		{"ObjectData", `{"type":"a","data":{"k": 1}}`, producer.Item{Event: producer.Event{Type: "a", Data: []byte(`{"k": 1}`)}}},
		{"StringDataKeepsItsQuotes", `{"type":"a","data":"hi"}`, producer.Item{Event: producer.Event{Type: "a", Data: []byte(`"hi"`)}}},
		{"IDAndDelay", ` {"id":"k","delay":"1m30s","type":"a"} `, producer.Item{Event: producer.Event{Type: "a", ID: "k"}, Due: now.Add(90 * time.Second)}},
		{"ZeroDelayIsNow", `{"type":"a","delay":"0s"}`, producer.Item{Event: producer.Event{Type: "a"}}},
		{"Key", `{"type":"a","key":"customer-3","id":"k"}`, producer.Item{Event: producer.Event{Type: "a", ID: "k", Key: "customer-3"}}},
		{"ReplacementCharacterAsWritten", `{"type":"a\ufffd�","id":"\uFFFD"}`, producer.Item{Event: producer.Event{Type: "a\uFFFD\uFFFD", ID: "\uFFFD"}}},
		{"SurrogatePair", `{"type":"\ud83d\ude00","key":"\uD83D\uDE00"}`, producer.Item{Event: producer.Event{Type: "\U0001F600", Key: "\U0001F600"}}},
		{"InvalidUTF8InDataIsKept", "{\"type\":\"a\",\"data\":\"\xff\"}", producer.Item{Event: producer.Event{Type: "a", Data: []byte("\"\xff\"")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLine([]byte(tc.line), p, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("item (-want +got):\n%s", diff)
			}
		})
	}
	// The rejected lines and their reasons are in badLines, run through the
	// binary by testSendFile; this checks the cap applies to data as stored.
	if _, err := parseLine([]byte(`{"type":"a","data":"1234567"}`), p, now); !errors.Is(err, producer.ErrTooLarge) {
		t.Errorf("9 bytes of data with a cap of 8: err = %v, want ErrTooLarge", err)
	}
}

func TestLoadData(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 10, 20, 100, 4096} {
		d := loadData(12345, size)
		if want := max(size, len(`{"seq":12345,"pad":""}`)); len(d) != want {
			t.Errorf("size %d: %d bytes, want %d", size, len(d), want)
		}
	}
}

// The due time of the n-th event grows with n and never wraps around into
// the past, which would send the rest at once.
func TestRateOffset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		rate float64
		want time.Duration
	}{
		{0, 100, 0},
		{1, 100, 10 * time.Millisecond},
		{150, 100, 1500 * time.Millisecond},
		{3, minRate, 3000 * time.Second},
		{math.MaxInt64, minRate, math.MaxInt64},
		{math.MaxInt64, 1, math.MaxInt64},
		{1e6, maxRate, 100 * time.Millisecond},
	} {
		if got := rateOffset(tc.n, tc.rate); got != tc.want {
			t.Errorf("rateOffset(%d, %g) = %s, want %s", tc.n, tc.rate, got, tc.want)
		}
	}
}

func TestPlainProgressIsPeriodic(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	p := newProgress(&out, false, 200, true, time.Second)
	clock := p.last
	p.now = func() time.Time { return clock }
	p.set(10, "sent 1, rejected 0") // too soon
	clock = clock.Add(time.Second)
	p.set(50, "sent 5, rejected 0")
	clock = clock.Add(500 * time.Millisecond)
	p.set(100, "sent 10, rejected 0") // too soon again
	clock = clock.Add(time.Second)
	p.set(200, "sent 20, rejected 1")
	p.finish()
	want := "producer: sent 5, rejected 0 (25% of input read)\nproducer: sent 20, rejected 1 (100% of input read)\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("progress lines (-want +got):\n%s", diff)
	}
}

// The fast path of decodeLine decides exactly as the strict decoder does.
func FuzzDecodeLine(f *testing.F) {
	for _, b := range badLines {
		f.Add(b.line)
	}
	for _, s := range []string{
		`{"type":"a"}`, ` { "type" : "a" , "data" : { "x" : [1, "}", {"y": "]\""}] } } `,
		`{"TYPE":"a"}`, `{"typ\u0065":"a"}`, `{"type":"a","data":"\\"}`, `null`, `{}`, `{"type":"a",}`,
		`{"type":"a","data":1e3,"id":"k","delay":"1s"}`, `{"data":true,"type":"b"}`, `{"type":"a"}x`,
		`{"type":"a","key":"k"}`, `{"type":"a","key":7}`, `{"type":"a","KEY":"k"}`, `{"type":"a","keys":"k"}`,
		`{"type":"a","data":{"type":1,"extra":2}}`, `{"type":"a","extra":{"type":"b"}}`, "{\"type\":\"a\"}\t",
		`{"type":"ä","data":"\u00e4"}`, `{"ſtype":1}`, `{"type":"a","data":[]}`, `{"type":"a","data":-0.5}`,
		`{"type":"a","data":null}`, `{"type":"a","id":null,"key":null}`, `{"type":"a","type":"a"}`, `{"type":"a\"b\u00e4"}`,
		`{"type":"a","data":{"k":1,"k":2}}`, `{"type":"a"}{"type":"b"}`, `{"type":"a"}]`, `{"type":"a","id":"\/x","unique_for":"1s"}`,
		`{"type":"a","data":"\ud800"}`, `{"type":"\ud83d\ude00","data":{"t":"\u0000"}}`, `{"type":"a" ,"data" :[ 1 , {} ] }  `,
		`{"type":"a","type":"b","id":"x","id":null,"key":"k","key":"l","data":1,"data":{}}`, // the last of each name wins
	} {
		f.Add(s)
	}
	var dec lineDecoder // one for every line, as for the lines of a file
	f.Fuzz(func(t *testing.T, line string) {
		strict, serr := decodeLineStrict([]byte(line))
		for name, decode := range map[string]func([]byte) (fileLine, error){"decodeLine": decodeLine, "lineDecoder": dec.decode} {
			got, err := decode([]byte(line))
			if (err == nil) != (serr == nil) || (err != nil && err.Error() != serr.Error()) {
				t.Fatalf("%q: %s error %v, strict %v", line, name, err, serr)
			}
			if err == nil && !cmp.Equal(got, strict) {
				t.Fatalf("%q: %s %s, strict %s", line, name, dump(got), dump(strict))
			}
		}
	})
}

// The common lines take lineDecoder's fast path: FuzzDecodeLine shows it
// decides as the strict decoder does, this that it is taken.
func TestLineDecoderFastPath(t *testing.T) {
	t.Parallel()
	var dec lineDecoder
	for _, line := range []string{
		`{"type":"order.created","data":{"order_id":"ord-1","amount_cents":129900,"note":"a \"b\""}}`,
		` {"id":"k","key":"c-3","delay":"1m30s","type":"a\u00e4","data":[1,"x",null]} `,
		`{"type":"a","id":"k","unique_for":"1h","data":"x"}`,
		`{"type":"a","id":null}`,
		`{"type":"a","data":{"k":1,"k":2},"id":"x","id":"y"}`, // duplicate names, the last one winning as in encoding/json
	} {
		if _, ok := dec.fast([]byte(line)); !ok {
			t.Errorf("%s: not on the fast path", line)
		}
	}
}

func dump(l fileLine) string {
	s := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	return "type=" + s(l.Type) + " data=" + string(l.Data) + " id=" + s(l.ID) + " key=" + s(l.Key) + " delay=" + s(l.Delay) + " unique_for=" + s(l.UniqueFor)
}

// parseLine refuses a line with a one-line reason or gives an event that
// holds what the line wrote: a type, id and key of valid UTF-8 (none with
// U+FFFD in place of what was written), data that is JSON within the cap, a
// due time after now or none.
func FuzzParseLine(f *testing.F) {
	for _, b := range badLines {
		// The 70 KiB line never reaches parseLine (the line reader cuts
		// it), and minimizing what grows from it stalls the fuzzer.
		if len(b.line) <= 4<<10 {
			f.Add(b.line)
		}
	}
	for _, s := range []string{
		`{"type":"a"}`, `{"type":"a","data":{"k":[1,"x"]},"id":"k","key":"c-3","delay":"1m30s"}`, `null`, `{}`,
		`{"type":"\ufffd","id":"\uFFFD"}`, `{"type":"\ud83d\ude00"}`, `{"type":"\ud83d"}`, `{"type":"\ude00\ud83d"}`,
		`{"type":"\ud83d\u0041"}`, `{"type":"a\\ud800"}`, "{\"type\":\"\xff\"}", "{\"type\":\"a\",\"data\":\"\xff\"}",
		"{\"TYPE\":\"a\xc3\"}", `{"type":"a","delay":"2562047h47m16.854775807s"}`, `{"type":"a","delay":"9999999h"}`,
		`{"type":"a","delay":"-0s"}`, `{"type":"a","data":"` + strings.Repeat("x", 62) + `"}`, "\xef\xbb\xbf{\"type\":\"a\"}",
		`{"type":"a","type":"b"}`, `{"type":"a","Type":"\ud800"}`, `{"type":"a"}` + "\n", `{"type":"\u0000"}`,
	} {
		f.Add(s)
	}
	p := producer.New(nil, producer.Options{MaxPayload: 64})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line string) {
		it, err := parseLine([]byte(line), p, now)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) {
				t.Fatalf("%q: reason %q is not one line of text", line, msg)
			}
			return
		}
		e := it.Event
		if e.Type == "" {
			t.Fatalf("%q: accepted with no type", line)
		}
		for name, s := range map[string]string{"type": e.Type, "id": e.ID, "key": e.Key} {
			if !utf8.ValidString(s) {
				t.Fatalf("%q: accepted with %s %q, not valid UTF-8", line, name, s)
			}
			// A U+FFFD the line did not write (as itself or as \ufffd) is
			// encoding/json's replacement of what it did write.
			written := strings.Contains(line, "\uFFFD") || strings.Contains(strings.ToLower(line), `\ufffd`)
			if strings.ContainsRune(s, utf8.RuneError) && !written {
				t.Fatalf("%q: accepted with %s %q, a replacement", line, name, s)
			}
		}
		if len(e.Data) > p.MaxPayload() {
			t.Fatalf("%q: accepted %d bytes of data over the cap of %d", line, len(e.Data), p.MaxPayload())
		}
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			t.Fatalf("%q: accepted data %q that is not JSON", line, e.Data)
		}
		if !it.Due.IsZero() && !it.Due.After(now) {
			t.Fatalf("%q: accepted with due %s, not after now %s", line, it.Due, now)
		}
		if _, err := decodeLineStrict([]byte(line)); err != nil {
			t.Fatalf("%q: accepted, but the strict decoder says %v", line, err)
		}
	})
}

// A Redis error mid-input stops the send at the failed batch, with the
// exact count sent. The batches behind it, written before the failure was
// known (sendWindow-1 at most), are waited for, counted and named; the
// batch after them is never sent, though it was decoded and waiting.
func TestSendStopsAtFailedBatch(t *testing.T) {
	srv := testredis.Shared(t)
	rc := srv.Client(t)
	client, err := producer.NewClient(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	stream := testredis.Prefix(t) + "orders"
	// Line 15 is delayed, and the delayed set is a string: only its write fails.
	rc.Set(ctx, wire.DelayedKey(stream), "not a sorted set", 0)
	// Batches of 10 lines: 1-10, then 11-20 (which fails), then as many as
	// may be on their way with it, then one more that must never go.
	lastOnItsWay := 10*sendWindow + 1 // first line of the last batch on its way
	lines := lastOnItsWay + 19
	var in strings.Builder
	for i := 1; i <= lines; i++ {
		delay := ""
		if i == 15 {
			delay = `,"delay":"1h"`
		}
		fmt.Fprintf(&in, `{"type":"t","data":%d%s}`+"\n", i, delay)
	}
	var sending []int
	allSent := make(chan struct{})
	s := &fileSender{
		p: producer.New(client, producer.Options{}), stream: stream, name: "in", batch: 10,
		rejects: io.Discard, now: time.Now, progress: newProgress(io.Discard, false, -1, true, time.Hour),
		sending: func(first int) {
			sending = append(sending, first)
			if first == lastOnItsWay {
				close(allSent)
			}
		},
		settling: func(first int) {
			if first != 11 {
				return
			}
			select { // the window is full before the failure of 11-20 is known
			case <-allSent:
			case <-time.After(time.Minute):
				t.Errorf("the batch of line %d was not sent while 11-20 waited for its replies", lastOnItsWay)
			}
		},
	}
	st, err := s.send(ctx, strings.NewReader(in.String()))
	var wantSending []int
	for first := 1; first <= lastOnItsWay; first += 10 {
		wantSending = append(wantSending, first)
	}
	wantSent := lastOnItsWay + 9 - 1 // every line to the end of the last batch on its way, but 15
	onItsWay := ""
	for _, first := range wantSending[2:] {
		onItsWay += fmt.Sprintf("; lines %d-%d were already on their way: 10 of 10 sent", first, first+9)
	}
	if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("sending lines 11-20 to stream %q: ", stream)) ||
		!strings.HasSuffix(err.Error(), fmt.Sprintf("%s (sent so far: %d; writes Redis did not confirm may or may not have happened, and were not resent)", onItsWay, wantSent)) {
		t.Fatalf("err = %v, want the failure of lines 11-20, then the batches on their way behind it, %d sent", err, wantSent)
	}
	if st.sent != wantSent || st.lines != wantSent+1 {
		t.Errorf("sent %d of %d lines, want %d of %d", st.sent, st.lines, wantSent, wantSent+1)
	}
	if diff := cmp.Diff(wantSending, sending); diff != "" {
		t.Errorf("batches sent, by first line (-want +got):\n%s", diff)
	}
	var data []string
	for _, e := range entries(t, rc, stream) {
		data = append(data, e["data"].(string))
	}
	var want []string
	for i := 1; i <= wantSent+1; i++ {
		if i != 15 {
			want = append(want, strconv.Itoa(i))
		}
	}
	if diff := cmp.Diff(want, data); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
}

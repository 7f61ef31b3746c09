package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testredis"
	"github.com/streamworker/streamworker/producer"
	"github.com/streamworker/streamworker/wire"
)

// benchLines is the size of the input of BenchmarkSendFile.
const benchLines = 100_000

// BenchmarkSendFile sends a 100,000-line JSONL input (7.8 MB, 78 bytes a line)
// to a throwaway redis-server on loopback, three ways:
//
//   - batch=500: the code behind `producer send --file` with its default
//     batch, 500 events per pipelined round trip;
//   - batch=1: the same code, one event per round trip;
//   - xadd-per-line: each line parsed the same way and sent with
//     Producer.Publish, one XADD per round trip.
//
// Each operation sends the whole input to a fresh stream; events/s is the
// metric to compare. Run it with
//
//	go test -run '^$' -bench SendFile -benchtime 3x ./cmd/producer
func BenchmarkSendFile(b *testing.B) {
	var input bytes.Buffer
	for i := range benchLines {
		fmt.Fprintf(&input, `{"type":"order.created","data":{"order":%d,"total":%d},"id":"order-%d"}`+"\n", i, 10+i%90, i)
	}
	srv := testredis.Shared(b)
	admin := srv.Client(b)
	client, err := producer.NewClient(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	p := producer.New(client, producer.Options{})
	ctx := context.Background()

	send := map[string]func(stream string, in io.Reader) (int, error){
		"batch=500": func(stream string, in io.Reader) (int, error) {
			return fileSend(ctx, p, stream, in, 500)
		},
		"batch=1": func(stream string, in io.Reader) (int, error) {
			return fileSend(ctx, p, stream, in, 1)
		},
		"xadd-per-line": func(stream string, in io.Reader) (int, error) {
			lr := newLineReader(in, p.MaxPayload()+64<<10)
			sent := 0
			for {
				line, _, err := lr.next()
				if errors.Is(err, io.EOF) {
					return sent, nil
				}
				it, err := parseLine(line, p, time.Now())
				if err != nil {
					return sent, err
				}
				if _, err := p.Publish(ctx, stream, it.Event); err != nil {
					return sent, err
				}
				sent++
			}
		},
	}
	for _, name := range []string{"batch=500", "batch=1", "xadd-per-line"} {
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				stream := testredis.Prefix(b) + "bench"
				in := bytes.NewReader(input.Bytes())
				start := time.Now()
				b.StartTimer()
				sent, err := send[name](stream, in)
				b.StopTimer()
				total += time.Since(start)
				if err != nil || sent != benchLines {
					b.Fatalf("sent %d of %d: %v", sent, benchLines, err)
				}
				if n := admin.XLen(ctx, stream).Val(); n != benchLines {
					b.Fatalf("stream has %d entries, want %d", n, benchLines)
				}
				admin.Del(ctx, stream, wire.DelayedKey(stream))
			}
			b.ReportMetric(float64(benchLines*b.N)/total.Seconds(), "events/s")
		})
	}
}

// fileSend is `producer send --file` without the command line around it.
func fileSend(ctx context.Context, p *producer.Producer, stream string, in io.Reader, batch int) (int, error) {
	s := &fileSender{
		p: p, stream: stream, name: "bench", batch: batch, rejects: io.Discard, now: time.Now,
		progress: newProgress(io.Discard, false, -1, true, time.Hour),
	}
	st, err := s.send(ctx, in)
	if err == nil && st.rejected > 0 {
		err = fmt.Errorf("%d lines rejected", st.rejected)
	}
	return st.sent, err
}

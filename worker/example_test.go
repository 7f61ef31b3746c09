package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/streamworker/streamworker/worker"
)

// A Mux routes each message by its type field. HandleMessage is what the
// runtime calls for every entry it reads; calling it directly is how a
// handler is tried without Redis.
func ExampleMux() {
	mux := worker.NewMux()
	mux.HandleFunc("order.created", func(ctx context.Context, m *worker.Message) error {
		var order struct {
			ID    string `json:"id"`
			Total int    `json:"total"`
		}
		if err := json.Unmarshal(m.Data, &order); err != nil {
			// Retrying cannot fix a payload that does not decode.
			return worker.Permanent(fmt.Errorf("decoding order: %w", err))
		}
		fmt.Printf("order %s: total %d (attempt %d)\n", order.ID, order.Total, m.Attempt)
		return nil
	})
	fmt.Println("types:", mux.Types())

	ctx := context.Background()
	err := mux.HandleMessage(ctx, &worker.Message{
		ID: "1700000000000-0", Type: "order.created", Data: []byte(`{"id":"A-1","total":42}`), Attempt: 1,
	})
	fmt.Println("error:", err)

	err = mux.HandleMessage(ctx, &worker.Message{
		ID: "1700000000001-0", Type: "order.created", Data: []byte(`not json`), Attempt: 1,
	})
	fmt.Println("bad payload is permanent:", worker.IsPermanent(err))

	err = mux.HandleMessage(ctx, &worker.Message{ID: "1700000000002-0", Type: "order.cancelled"})
	fmt.Println(err)
	fmt.Println("unknown type is permanent:", worker.IsPermanent(err), errors.Is(err, worker.ErrNoHandler))
	// Output:
	// types: [order.created]
	// order A-1: total 42 (attempt 1)
	// error: <nil>
	// bad payload is permanent: true
	// no handler for message type "order.cancelled"
	// unknown type is permanent: true true
}

// Permanent marks an error that retrying cannot fix: the runtime dead-letters
// the message at once instead of retrying it with backoff. The mark survives
// wrapping, and the cause stays reachable with errors.Is.
func ExamplePermanent() {
	errNotFound := errors.New("customer not found")

	err := fmt.Errorf("order A-1: %w", worker.Permanent(errNotFound))
	fmt.Println(err)
	fmt.Println(worker.IsPermanent(err), errors.Is(err, errNotFound))

	// Any other error is retried until the attempts run out.
	fmt.Println(worker.IsPermanent(errors.New("connection refused")))
	// Permanent(nil) is nil, so `return worker.Permanent(err)` is safe.
	fmt.Println(worker.Permanent(nil) == nil)
	// Output:
	// order A-1: permanent: customer not found
	// true true
	// false
	// true
}

// Middleware wraps every handler of a Mux, the first one given outermost,
// as net/http middleware wraps a handler. Here a tracing middleware sits
// outside worker.Recover, so it sees a handler's panic as an ordinary error.
func ExampleMux_Use() {
	trace := func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
			fmt.Printf("start %s\n", m.Type)
			err := next.HandleMessage(ctx, m)
			fmt.Printf("end %s failed=%t\n", m.Type, err != nil)
			return err
		})
	}

	mux := worker.NewMux()
	mux.Use(trace, worker.Recover())
	mux.HandleFunc("greet", func(ctx context.Context, m *worker.Message) error {
		fmt.Printf("hello, %s\n", m.Data)
		return nil
	})
	mux.HandleFunc("explode", func(ctx context.Context, m *worker.Message) error {
		panic("boom")
	})

	ctx := context.Background()
	_ = mux.HandleMessage(ctx, &worker.Message{Type: "greet", Data: []byte("world")})
	err := mux.HandleMessage(ctx, &worker.Message{Type: "explode"})

	var perr *worker.PanicError
	if errors.As(err, &perr) {
		fmt.Println("recovered:", perr.Value)
	}
	// Output:
	// start greet
	// hello, world
	// end greet failed=false
	// start explode
	// end explode failed=true
	// recovered: boom
}

// Timeout bounds each handler call with a context deadline and says so in the
// error of a handler that ran out of time.
func ExampleTimeout() {
	mux := worker.NewMux()
	mux.Use(worker.Timeout(10 * time.Millisecond))
	mux.HandleFunc("slow", func(ctx context.Context, m *worker.Message) error {
		<-ctx.Done() // a handler that honours its context stops here
		return ctx.Err()
	})

	err := mux.HandleMessage(context.Background(), &worker.Message{Type: "slow"})
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded), worker.IsPermanent(err))
	// Output:
	// handler timed out after 10ms: context deadline exceeded
	// true false
}

// fencedStore is a downstream store that keeps, per stream entry, the
// highest delivery count it has accepted a write for, and refuses writes
// with a lower one: the check a database does with a conditional update
// (UPDATE … WHERE token <= $1).
type fencedStore struct {
	token map[string]int64
	value map[string]string
}

func (s *fencedStore) write(entry string, token int64, v string) error {
	if token < s.token[entry] {
		return fmt.Errorf("fenced: token %d is older than %d", token, s.token[entry])
	}
	s.token[entry], s.value[entry] = token, v
	return nil
}

// Message.Deliveries is a fencing token: a handler whose entry was claimed by
// another consumer (its lease lost while it stalled) writes with a lower
// count than the consumer that took it over, and the store refuses it.
func ExampleMessage_Deliveries() {
	store := &fencedStore{token: map[string]int64{}, value: map[string]string{}}
	handle := func(_ context.Context, m *worker.Message) error {
		if err := store.write(m.ID, m.Deliveries, "shipped by delivery "+fmt.Sprint(m.Deliveries)); err != nil {
			return worker.Permanent(err)
		}
		return nil
	}
	ctx := context.Background()
	// The first delivery stalls; the entry is claimed and delivered again.
	stalled := &worker.Message{ID: "1700000000000-0", Type: "order.ship", Deliveries: 1}
	takeover := &worker.Message{ID: "1700000000000-0", Type: "order.ship", Deliveries: 2}
	fmt.Println(handle(ctx, takeover))
	fmt.Println(handle(ctx, stalled)) // the stalled handler wakes up late
	fmt.Println(store.value["1700000000000-0"])
	// Output:
	// <nil>
	// permanent: fenced: token 1 is older than 2
	// shipped by delivery 2
}

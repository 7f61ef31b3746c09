package producer_test

import (
	"errors"
	"fmt"

	"github.com/streamworker/streamworker/producer"
)

// Check is what every publish runs first: an event without a type, or with
// data over the cap, is refused before anything reaches Redis, with an error
// that says why.
func ExampleProducer_Check() {
	p := producer.New(nil, producer.Options{MaxPayload: 16}) // Check needs no client
	fmt.Println(p.Check(producer.Event{Type: "order.created", Data: []byte(`{"order":7}`)}))
	err := p.Check(producer.Event{Type: "report.upload", Data: []byte(`{"pdf":"JVBERi0xLjcKJcfs..."}`)})
	fmt.Println(err)
	fmt.Println(errors.Is(err, producer.ErrTooLarge))
	fmt.Println(p.Check(producer.Event{Data: []byte(`{}`)}))
	// Output:
	// <nil>
	// event too large: data is 29 bytes, the cap is 16 bytes; store the payload elsewhere and send a reference
	// true
	// event has no type
}

// With Partitions, a stream is split into partition streams and each event
// goes to one: by its partition key, so that one key's events keep their
// order; else by its ID; else round-robin. The worker consumes the same
// partitions (WORKER_PARTITIONS).
func ExampleProducer_Route() {
	p := producer.New(nil, producer.Options{Partitions: 4}) // Route needs no client
	for _, e := range []producer.Event{
		{Type: "order.created", Key: "customer-42"},
		{Type: "order.paid", Key: "customer-42"},
		{Type: "order.created", ID: "order-7"},
		{Type: "ping"},
		{Type: "ping"},
	} {
		stream, _ := p.Route("orders", e)
		fmt.Println(e.Type, "->", stream)
	}
	_, err := p.Route("{orders}", producer.Event{Type: "ping"})
	fmt.Println(err)
	// Output:
	// order.created -> {orders:2}
	// order.paid -> {orders:2}
	// order.created -> {orders:3}
	// ping -> {orders:0}
	// ping -> {orders:1}
	// bad partitioning: stream "{orders}": a partitioned stream is named without braces; its 4 partitions are {{orders}:0} … {{orders}:3}, each a hash tag of its own
}

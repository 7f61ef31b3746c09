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

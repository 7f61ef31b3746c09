package wire_test

import (
	"fmt"

	"github.com/streamworker/streamworker/wire"
)

// A producer in any language schedules an event by writing this member,
// scored by its due time in unix ms, to the stream's delayed set.
func ExampleEncodeEnvelope() {
	member := wire.EncodeEnvelope("1-0", []string{wire.FieldType, "order.created", wire.FieldData, "{}"})
	fmt.Println(member)
	token, fields, err := wire.DecodeEnvelope(member)
	fmt.Println(token, fields, err)
	fmt.Println(wire.DelayedKey("{orders}"))
	// Output:
	// 3:1-04:type13:order.created4:data2:{}
	// 1-0 [type order.created data {}] <nil>
	// {orders}:delayed
}

// The events of one partition key go to one partition stream.
func ExamplePartitionFor() {
	for _, key := range []string{"customer-7", "customer-8", ""} {
		fmt.Printf("%q %s\n", key, wire.PartitionStream("orders", wire.PartitionFor(key, 16)))
	}
	// Output:
	// "customer-7" {orders:1}
	// "customer-8" {orders:12}
	// "" {orders:5}
}

// A stream's keys share its hash tag, and so its slot.
func ExampleSlot() {
	fmt.Println(wire.Slot("{orders}"), wire.Slot(wire.DeadLetterKey("{orders}")), wire.Slot("orders:dlq"))
	// Output:
	// 105 105 9954
}

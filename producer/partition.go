package producer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/streamworker/streamworker/wire"
)

// ErrPartitioning is returned for partitioning that cannot work: a negative
// Options.Partitions, or a partitioned stream whose name has braces.
var ErrPartitioning = errors.New("bad partitioning")

// Route returns the stream key e goes to on stream. Without partitioning
// (Options.Partitions 0 or 1) that is stream itself. With n partitions it is
// wire.PartitionStream(stream, i) ({stream:i}), where i is chosen by
//
//  1. the event's partition key (Event.Key), wire.PartitionFor(key, n):
//     events with one key go to one partition, in the order sent, and the
//     worker runs them one at a time, in that order;
//  2. else its ID, wire.PartitionFor(id, n), so that a resend of an event
//     lands where the first went and the worker's dedupe window sees it;
//  3. else round-robin over the partitions, in the order Route is called.
//
// A partitioned stream is named without braces: each partition's name is a
// hash tag of its own, so the partitions spread over a Redis Cluster's nodes.
func (p *Producer) Route(stream string, e Event) (string, error) {
	n := p.opts.Partitions
	switch {
	case n < 0:
		return "", fmt.Errorf("%w: Options.Partitions is %d: want 0 or 1 (one stream) or more partitions", ErrPartitioning, n)
	case n <= 1:
		return stream, nil
	case strings.ContainsAny(stream, "{}"):
		return "", fmt.Errorf("%w: stream %q: a partitioned stream is named without braces; its %d partitions are %s … %s, each a hash tag of its own",
			ErrPartitioning, stream, n, wire.PartitionStream(stream, 0), wire.PartitionStream(stream, n-1))
	}
	if key := e.partitionKey(); key != "" {
		return wire.PartitionStream(stream, wire.PartitionFor(key, n)), nil
	}
	if e.ID != "" {
		return wire.PartitionStream(stream, wire.PartitionFor(e.ID, n)), nil
	}
	i := (p.next.Add(1) - 1) % uint64(n)
	return wire.PartitionStream(stream, int(i)), nil
}

// partitionKey is the event's partition key: Key, or a key field set as
// metadata.
func (e Event) partitionKey() string {
	if e.Key != "" {
		return e.Key
	}
	return e.Metadata[wire.FieldKey]
}

// routes returns the stream key of each event, or the first routing error;
// round-robin events take consecutive partitions.
func (p *Producer) routes(stream string, events func(i int) Event, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		s, err := p.Route(stream, events(i))
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

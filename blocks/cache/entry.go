package cache

import (
	"encoding/binary"
	"fmt"
	"time"
)

// An entry is what a cached key holds: a header, then the value.
//
//	byte 0      kind: kindValue or kindNotFound
//	bytes 1-8   logical expiry, Unix milliseconds, big-endian
//	bytes 9-12  how long the load took (XFetch's δ), milliseconds
//	bytes 13-   the value
//
// The expiry lives in the value, not only in the key's TTL, so that a hit
// costs one GET and stale-while-revalidate can keep a key past it.
type entry struct {
	notFound bool
	expiry   time.Time
	delta    time.Duration
	value    []byte
}

const (
	kindValue    byte = 0xCA
	kindNotFound byte = 0xC0
	headerLen         = 13
)

func encode(e entry) []byte {
	b := make([]byte, headerLen+len(e.value))
	b[0] = kindValue
	if e.notFound {
		b[0] = kindNotFound
	}
	binary.BigEndian.PutUint64(b[1:9], uint64(e.expiry.UnixMilli()))
	binary.BigEndian.PutUint32(b[9:13], uint32(min(e.delta.Milliseconds(), 1<<32-1)))
	copy(b[headerLen:], e.value)
	return b
}

func decode(key string, b []byte) (entry, error) {
	if len(b) < headerLen || b[0] != kindValue && b[0] != kindNotFound {
		return entry{}, fmt.Errorf("cache: %q holds a value this package did not write", key)
	}
	return entry{
		notFound: b[0] == kindNotFound,
		expiry:   time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9]))),
		delta:    time.Duration(binary.BigEndian.Uint32(b[9:13])) * time.Millisecond,
		value:    b[headerLen:],
	}, nil
}

package keys

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/streamworker/streamworker/wire"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = wire.Slots

// HashTag returns the hash tag of key — the text between the first '{' and
// the first '}' after it — and whether key has one. A key without a tag, or
// with an empty one ("{}"), is hashed whole.
func HashTag(key string) (tag string, ok bool) { return wire.HashTag(key) }

// Slot returns the Redis Cluster hash slot of key, as CLUSTER KEYSLOT does:
// CRC16 of its hash tag, or of the whole key without one, modulo 16384.
func Slot(key string) int { return wire.Slot(key) }

// SameSlot returns nil if every key hashes to one slot, and otherwise an
// error matching ErrCrossSlot that names the first key out of place. Call it
// before a multi-key script or transaction so the mistake shows on a single
// node too, not only on a cluster.
func SameSlot(keys ...string) error {
	if len(keys) < 2 {
		return nil
	}
	want := Slot(keys[0])
	for _, k := range keys[1:] {
		if got := Slot(k); got != want {
			return fmt.Errorf("%w: %q is in slot %d, %q in slot %d; give them one hash tag (keys.Tag)",
				ErrCrossSlot, keys[0], want, k, got)
		}
	}
	return nil
}

// Sibling returns a key in the same hash slot as key, named after it with
// parts appended, for keys a package keeps beside a caller's key (a lock, a
// counter) and touches in one script with it:
//
//	Sibling("user:{42}:cart", "lock") == "user:{42}:cart:lock"
//	Sibling("report:7", "lock")       == "{report:7}:lock"
//
// A key with a hash tag keeps it; a key without one becomes the tag, which
// hashes exactly as the untagged key does. The rare key that can do neither
// (a '}' but no tag) is prefixed with a short tag chosen for its slot. The
// parts are constants of the calling code: an invalid one panics, as in
// MustJoin.
func Sibling(key string, parts ...string) string {
	suffix := ""
	if len(parts) > 0 {
		suffix = Separator + MustJoin(parts...)
	}
	if _, ok := HashTag(key); ok {
		return key + suffix
	}
	if key != "" && !strings.Contains(key, "}") {
		return "{" + key + "}" + suffix
	}
	return "{" + slotTags()[Slot(key)] + "}" + key + suffix
}

// slotTags maps each slot to a short string that hashes to it, found once
// by search, for the keys Sibling cannot wrap in a tag of their own.
var slotTags = sync.OnceValue(func() *[Slots]string {
	var tags [Slots]string
	left := Slots
	for i := uint64(0); left > 0; i++ {
		t := strconv.FormatUint(i, 36)
		if s := Slot(t); tags[s] == "" {
			tags[s] = t
			left--
		}
	}
	return &tags
})

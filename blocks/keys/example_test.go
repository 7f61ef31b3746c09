package keys_test

import (
	"errors"
	"fmt"

	"github.com/streamworker/streamworker/blocks/keys"
)

// Join builds a key from parts and refuses a part that would change the
// key's shape; Escape makes an untrusted string a safe part.
func ExampleJoin() {
	fmt.Println(keys.MustJoin("user", "42", "profile"))

	email := "ann:admin@example.com" // from a request: may hold anything
	_, err := keys.Join("user", email, "profile")
	fmt.Println(errors.Is(err, keys.ErrInvalidPart))
	fmt.Println(err)

	k := keys.MustJoin("user", keys.Escape(email), "profile")
	fmt.Println(k)
	parts, _ := keys.Split(k)
	fmt.Printf("%q\n", parts)
	// Output:
	// user:42:profile
	// true
	// keys: invalid part 1 "ann:admin@example.com": holds the separator ":"; Escape it
	// user:ann%3Aadmin@example.com:profile
	// ["user" "ann:admin@example.com" "profile"]
}

// Keys that one Lua script or MULTI touches must share a hash slot on Redis
// Cluster. A hash tag makes them: only the tag is hashed.
func ExampleTag() {
	from := keys.MustJoin("points", keys.Tag("game-7"), "alice")
	to := keys.MustJoin("points", keys.Tag("game-7"), "bob")
	fmt.Println(from, to, keys.Slot(from) == keys.Slot(to))
	fmt.Println(keys.SameSlot(from, to))

	err := keys.SameSlot("points:alice", "points:bob")
	fmt.Println(errors.Is(err, keys.ErrCrossSlot))
	// Output:
	// points:{game-7}:alice points:{game-7}:bob true
	// <nil>
	// true
}

// Sibling names a key kept beside a caller's key, in its slot, whatever
// shape the caller's key has.
func ExampleSibling() {
	fmt.Println(keys.Sibling("user:{42}:cart", "lock"))
	fmt.Println(keys.Sibling("report:2024-06", "lock"))
	fmt.Println(keys.Slot(keys.Sibling("report:2024-06", "lock")) == keys.Slot("report:2024-06"))
	// Output:
	// user:{42}:cart:lock
	// {report:2024-06}:lock
	// true
}

// Package keys builds Redis key names from parts — {resource}:{id}:{field} —
// and keeps related keys in one Cluster hash slot.
//
// It owns the two traps of keys made by string concatenation. A separator
// or a brace inside a part ("user:" + id with id "7:admin", or "{x}") silently
// changes the key's shape, or its hash slot: Join refuses such parts and
// Escape turns any string into a safe one. And the keys that one Lua script
// or MULTI touches must hash to one slot on Redis Cluster, or the command
// fails with CROSSSLOT there while working on a single node: Tag, Sibling
// and SameSlot make the slot explicit, so a single-node test catches what
// only a cluster would.
package keys

import (
	"errors"
	"fmt"
	"strings"
)

// Separator joins the parts of a key.
const Separator = ":"

var (
	// ErrInvalidPart is returned by Join for a part that would change the
	// key's shape or slot: an empty part, one holding the separator, or a
	// brace outside a whole-part hash tag.
	ErrInvalidPart = errors.New("keys: invalid part")
	// ErrCrossSlot is returned when keys that must share a hash slot do not.
	ErrCrossSlot = errors.New("keys: keys hash to different slots")
)

// Join builds a key from its parts, "user", "42", "profile" giving
// "user:42:profile". A part must be non-empty and hold neither the separator
// nor a brace, except one part per key that is a whole hash tag made by Tag.
// Pass untrusted strings (ids, emails, URLs) through Escape first.
func Join(parts ...string) (string, error) {
	if len(parts) == 0 {
		return "", fmt.Errorf("%w: no parts", ErrInvalidPart)
	}
	tagged := false
	n := len(parts) - 1
	for i, p := range parts {
		isTag, err := checkPart(p)
		if err != nil {
			return "", fmt.Errorf("%w %d %q: %w", ErrInvalidPart, i, p, err)
		}
		if isTag {
			if tagged {
				return "", fmt.Errorf("%w %d %q: a second hash tag, which Redis would ignore", ErrInvalidPart, i, p)
			}
			tagged = true
		}
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range parts {
		if i > 0 {
			b.WriteString(Separator)
		}
		b.WriteString(p)
	}
	return b.String(), nil
}

// MustJoin is Join for parts fixed in the code; it panics on an invalid
// part, as regexp.MustCompile does on a bad pattern.
func MustJoin(parts ...string) string {
	k, err := Join(parts...)
	if err != nil {
		panic(err)
	}
	return k
}

// checkPart reports whether p is a hash-tag part, or why p is not a part.
func checkPart(p string) (tag bool, err error) {
	braces := false
	for i := range len(p) {
		switch p[i] {
		case Separator[0]:
			return false, fmt.Errorf("holds the separator %q; Escape it", Separator)
		case '{', '}':
			braces = true
		}
	}
	switch {
	case p == "":
		return false, errors.New("empty")
	case braces:
		inner, ok := strings.CutPrefix(p, "{")
		inner, ok2 := strings.CutSuffix(inner, "}")
		if !ok || !ok2 || strings.ContainsAny(inner, "{}") {
			return false, errors.New("holds a brace outside a hash tag; Escape it, or make the whole part a Tag")
		}
		if inner == "" {
			return false, errors.New("empty hash tag, which Redis would ignore")
		}
		return true, nil
	}
	return false, nil
}

// Tag makes s a hash-tag part, "{s}" with s escaped. Redis Cluster hashes
// only the tag of a key that has one, so keys sharing a tag share a slot:
// Join("account", Tag(id), "balance") and Join("account", Tag(id), "ledger")
// can be used by one Lua script or MULTI.
func Tag(s string) string { return "{" + Escape(s) + "}" }

// Escape makes any string a valid part: it replaces '%', the separator and
// the braces with %XX escapes, so "a:b" becomes "a%3Ab". Unescape reverses it.
func Escape(s string) string {
	n := 0
	for i := range len(s) {
		if shouldEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := range len(s) {
		c := s[i]
		if shouldEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func shouldEscape(c byte) bool { return c == '%' || c == ':' || c == '{' || c == '}' }

// Unescape reverses Escape. It decodes every %XX escape, and fails on a '%'
// not followed by two hex digits.
func Unescape(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", fmt.Errorf("keys: bad escape in %q at byte %d", s, i)
		}
		b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
		i += 2
	}
	return string(b), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// Split is the inverse of Join over escaped parts: it splits key at the
// separator, strips the braces of a hash-tag part and unescapes every part,
// so Split(MustJoin("user", Tag("a:b"), Escape("x{y}"))) is
// ["user" "a:b" "x{y}"].
func Split(key string) ([]string, error) {
	parts := strings.Split(key, Separator)
	for i, p := range parts {
		if inner, ok := strings.CutPrefix(p, "{"); ok {
			if inner, ok := strings.CutSuffix(inner, "}"); ok {
				p = inner
			}
		}
		u, err := Unescape(p)
		if err != nil {
			return nil, err
		}
		parts[i] = u
	}
	return parts, nil
}

package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxFields is the most field/value pairs a copy of an entry may carry when a
// script writes it field by field: a retry or delayed copy, one promoted from
// the delayed set, a dead letter, a replayed dead letter. Lua's unpack, the
// only way a script can pass a list to XADD, refuses more than about 8000
// values, and it fails after the script has written. So the runtime checks
// before anything is written: an entry whose copy would carry more is
// dead-lettered at its first failure with its fields kept whole in one
// FieldEnvelope field, and a delayed envelope with more goes to the
// dead-letter stream as it is. Neither is ever acknowledged or removed
// without its copy.
const MaxFields = 1000

// MaxLengthDigits bounds the digits of a length in an envelope: 10 cover any
// member Redis can hold (512 MB), and stay exact as a Lua number (a double).
const MaxLengthDigits = 10

// ErrMalformedEnvelope is returned by DecodeEnvelope for a member that is
// not an envelope EncodeEnvelope could have written.
var ErrMalformedEnvelope = errors.New("malformed delayed envelope")

// EncodeEnvelope encodes a delayed entry as a sorted-set member: a token that
// makes the member unique (the origin entry ID for a retry, a random ID for a
// producer's delayed event) followed by the field/value pairs, each as
// <length>:<bytes>, the length in decimal without sign or leading zeros. It is
// binary safe; DecodeEnvelope and the runtime's promote script decode it.
func EncodeEnvelope(token string, fields []string) string {
	n := len(token) + 8
	for _, f := range fields {
		n += len(f) + 8
	}
	var b strings.Builder
	b.Grow(n)
	var digits [20]byte // a length's decimal, without allocating one string for it
	b.Write(strconv.AppendInt(digits[:0], int64(len(token)), 10))
	b.WriteByte(':')
	b.WriteString(token)
	for _, s := range fields {
		b.Write(strconv.AppendInt(digits[:0], int64(len(s)), 10))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// DecodeEnvelope decodes a member written by EncodeEnvelope. The member may
// come from anyone who can write the delayed set, so every length is checked
// against what is left, and anything but a token followed by at least one
// whole field/value pair is an error wrapping ErrMalformedEnvelope. It does
// not apply MaxFields: the promote script does, and so does the runtime
// before it writes an envelope.
func DecodeEnvelope(member string) (token string, fields []string, err error) {
	var parts []string
	for pos := 0; pos < len(member); {
		digits := 0
		for pos+digits < len(member) && member[pos+digits] >= '0' && member[pos+digits] <= '9' {
			digits++
		}
		switch {
		case digits == 0:
			return "", nil, fmt.Errorf("%w: no length at byte %d", ErrMalformedEnvelope, pos)
		case digits > MaxLengthDigits:
			return "", nil, fmt.Errorf("%w: length of %d digits at byte %d", ErrMalformedEnvelope, digits, pos)
		case digits > 1 && member[pos] == '0':
			return "", nil, fmt.Errorf("%w: length with a leading zero at byte %d", ErrMalformedEnvelope, pos)
		case pos+digits == len(member) || member[pos+digits] != ':':
			return "", nil, fmt.Errorf("%w: no ':' after the length at byte %d", ErrMalformedEnvelope, pos)
		}
		n, _ := strconv.ParseInt(member[pos:pos+digits], 10, 64) // at most 10 digits: cannot fail
		start := pos + digits + 1
		if n > int64(len(member)-start) {
			return "", nil, fmt.Errorf("%w: length %d at byte %d runs past the end (%d bytes)", ErrMalformedEnvelope, n, pos, len(member))
		}
		parts = append(parts, member[start:start+int(n)])
		pos = start + int(n)
	}
	switch {
	case len(parts) < 3:
		return "", nil, fmt.Errorf("%w: %d strings, want a token and at least one field/value pair", ErrMalformedEnvelope, len(parts))
	case len(parts)%2 != 1:
		return "", nil, fmt.Errorf("%w: a field without a value (%d strings after the token)", ErrMalformedEnvelope, len(parts)-1)
	}
	return parts[0], parts[1:], nil
}

// Package wiretest holds inputs for the tests and fuzzers of the wire format
// and of the runtime's scripts that decode it.
package wiretest

import (
	"strings"

	"github.com/streamworker/streamworker/wire"
)

// EnvelopeSeeds are members the fuzzers start from: good envelopes and every
// kind of bad one, including those that once sent the promote script into an
// endless loop ("-3:") or past unpack's limit, and lengths of one to four
// digits, whole and cut short (the promote script reads the first four
// bytes of a length at once).
func EnvelopeSeeds() []string {
	wide := func(pairs int) string {
		f := make([]string, 0, 2*pairs)
		for range pairs {
			f = append(f, "k", "v")
		}
		return wire.EncodeEnvelope("t", f)
	}
	return []string{
		wire.EncodeEnvelope("1700000000000-0", []string{"type", "t", "data", "bin\x00ary:with:1:colons"}),
		wire.EncodeEnvelope("", []string{"", ""}),
		wire.EncodeEnvelope("d-00", []string{"type", "t", "type", "dup"}),
		wide(wire.MaxFields), wide(wire.MaxFields + 1),
		"-3:", "-3:abc", "-1:x1:a1:b", "3:ab", "1:", "1:a1:b", "1:a1:b1:c1:d", "1:a1:b1:c1", "1:a1:b1:c:",
		"99999999999999999999:", "9999999999:x", "2147483648:x", "4294967296:x", "18446744073709551616:x",
		"0:", "0:0:0:", "00:1:a1:b", "01:a1:b1:c", "0x1:a1:b1:c", " 1:a1:b1:c", "+1:a1:b1:c", "1e0:a1:b1:c",
		"1.0:a1:b1:c", "nan:", "inf:", "-0:1:a1:b", ":", "", "garbage", "1:a1:b1:c\x00",
		wire.EncodeEnvelope("t", []string{"k", strings.Repeat("x", 10), "l", strings.Repeat("y", 100), "m", strings.Repeat("z", 1000)}),
		"1", "12", "123", "1234", "12a:", "123a:", "1234a:", "10:a1:b1:c", "100:a", "1:a1:b1:c1000:",
	}
}

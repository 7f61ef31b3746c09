package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/streamworker/streamworker/internal/wiretest"
	"github.com/streamworker/streamworker/wire"
)

func TestDecodeEnvelope(t *testing.T) {
	for _, tc := range []struct {
		name, member, token string
		fields              []string
		err                 string // part of the error; "" for none
	}{
		{"Retry", "6:1700-01:a1:b", "1700-0", []string{"a", "b"}, ""},
		{"Binary", wire.EncodeEnvelope("t", []string{"d", "x\x00:9:y"}), "t", []string{"d", "x\x00:9:y"}, ""},
		{"Empties", "0:0:0:", "", []string{"", ""}, ""},
		{"Duplicates", "1:t1:a1:b1:a1:c", "t", []string{"a", "b", "a", "c"}, ""},
		{"Negative", "-3:", "", nil, "no length at byte 0"},
		{"NegativeLater", "1:a-1:x1:b", "", nil, "no length at byte 3"},
		{"PastTheEnd", "3:ab", "", nil, "length 3 at byte 0 runs past the end (4 bytes)"},
		{"Huge", "9999999999:x", "", nil, "length 9999999999 at byte 0 runs past the end"},
		{"Overflow", "99999999999999999999:", "", nil, "length of 20 digits at byte 0"},
		{"LeadingZero", "01:a1:b1:c", "", nil, "leading zero at byte 0"},
		{"Sign", "+1:a1:b1:c", "", nil, "no length at byte 0"},
		{"Hex", "0x1:a1:b1:c", "", nil, "no ':' after the length at byte 0"},
		{"Space", " 1:a1:b1:c", "", nil, "no length at byte 0"},
		{"NoColon", "1:a1:b1:c1", "", nil, "no ':' after the length at byte 9"},
		{"TrailingByte", "1:a1:b1:c\x00", "", nil, "no length at byte 9"},
		{"Empty", "", "", nil, "0 strings, want a token and at least one field/value pair"},
		{"TokenOnly", "0:", "", nil, "1 strings"},
		{"TokenAndField", "1:a1:b", "", nil, "2 strings, want a token and at least one field/value pair"},
		{"OddCountLonger", "1:t1:a1:b1:c", "", nil, "a field without a value (3 strings after the token)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, fields, err := wire.DecodeEnvelope(tc.member)
			if tc.err != "" {
				if !errors.Is(err, wire.ErrMalformedEnvelope) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DecodeEnvelope(%q) = %q, %q, %v; want an ErrMalformedEnvelope with %q", tc.member, token, fields, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEnvelope(%q): %v", tc.member, err)
			}
			if diff := cmp.Diff(append([]string{tc.token}, tc.fields...), append([]string{token}, fields...)); diff != "" {
				t.Errorf("DecodeEnvelope(%q) (-want +got):\n%s", tc.member, diff)
			}
		})
	}
}

// FuzzDecodeEnvelope: the decoder never panics; what it accepts is exactly
// what EncodeEnvelope writes (so it accepts nothing loosely); what it refuses
// is an ErrMalformedEnvelope; and any token and fields round-trip.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range wiretest.EnvelopeSeeds() {
		f.Add(s, "1700000000000-0", "type", "t")
	}
	f.Fuzz(func(t *testing.T, member, token, field, value string) {
		tok, fields, err := wire.DecodeEnvelope(member)
		switch {
		case err != nil && !errors.Is(err, wire.ErrMalformedEnvelope):
			t.Fatalf("DecodeEnvelope(%q) = %v, want an ErrMalformedEnvelope", member, err)
		case err == nil && (len(fields) < 2 || len(fields)%2 != 0):
			t.Fatalf("DecodeEnvelope(%q) accepted %d fields, want whole pairs", member, len(fields))
		case err == nil && wire.EncodeEnvelope(tok, fields) != member:
			t.Fatalf("DecodeEnvelope(%q) = %q, %q, which encodes to %q", member, tok, fields, wire.EncodeEnvelope(tok, fields))
		}
		in := []string{field, value, member, token}
		gotTok, got, err := wire.DecodeEnvelope(wire.EncodeEnvelope(token, in))
		if err != nil || gotTok != token || !cmp.Equal(got, in) {
			t.Fatalf("round trip of %q, %q = %q, %q, %v", token, in, gotTok, got, err)
		}
	})
}

// BenchmarkEncodeEnvelope encodes a retry's envelope as the runtime writes
// it: its entry ID, a 100-byte payload, attempt and origin ID.
func BenchmarkEncodeEnvelope(b *testing.B) {
	id, data := "1700000000000-0", strings.Repeat("x", 100)
	fields := []string{wire.FieldType, "t", wire.FieldData, data, wire.FieldAttempt, "2", wire.FieldOriginID, id}
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.EncodeEnvelope(id, fields)
	}
}

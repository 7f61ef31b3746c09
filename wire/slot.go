package wire

import "strings"

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// HashTag returns the hash tag of key — the text between its first '{' and
// the first '}' after it — and whether key has one. A key without a tag, or
// with an empty one ("{}"), is hashed whole.
func HashTag(key string) (tag string, ok bool) {
	s := strings.IndexByte(key, '{')
	if s < 0 {
		return "", false
	}
	e := strings.IndexByte(key[s+1:], '}')
	if e <= 0 {
		return "", false
	}
	return key[s+1 : s+1+e], true
}

// Slot returns the Redis Cluster hash slot of key, as CLUSTER KEYSLOT does:
// CRC16 of its hash tag, or of the whole key without one, modulo 16384.
func Slot(key string) int {
	if tag, ok := HashTag(key); ok {
		key = tag
	}
	return int(crc16(key) % Slots)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// of the cluster specification.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

package notify

// bySlot splits channels into groups of one Redis Cluster hash slot each,
// in the order of their first channel: SSUBSCRIBE takes the channels of one
// slot only.
func bySlot(channels []string) [][]string {
	index := map[uint16]int{}
	var groups [][]string
	for _, c := range channels {
		s := slot(c)
		i, ok := index[s]
		if !ok {
			i = len(groups)
			index[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

// slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag — the part between the first { and the next }, when not empty — or of
// the whole key, modulo 16384.
func slot(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					break
				}
			}
			break
		}
	}
	var crc uint16
	for _, c := range []byte(key) {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}

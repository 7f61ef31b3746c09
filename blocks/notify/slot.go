package notify

import "github.com/streamworker/streamworker/wire"

// bySlot splits channels into groups of one Redis Cluster hash slot each,
// in the order of their first channel: SSUBSCRIBE takes the channels of one
// slot only.
func bySlot(channels []string) [][]string {
	index := map[int]int{}
	var groups [][]string
	for _, c := range channels {
		s := wire.Slot(c)
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

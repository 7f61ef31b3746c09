package ratelimit

// Every Redis key the limiters write is built here. Each check touches one
// key, so any key works on Redis Cluster; the two algorithms use different
// keys, so one name can be limited by both without a WRONGTYPE error.

// windowKey is the sorted-set log of the sliding window for key.
func windowKey(prefix, key string) string { return prefix + "window:" + key }

// gcraKey holds the theoretical arrival time of GCRA for key.
func gcraKey(prefix, key string) string { return prefix + "gcra:" + key }

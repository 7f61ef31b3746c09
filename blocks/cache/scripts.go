package cache

import (
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/blocks/keys"
)

// lockKey is the load lock of key: keys.Sibling puts it in key's hash slot,
// which the scripts below and Delete's two-key DEL need on Redis Cluster.
func lockKey(key string) string { return keys.Sibling(key, "lock") }

// getOrLockScript is one poll of a process waiting for a value: it returns
// the value if someone stored it, or else takes the load lock if it is free.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock, lockKey(KEYS[1])
// ARGV[1] -> the caller's lock token
// ARGV[2] -> the lock's TTL in milliseconds
// Returns the entry (a string), 1 if the caller now holds the lock, or 0 if
// another process does.
var getOrLockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
`)

// storeScript stores a loaded entry only while the loader still holds the
// lock: a Delete or Set since the lock was taken revoked it, and the load
// may have read data older than theirs.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock
// ARGV[1] -> the loader's lock token
// ARGV[2] -> the entry
// ARGV[3] -> the entry's TTL in milliseconds
// Returns 1 if stored, 0 if the lock was no longer the loader's.
var storeScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)

// setScript stores an entry written by Set and revokes any load in flight.
//
// KEYS[1] -> the cached key
// KEYS[2] -> its load lock
// ARGV[1] -> the entry
// ARGV[2] -> the entry's TTL in milliseconds
var setScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
`)

// extendScript keeps a running load's lock alive, only if it is still the
// loader's.
//
// KEYS[1] -> the load lock
// ARGV[1] -> the loader's lock token
// ARGV[2] -> the lock's TTL in milliseconds
// Returns 1 if extended, 0 if the lock was no longer the loader's.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript gives up a load lock after a failed load, only if it is
// still the loader's.
//
// KEYS[1] -> the load lock
// ARGV[1] -> the loader's lock token
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

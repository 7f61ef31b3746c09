package worker

import "github.com/redis/go-redis/v9"

// Partition ownership (partition.go). Each script touches one key, so each
// runs in the slot of that key on a Redis Cluster.

// membersScript records this consumer as a live member of a partitioned
// stream's group until now+lease, forgets the members whose time ran out and
// returns the live ones. The time is Redis's, so workers' clocks need not
// agree.
//
// KEYS[1] -> the members sorted set
// ARGV[1] -> this consumer
// ARGV[2] -> lease, ms
var membersScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 3 * lease)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// acquireScript takes a partition that nobody owns, or keeps one this
// consumer owns: it renews the ownership, and takes back one whose key ran
// out while nobody else took it (a stalled process), or one owned before a
// restart under the same name.
//
// KEYS[1] -> the partition's owner key
// ARGV[1] -> this consumer
// ARGV[2] -> lease, ms
// Returns 1 when this consumer owns the partition now.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseOwnerScript gives a partition up, if this consumer still owns it.
//
// KEYS[1] -> the partition's owner key
// ARGV[1] -> this consumer
var releaseOwnerScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

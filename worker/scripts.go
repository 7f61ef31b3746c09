package worker

import "github.com/redis/go-redis/v9"

// Each script acknowledges first and acts only when the acknowledgement
// removed the entry from the group's pending list, so a script repeated after
// a lost reply, or run by two consumers for one entry, acts once.

// retryScript schedules a copy for later and acknowledges the original.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :delayed sorted set
// ARGV[1] -> group
// ARGV[2] -> entry ID
// ARGV[3] -> due time, unix ms
// ARGV[4] -> envelope (see EncodeEnvelope)
var retryScript = redis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
`)

// deadLetterScript appends a copy to the dead-letter stream and acknowledges
// the original.
//
// KEYS[1] -> the stream
// KEYS[2] -> the stream's :dlq stream
// ARGV[1] -> group
// ARGV[2] -> entry ID
// ARGV[3..] -> field, value, field, value, ... of the dead-letter entry
var deadLetterScript = redis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
`)

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

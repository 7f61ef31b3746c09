package leaderboard

import "github.com/redis/go-redis/v9"

// aroundScript reads a member's rank and the members around it in one step.
// It touches one key, so it runs on any Redis Cluster node.
// Returns nil when the member is not on the board, else
// {rank of the first entry (0-based), {member, score, member, score, ...}}.
//
// KEYS[1] -> the board (sorted set, scores negated: best first in ZRANGE)
// ARGV[1] -> the member
// ARGV[2] -> how many members to return on each side of it
var aroundScript = redis.NewScript(`
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return false end
local n = tonumber(ARGV[2])
local first = rank - n
if first < 0 then first = 0 end
return {first, redis.call('ZRANGE', KEYS[1], first, rank + n, 'WITHSCORES')}
`)

package streamadmin

import "github.com/redis/go-redis/v9"

// replayScript moves dead letters back into their stream. For each ID it
// copies the entry to the stream without the fields the runtime added when it
// dead-lettered it (error, attempts, failed_at, group, consumer) and without
// attempt, so the copy starts again at attempt 1; origin_id, id, data and
// every other field are kept. The dead letter is deleted only after its copy
// is in: a failed XADD stops the script before the XDEL. An entry without a
// type is left alone, since the worker would dead-letter it again at once.
//
// KEYS[1] -> the stream's :dlq stream
// KEYS[2] -> the stream
// ARGV[1..] -> dead-letter entry IDs
// Returns per ID: the new entry ID, 0 when the ID is not in the dead-letter
// stream, or -1 when the entry has no type.
var replayScript = redis.NewScript(`
local strip = {error = true, attempts = true, failed_at = true, group = true, consumer = true, attempt = true}
local out = {}
for i, id in ipairs(ARGV) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if #e == 0 then
    out[i] = 0
  else
    local f, fields, typed = e[1][2], {}, false
    for j = 1, #f, 2 do
      local k = f[j]
      if k == 'type' and f[j + 1] ~= '' then typed = true end
      if not strip[k] then
        fields[#fields + 1] = k
        fields[#fields + 1] = f[j + 1]
      end
    end
    if typed then
      out[i] = redis.call('XADD', KEYS[2], '*', unpack(fields))
      redis.call('XDEL', KEYS[1], id)
    else
      out[i] = -1
    end
  end
end
return out
`)

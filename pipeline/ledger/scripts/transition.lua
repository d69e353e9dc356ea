-- Compare-and-set of an invocation's status, with its index, in one atomic step: concurrent
-- retries (one by one, or "all dead" racing new failures) can each win an invocation only once.
-- KEYS: invocation hash.
-- ARGV: the prefix of its function's indexes (the status completes the name), invocation id, new
--       status, JSON object of JSON-encoded fields, then the allowed current statuses.
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return 0 end
local current = cjson.decode(raw)
local allowed = false
for i = 5, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return 0 end
local fields = cjson.decode(ARGV[4])
for name, value in pairs(fields) do redis.call('HSET', KEYS[1], name, value) end
redis.call('HSET', KEYS[1], 'status', cjson.encode(ARGV[3]))
local id = ARGV[2]
-- Not indexed (a record from before its function's index existed): listed from now on.
local created = redis.call('ZSCORE', ARGV[1] .. current, id) or redis.call('TIME')[1]
redis.call('ZREM', ARGV[1] .. current, id)
redis.call('ZADD', ARGV[1] .. ARGV[3], created, id)
return 1

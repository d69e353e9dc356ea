-- Claim due webhook messages: move each one's score a lease ahead and return them, in one step,
-- so two schedulers never take the same message.
-- KEYS: due. ARGV: now, lease seconds, batch size.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return ids

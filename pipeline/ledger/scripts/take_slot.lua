-- Reserved concurrency: a counting semaphore whose holders expire unless renewed, so a killed
-- worker frees its slot. Takes (or renews) one slot; 0 when all are taken.
-- KEYS: slots (sorted set token -> expiry ms). ARGV: token, limit, ttl ms.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1

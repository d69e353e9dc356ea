-- One invocation of an upload finished: remove it from the upload's join set. Returns 1 exactly
-- once per upload: to the caller that finds the set empty first.
-- KEYS: join, joined. ARGV: invocation id, ttl seconds.
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then return 1 end
return 0

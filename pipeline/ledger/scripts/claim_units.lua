-- The intake's claims for one notification, in one round trip.
-- KEYS: the disabled-functions set, the duplicates counter, then one dedup key per unit of work.
-- ARGV: ttl, orphan age, invocation key prefix, then a function name and an invocation id per unit.
-- Returns per unit: 0 (its function is disabled), 1 (claimed now), or the id of the invocation
-- that claimed it earlier.
-- A claim whose invocation was never recorded (the claimant died between its two round trips) is
-- an orphan: once it is older than any intake call can take, the next claimant takes it over.
local ttl, orphan_age, inv_prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 3, #KEYS do
  local fn, id = ARGV[(i - 3) * 2 + 4], ARGV[(i - 3) * 2 + 5]
  if redis.call('SISMEMBER', KEYS[1], fn) == 1 then
    out[#out + 1] = 0
  elseif redis.call('SET', KEYS[i], id, 'NX', 'EX', ttl) then
    out[#out + 1] = 1
  else
    local earlier = redis.call('GET', KEYS[i]) or ''
    local age = ttl - redis.call('TTL', KEYS[i])
    if age > orphan_age and redis.call('EXISTS', inv_prefix .. earlier) == 0 then
      redis.call('SET', KEYS[i], id, 'EX', ttl)
      out[#out + 1] = 1
    else
      redis.call('INCR', KEYS[2])
      out[#out + 1] = earlier
    end
  end
end
return out

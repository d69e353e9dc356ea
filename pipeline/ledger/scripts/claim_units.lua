-- The intake's claims for one notification, in one round trip.
-- KEYS: the disabled-functions set, the duplicates counter, then one claim key per unit of work
-- (a dedup key, or a flow run's claim).
-- ARGV: ttl, orphan age, then per unit: a function name, the claimant's id and the prefix of the
-- record a claimant writes (an invocation's key or a run's, without the id).
-- Returns per unit: 0 (its function is disabled), 1 (claimed now), the id of the claimant that
-- claimed and recorded it earlier, or '!' and the id of one that claimed it but has no record yet.
-- A claim whose record was never written (the claimant died between its two round trips) is an
-- orphan: once it is older than any intake call can take, the next claimant takes it over.
local ttl, orphan_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #KEYS do
  local fn, id, record_prefix = ARGV[(i - 3) * 3 + 3], ARGV[(i - 3) * 3 + 4], ARGV[(i - 3) * 3 + 5]
  if redis.call('SISMEMBER', KEYS[1], fn) == 1 then
    out[#out + 1] = 0
  elseif redis.call('SET', KEYS[i], id, 'NX', 'EX', ttl) then
    out[#out + 1] = 1
  else
    local earlier = redis.call('GET', KEYS[i]) or ''
    local age = ttl - redis.call('TTL', KEYS[i])
    local recorded = redis.call('EXISTS', record_prefix .. earlier) == 1
    if age > orphan_age and not recorded then
      redis.call('SET', KEYS[i], id, 'EX', ttl)
      out[#out + 1] = 1
    elseif not recorded then
      -- Claimed, not recorded yet: the claimant is between its two round trips, or failed there
      -- (Redis failed over). Not a duplicate to acknowledge: the sender is told to try again.
      out[#out + 1] = '!' .. earlier
    else
      redis.call('INCR', KEYS[2])
      out[#out + 1] = earlier
    end
  end
end
return out

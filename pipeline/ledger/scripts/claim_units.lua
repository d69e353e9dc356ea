-- The intake's claims for one notification, in one round trip.
-- KEYS: the disabled-functions set, the duplicates counter, then per unit of work the hash its
-- claim is a field of (a dedup claim, or a flow run's).
-- ARGV: the hashes' TTL, orphan age (s), then per unit: its field, a function name, the
-- claimant's id and the prefix of the record a claimant writes (an invocation's key or a run's,
-- without the id).
-- Returns per unit: 0 (its function is disabled), 1 (claimed now), the id of the claimant that
-- claimed and recorded it earlier, or '!' and the id of one that claimed it but has no record yet.
-- A claim whose record was never written (the claimant died between its two round trips) is an
-- orphan: once it is older than any intake call can take, the next claimant takes it over. A
-- claimant's id begins with when it was made (milliseconds, 12 hex digits): that is the claim's age.
local ttl, orphan_ms = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {}
for i = 3, #KEYS do
  local a = (i - 3) * 4 + 3
  local field, fn, id, record_prefix = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if redis.call('SISMEMBER', KEYS[1], fn) == 1 then
    out[#out + 1] = 0
  else
    local earlier = redis.call('HGET', KEYS[i], field)
    local recorded = earlier and redis.call('EXISTS', record_prefix .. earlier) == 1
    local made = earlier and tonumber(string.sub(earlier, 1, 12), 16)
    if not earlier or (not recorded and (not made or now_ms - made > orphan_ms)) then
      redis.call('HSET', KEYS[i], field, id)
      redis.call('EXPIRE', KEYS[i], ttl)  -- the safety net: the sweeper removes claims one by one
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

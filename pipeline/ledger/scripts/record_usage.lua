-- Add one ended attempt to the usage counters: the cumulative totals `/metrics` reads, the hourly
-- rollup `pipeline usage` reads, and the per-minute and per-10-minute counts of the dashboard.
-- One script, so the caller sends one command (inside the transaction that records the verdict).
-- KEYS: totals, hour, minute, window.
-- ARGV: the hour's expiry (s), the minute's and window's expiry (s), then for each key in turn the
--       number of (field, increment) pairs that follow for it, and the pairs. An increment with a
--       decimal point or an exponent is a float (HINCRBYFLOAT); others are integers (HINCRBY).
local at = 3
for k = 1, #KEYS do
  local pairs_for_key = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, pairs_for_key do
    local increment = ARGV[at + 1]
    if string.find(increment, '[.eE]') then
      redis.call('HINCRBYFLOAT', KEYS[k], ARGV[at], increment)
    else
      redis.call('HINCRBY', KEYS[k], ARGV[at], increment)
    end
    at = at + 2
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return 1

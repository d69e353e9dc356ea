-- A batch of writes in one call, applied atomically (the intake's group commit, `batch.py`).
-- KEYS: none (the ledger runs on one Redis or a Sentinel-watched master, never a cluster).
-- ARGV: commands one after the other, each as its argument count and then its arguments.
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return #ARGV

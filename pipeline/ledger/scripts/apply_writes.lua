-- A batch of writes in one call, applied atomically (the intake's group commit, `batch.py`).
-- KEYS: none (the ledger runs on one Redis or a Sentinel-watched master, never a cluster).
-- ARGV: commands one after the other, each as its argument count and then its arguments; a
-- negative count marks a command whose reply is returned (in order, as a list).
local i = 1
local replies = {}
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local keep = n < 0
  if keep then n = -n end
  local reply = redis.call(unpack(ARGV, i + 1, i + n))
  if keep then replies[#replies + 1] = reply end
  i = i + n + 1
end
return replies

-- Remove a claim with its record, unless another claimant holds it now.
-- KEYS: the claim's hash. ARGV: its field, the id of the record's claimant.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0

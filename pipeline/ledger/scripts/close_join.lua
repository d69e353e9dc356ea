-- One invocation (or run) of an upload finished: remove it from the upload's join set. Returns 1
-- exactly once per upload: to the caller whose removal emptied the set. Redis deletes an empty
-- set, so a repeated finish (a redelivered message, a retried invocation finishing again)
-- removes nothing and returns 0.
-- KEYS: join. ARGV: the member that finished.
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
return 1

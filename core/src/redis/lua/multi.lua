-- Several policies, one key each (all in one cluster slot): KEYS[1..n];
-- ARGV = cost, pinned time, then
-- per policy i its POLICY_ARGS values from ARGV[3 + (i-1)*POLICY_ARGS].
-- Reply: {all_allowed, then per policy: allowed, remaining,
-- reset_after_us, retry_after_us} (run_check). Choosing the policy to
-- report is the caller's job.
local n = #KEYS
local cost = tonumber(ARGV[1])
if n < 1 or #ARGV ~= 2 + POLICY_ARGS * n or not cost then
  return redis.error_reply(
    'ERR tollgate: expected n keys and 2 + 9n arguments')
end
local pols = {}
for i = 1, n do
  local j = 3 + (i - 1) * POLICY_ARGS
  pols[i] = read_policy(j)
  if not pols[i] then
    if not algorithms[tonumber(ARGV[j])] then
      return redis.error_reply('ERR tollgate: unknown algorithm ' .. ARGV[j])
    end
    return redis.error_reply('ERR tollgate: malformed policy ' .. i)
  end
end
local reply = {}
run_check(KEYS, 0, n, cost, pols, nil, now_us(), reply, 0)
return reply

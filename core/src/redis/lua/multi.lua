-- Several policies, one key each (all in one cluster slot): KEYS[1..n];
-- ARGV = cost, pinned time, then per policy i five values from
-- ARGV[3 + (i-1)*5]: algorithm, limit, period_ms, capacity, interval_us.
-- Reply: {all_allowed, then per policy: allowed, remaining, reset_after_us,
-- retry_after_us} (run_check). Choosing the policy to report is the
-- caller's job.
local n = #KEYS
local cost = tonumber(ARGV[1])
if n < 1 or #ARGV ~= 2 + 5 * n or not cost then
  return redis.error_reply('ERR tollgate: expected n keys and 2 + 5n arguments')
end
local pols = {}
for i = 1, n do
  pols[i] = read_policy(3 + (i - 1) * 5)
  if not pols[i] then
    return redis.error_reply('ERR tollgate: unknown algorithm ' ..
      ARGV[3 + (i - 1) * 5])
  end
end
local reply = {}
run_check(KEYS, 0, n, cost, pols, nil, now_us(), reply, 0)
return reply

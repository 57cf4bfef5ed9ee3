-- One policy: KEYS[1] its state; ARGV = cost, pinned time, then the
-- policy's nine values (algorithm, limit, period_ms, capacity,
-- interval_us, block_us, strikes, strike_us, shadow; the algorithm is the
-- one this script is named after, and only its code is in the script). Reply:
-- {all_allowed, allowed, remaining, reset_after_us, retry_after_us}, the
-- multi-policy layout with n = 1.
local function run_single(evaluate)
  local cost = tonumber(ARGV[1])
  local p = {evaluate}
  for v = 2, 9 do p[v] = tonumber(ARGV[2 + v]) end
  if #KEYS ~= 1 or #ARGV ~= 11 or not cost or not p[9] or not p[8] or
      not p[7] or not p[6] or not p[5] or not p[4] or not p[3] or
      not p[2] then
    return redis.error_reply('ERR tollgate: expected 1 key and 11 arguments')
  end
  local reply = {}
  run_check(KEYS, 0, 1, cost, {p}, nil, now_us(), reply, 0)
  return reply
end

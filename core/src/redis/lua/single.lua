-- One policy: KEYS[1] its state; ARGV =
-- cost, pinned time, then the policy's POLICY_ARGS values (its algorithm
-- is the one this script is named after). Reply: {all_allowed, allowed,
-- remaining, reset_after_us, retry_after_us}, the multi-policy layout with
-- n = 1.
local function run_single(evaluate)
  local cost = tonumber(ARGV[1])
  local p = read_policy(3)
  if #KEYS ~= 1 or #ARGV ~= 2 + POLICY_ARGS or not cost or not p then
    return redis.error_reply('ERR tollgate: expected 1 key and 10 arguments')
  end
  p[1] = evaluate
  local reply = {}
  run_check(KEYS, 0, 1, cost, {p}, nil, now_us(), reply, 0)
  return reply
end

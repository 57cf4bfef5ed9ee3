-- One policy, one key: KEYS[1]; ARGV = cost, pinned time, algorithm (not
-- read: this script holds one algorithm), limit, period_ms, capacity,
-- interval_us. Reply: {allowed, allowed, remaining, reset_after_us,
-- retry_after_us}, the multi-policy layout with n = 1.
local function run_single(evaluate)
  local cost = tonumber(ARGV[1])
  if #KEYS ~= 1 or #ARGV ~= 7 or not cost then
    return redis.error_reply('ERR tollgate: expected 1 key and 7 arguments')
  end
  local now = now_us()
  local key = KEYS[1]
  local allowed, remaining, reset_after, retry_after, state, expires_at, same =
    evaluate(key, now, cost, tonumber(ARGV[4]), tonumber(ARGV[5]),
      tonumber(ARGV[6]), tonumber(ARGV[7]))
  if state then store(key, state, expires_at, now, same) end
  -- A refund's first field says whether there was usage to give back.
  local all = allowed
  if cost < 0 and not state then all = 0 end
  return {all, allowed, remaining, reset_after, retry_after}
end

-- Several policies, one key each (all in one cluster slot): KEYS[1..n];
-- ARGV = cost, pinned time, then per policy i five values from
-- ARGV[3 + (i-1)*5]: algorithm, limit, period_ms, capacity, interval_us.
-- Every policy is evaluated against the state as it is; the states are
-- written only if every policy allows and cost >= 1 (all or nothing).
-- Reply: {all_allowed, then per policy: allowed, remaining, reset_after_us,
-- retry_after_us}. Choosing the policy to report is the caller's job.
local algorithms = {[0] = gcra, token_bucket, fixed_window, sliding_window}

local n = #KEYS
local cost = tonumber(ARGV[1])
if n < 1 or #ARGV ~= 2 + 5 * n or not cost then
  return redis.error_reply('ERR tollgate: expected n keys and 2 + 5n arguments')
end
local now = now_us()
local reply = {1}
local states, expiries = {}, {}
local all = 1
for i = 1, n do
  local j = 3 + (i - 1) * 5
  local evaluate = algorithms[tonumber(ARGV[j])]
  if not evaluate then
    return redis.error_reply('ERR tollgate: unknown algorithm ' .. ARGV[j])
  end
  local allowed, remaining, reset_after, retry_after, state, expires_at =
    evaluate(KEYS[i], now, cost, tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]),
      tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4]))
  if allowed == 0 then all = 0 end
  local k = 2 + (i - 1) * 4
  reply[k], reply[k + 1], reply[k + 2], reply[k + 3] =
    allowed, remaining, reset_after, retry_after
  states[i], expiries[i] = state, expires_at
end
if all == 1 and cost >= 1 then
  for i = 1, n do store(KEYS[i], states[i], expiries[i], now) end
end
reply[1] = all
return reply

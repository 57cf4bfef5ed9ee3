-- Reads the policy at ARGV[j .. j + 8] (POLICY_ARGS values: algorithm,
-- limit, period_ms, capacity, interval_us, block_us, strikes, strike_us,
-- shadow (1: its denial does not deny the check, 0: enforced)); nil if the
-- algorithm is unknown or a value is not a number.
local POLICY_ARGS = 9
local algorithms = {[0] = gcra, token_bucket, fixed_window, sliding_window}
local function read_policy(j)
  local evaluate = algorithms[tonumber(ARGV[j])]
  if not evaluate then return nil end
  local p = {evaluate}
  for v = 1, POLICY_ARGS - 1 do
    p[v + 1] = tonumber(ARGV[j + v])
    if not p[v + 1] then return nil end
  end
  return p
end

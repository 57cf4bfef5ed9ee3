-- Reads the policy at ARGV[j .. j + 7] (POLICY_ARGS values: algorithm,
-- limit, period_ms, capacity, interval_us, block_us, strikes, strike_us);
-- nil if the algorithm is unknown or a value is not a number.
local POLICY_ARGS = 8
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

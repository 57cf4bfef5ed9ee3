-- One check of n policies (shared by the multi and batch scripts). Its keys
-- are keys[k + 1 .. k + n]; its policy i is pols[i], or pols[ARGV[ix + i]]
-- when `ix` is given. A policy is {evaluate, limit, period_ms, capacity,
-- interval_us}. Every policy is evaluated against the state as it is; the
-- states are written only if every policy allows and cost >= 1 (all or
-- nothing). Writes reply[r + 1 ..]: all_allowed, then per policy allowed,
-- remaining, reset_after_us, retry_after_us. Returns the next free index.
local function run_check(keys, k, n, cost, pols, ix, now, reply, r)
  local all = 1
  local states, expiries, sames
  for i = 1, n do
    local p = ix and pols[tonumber(ARGV[ix + i])] or pols[i]
    local allowed, remaining, reset_after, retry_after, state, expires_at,
      same = p[1](keys[k + i], now, cost, p[2], p[3], p[4], p[5])
    if allowed == 0 then all = 0 end
    local o = r + 1 + (i - 1) * 4
    reply[o + 1], reply[o + 2], reply[o + 3], reply[o + 4] =
      allowed, remaining, reset_after, retry_after
    if n == 1 then
      states, expiries, sames = state, expires_at, same
    else
      states = states or {}
      expiries = expiries or {}
      sames = sames or {}
      states[i], expiries[i], sames[i] = state, expires_at, same
    end
  end
  if cost < 0 then
    -- A refund: every policy with usage gets it back; all_allowed says
    -- whether any had usage to give back.
    all = 0
    for i = 1, n do
      local state, expires_at, same = states, expiries, sames
      if n > 1 then state, expires_at, same = states[i], expiries[i], sames[i] end
      if state then
        store(keys[k + i], state, expires_at, now, same)
        all = 1
      end
    end
    reply[r + 1] = all
    return r + 1 + 4 * n
  end
  reply[r + 1] = all
  if all == 1 and cost >= 1 then
    if n == 1 then
      store(keys[k + 1], states, expiries, now, sames)
    else
      for i = 1, n do
        store(keys[k + i], states[i], expiries[i], now, sames[i])
      end
    end
  end
  return r + 1 + 4 * n
end

-- Reads the policy at ARGV[j .. j + 4]; nil if the algorithm is unknown.
local algorithms = {[0] = gcra, token_bucket, fixed_window, sliding_window}
local function read_policy(j)
  local evaluate = algorithms[tonumber(ARGV[j])]
  if not evaluate then return nil end
  return {evaluate, tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]),
    tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])}
end

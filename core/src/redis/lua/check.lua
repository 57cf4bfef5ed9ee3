-- One check of n policies (shared by every check script). Its keys are
-- keys[k + 1 .. k + n] (its block hash is named after them); its policy i
-- is pols[i], or pols[ARGV[ix + i]] when `ix` is given. A policy is
-- {evaluate, limit, period_ms, capacity, interval_us, block_us, strikes,
-- strike_us}. A blocked key is denied and nothing is written (a refund
-- still runs). Otherwise every policy is evaluated against the state as it
-- is; the states are written only if every policy allows and cost >= 1
-- (all or nothing), and a denied charge counts the strikes of the denying
-- policies that have a block. Writes reply[r + 1 ..]: all_allowed, then
-- per policy allowed, remaining, reset_after_us, retry_after_us. Returns
-- the next free index.
local function run_blocked(keys, k, n, cost, pols, ix, now, reply, r, till)
  local wait = till - now
  for i = 1, n do
    local p = ix and pols[tonumber(ARGV[ix + i])] or pols[i]
    local key = keys[k + i]
    local _, _, reset_after = p[1](key, now, 0, p[2], p[3], p[4], p[5])
    local allowed, _, _, retry = p[1](key, now, cost, p[2], p[3], p[4], p[5])
    if allowed == 1 then
      retry = wait
    elseif retry ~= -1 and retry < wait then
      retry = wait
    end
    if reset_after < wait then reset_after = wait end
    local o = r + 1 + (i - 1) * 4
    reply[o + 1], reply[o + 2], reply[o + 3], reply[o + 4] =
      0, 0, reset_after, retry
  end
  reply[r + 1] = 0
  return r + 1 + 4 * n
end

-- A denied charge: the strikes of the denying policies with a block, and
-- the block if one is due (every wait then lasts at least until its end).
local function run_strikes(keys, k, n, pols, ix, now, reply, r)
  local bkey = block_key(keys[k + 1])
  local till = 0
  for i = 1, n do
    local p = ix and pols[tonumber(ARGV[ix + i])] or pols[i]
    local o = r + 1 + (i - 1) * 4
    if p[6] > 0 and reply[o + 1] == 0 and reply[o + 4] ~= -1 then
      local t = strike(bkey, keys[k + i], p, now)
      if t > till then till = t end
    end
  end
  if till == 0 then return end
  till = set_block(bkey, till, now)
  if till == 0 then return end
  local wait = till - now
  for i = 1, n do
    local o = r + 1 + (i - 1) * 4
    reply[o + 2] = 0
    if reply[o + 3] < wait then reply[o + 3] = wait end
    if reply[o + 1] == 0 and reply[o + 4] ~= -1 and reply[o + 4] < wait then
      reply[o + 4] = wait
    end
  end
end

local function run_check(keys, k, n, cost, pols, ix, now, reply, r)
  if cost >= 0 then
    local till = blocked_until(block_key(keys[k + 1]), now)
    if till > 0 then
      return run_blocked(keys, k, n, cost, pols, ix, now, reply, r, till)
    end
  end
  local all = 1
  local striking = false
  local states, expiries, sames
  for i = 1, n do
    local p = ix and pols[tonumber(ARGV[ix + i])] or pols[i]
    local allowed, remaining, reset_after, retry_after, state, expires_at,
      same = p[1](keys[k + i], now, cost, p[2], p[3], p[4], p[5])
    if allowed == 0 then
      all = 0
      if p[6] > 0 then striking = true end
    end
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
  if striking and cost >= 1 then
    run_strikes(keys, k, n, pols, ix, now, reply, r)
  end
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

-- One check of n policies (shared by every check script). Its keys are
-- keys[k + 1 .. k + n] (its block hash is named after them); its policy i
-- is pols[i], or pols[ARGV[ix + i]] when `ix` is given. A policy is
-- {evaluate, limit, period_ms, capacity, interval_us, block_us, strikes,
-- strike_us}. A blocked key is denied and nothing is written (a refund
-- still runs). Otherwise every policy is evaluated against the state as it
-- is; the states are written only if every policy allows and cost >= 1
-- (all or nothing), and a denied charge counts the strikes of the denying
-- policies that have a block. A policy in shadow mode (p[9] == 1) that
-- denies does not deny the check: its state is not written (as if it had
-- denied) and it counts no strike; the others go on as if it allowed. Policy i's four reply values (allowed,
-- remaining, reset_after_us, retry_after_us) go to reply[o + 4(i-1) + 1
-- .. + 4]. A check runs in two phases, so that several checks can make
-- one decision (the many script): evaluate_check reads and decides its
-- own policies, commit_check writes once the whole call's verdict is
-- known.

local function policy_at(pols, ix, i)
  if ix then return pols[tonumber(ARGV[ix + i])] end
  return pols[i]
end

local function run_blocked(keys, k, n, cost, pols, ix, now, reply, o, till)
  local wait = till - now
  for i = 1, n do
    local p = policy_at(pols, ix, i)
    local key = keys[k + i]
    local _, _, reset_after = p[1](key, now, 0, p[2], p[3], p[4], p[5])
    local allowed, _, _, retry = p[1](key, now, cost, p[2], p[3], p[4], p[5])
    if allowed == 1 then
      retry = wait
    elseif retry ~= -1 and retry < wait then
      retry = wait
    end
    if reset_after < wait then reset_after = wait end
    local b = o + (i - 1) * 4
    reply[b + 1], reply[b + 2], reply[b + 3], reply[b + 4] =
      0, 0, reset_after, retry
  end
end

-- A denied charge: the strikes of the denying policies with a block, and
-- the block if one is due (every wait then lasts at least until its end).
local function run_strikes(keys, k, n, pols, ix, now, reply, o)
  local bkey = block_key(keys[k + 1])
  local till = 0
  for i = 1, n do
    local p = policy_at(pols, ix, i)
    local b = o + (i - 1) * 4
    if p[6] > 0 and p[9] == 0 and reply[b + 1] == 0 and
        reply[b + 4] ~= -1 then
      local t = strike(bkey, keys[k + i], p, now)
      if t > till then till = t end
    end
  end
  if till == 0 then return end
  till = set_block(bkey, till, now)
  if till == 0 then return end
  local wait = till - now
  for i = 1, n do
    local b = o + (i - 1) * 4
    reply[b + 2] = 0
    if reply[b + 3] < wait then reply[b + 3] = wait end
    if reply[b + 1] == 0 and reply[b + 4] ~= -1 and reply[b + 4] < wait then
      reply[b + 4] = wait
    end
  end
end

-- Phase one: evaluates the check without writing. Returns its record:
-- ev.all (1: every policy allows), ev.blocked, ev.striking (a denying
-- policy has a block), and per policy i the new state, its expiry and
-- whether the expiry is unchanged at ev[3i - 2], ev[3i - 1], ev[3i].
local function evaluate_check(keys, k, n, cost, pols, ix, now, reply, o)
  local till = prefetch(keys, k, block_key(keys[k + 1]), now)
  if cost >= 0 then
    if till > 0 then
      run_blocked(keys, k, n, cost, pols, ix, now, reply, o, till)
      return {all = 0, blocked = true}
    end
  end
  -- Sized for one policy's three values at once (no regrowth).
  local ev = {false, false, false, all = 1}
  for i = 1, n do
    local p = policy_at(pols, ix, i)
    local allowed, remaining, reset_after, retry_after, state, expires_at,
      same = p[1](keys[k + i], now, cost, p[2], p[3], p[4], p[5])
    if allowed == 0 and p[9] == 0 then
      ev.all = 0
      if p[6] > 0 then ev.striking = true end
    end
    local b = o + (i - 1) * 4
    reply[b + 1], reply[b + 2], reply[b + 3], reply[b + 4] =
      allowed, remaining, reset_after, retry_after
    ev[3 * i - 2], ev[3 * i - 1], ev[3 * i] = state, expires_at, same
  end
  return ev
end

-- Phase two, once the call's verdict `all` is known: an allowed charge
-- writes every state, a refund every state with usage to give back, a
-- denied charge counts its strikes. Returns whether a refund gave anything
-- back.
local function commit_check(keys, k, n, cost, pols, ix, now, reply, o, ev,
                            all)
  if ev.blocked then return false end
  if cost < 0 then
    local any = false
    for i = 1, n do
      if ev[3 * i - 2] then
        store(keys[k + i], ev[3 * i - 2], ev[3 * i - 1], now, ev[3 * i])
        any = true
      end
    end
    return any
  end
  if cost < 1 then return false end
  if all == 1 then
    for i = 1, n do
      -- Not a shadow policy's denial: its state stays.
      if reply[o + (i - 1) * 4 + 1] == 1 then
        store(keys[k + i], ev[3 * i - 2], ev[3 * i - 1], now, ev[3 * i])
      end
    end
  elseif ev.striking then
    run_strikes(keys, k, n, pols, ix, now, reply, o)
  end
  return false
end

-- One check on its own: writes reply[r + 1 ..]: all_allowed (for a
-- refund: whether any policy had usage to give back), then the four values
-- per policy. Returns the next free index. The usual check (one policy, a
-- charge) takes a direct path with the same outcome as the two phases,
-- without their record: about a tenth of a joined check's cost in Redis
-- (docs/benchmarks.md, "Blocks and several keys").
local function run_check(keys, k, n, cost, pols, ix, now, reply, r)
  if n == 1 and cost >= 1 then
    local key = keys[k + 1]
    local till = prefetch(keys, k, block_key(key), now)
    if till > 0 then
      run_blocked(keys, k, 1, cost, pols, ix, now, reply, r + 1, till)
      reply[r + 1] = 0
      return r + 5
    end
    local p = policy_at(pols, ix, 1)
    local allowed, remaining, reset_after, retry_after, state, expires_at,
      same = p[1](key, now, cost, p[2], p[3], p[4], p[5])
    reply[r + 1], reply[r + 2], reply[r + 3], reply[r + 4], reply[r + 5] =
      allowed, allowed, remaining, reset_after, retry_after
    if allowed == 1 then
      store(key, state, expires_at, now, same)
    elseif p[9] == 1 then
      reply[r + 1] = 1 -- a shadow denial: the check passes, nothing written
    elseif p[6] > 0 then
      run_strikes(keys, k, 1, pols, ix, now, reply, r + 1)
    end
    return r + 5
  end
  local ev = evaluate_check(keys, k, n, cost, pols, ix, now, reply, r + 1)
  local any = commit_check(keys, k, n, cost, pols, ix, now, reply, r + 1, ev,
    ev.all)
  if cost < 0 then
    reply[r + 1] = any and 1 or 0
  else
    reply[r + 1] = ev.all
  end
  return r + 1 + 4 * n
end

-- GCRA (docs/algorithms.md): state "<tat>". It expires at tat rounded up
-- to a whole EXPIRY_GRAIN_US, a function of the stored state: a write whose
-- tat rounds to the same instant leaves the TTL as it is (see store).
local function gcra(key, now, cost, limit, period_ms, capacity, T)
  local tau = capacity * T
  local base = now
  local tat = load_state(key, '^(%d+)$')
  if tat and tat > now then base = tat end
  if cost < 0 then
    -- A refund: the debt shrinks by -cost cells, never below none.
    if base == now then return 1, idiv(tau, T), 0, 0 end
    if -cost >= -idiv(now - base, T) then base = now else base = base + cost * T end
    local expires = -idiv(-base, EXPIRY_GRAIN_US) * EXPIRY_GRAIN_US
    local same = -idiv(-tat, EXPIRY_GRAIN_US) * EXPIRY_GRAIN_US == expires
    -- A debt beyond the burst (a lowered limit or burst, a clock step
    -- back) may remain after the refund: nothing is free then.
    local remaining = idiv(now + tau - base, T)
    if remaining < 0 then remaining = 0 end
    return 1, remaining, base - now, 0, fmt('%d', base), expires, same
  end
  local n = cost
  if n == 0 then n = 1 end
  local allow_at = base + n * T - tau
  if cost >= 1 and cost <= capacity and now >= allow_at then
    -- Allowed and charged: only the state after the charge is reported.
    local new_tat = base + cost * T
    local expires = -idiv(-new_tat, EXPIRY_GRAIN_US) * EXPIRY_GRAIN_US
    local same = tat ~= nil and
      -idiv(-tat, EXPIRY_GRAIN_US) * EXPIRY_GRAIN_US == expires
    return 1, idiv(now + tau - new_tat, T), new_tat - now, 0,
      fmt('%d', new_tat), expires, same
  end
  local remaining = idiv(now + tau - base, T)
  if remaining < 0 then remaining = 0 end
  local reset_after = base - now
  if cost > capacity then return 0, remaining, reset_after, -1 end
  if now < allow_at then return 0, remaining, reset_after, allow_at - now end
  return 1, remaining, reset_after, 0  -- a peek (cost 0) that would pass
end

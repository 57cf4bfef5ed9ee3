-- GCRA (docs/algorithms.md): state "<tat>".
local function gcra(key, now, cost, limit, period_ms, capacity, T)
  local tau = capacity * T
  local base = now
  local tat = load_state(key, '^(%d+)$')
  if tat and tat > now then base = tat end
  local n = cost
  if n == 0 then n = 1 end
  local allow_at = base + n * T - tau
  if cost >= 1 and cost <= capacity and now >= allow_at then
    -- Allowed and charged: only the state after the charge is reported.
    local new_tat = base + cost * T
    return 1, idiv(now + tau - new_tat, T), new_tat - now, 0,
      fmt('%d', new_tat), new_tat
  end
  local remaining = idiv(now + tau - base, T)
  if remaining < 0 then remaining = 0 end
  local reset_after = base - now
  if cost > capacity then return 0, remaining, reset_after, -1 end
  if now < allow_at then return 0, remaining, reset_after, allow_at - now end
  return 1, remaining, reset_after, 0  -- a peek (cost 0) that would pass
end

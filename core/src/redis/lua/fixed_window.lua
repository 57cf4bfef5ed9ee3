-- Fixed window (docs/algorithms.md): state "<window> <count>".
local function fixed_window(key, now, cost, limit, period_ms)
  local P = period_ms * 1000
  local w = idiv(now, P)
  local count = 0
  local sw, sc = load_state(key, '^(%d+) (%d+)$')
  -- The same window, or a newer one not far ahead (the clock stepped
  -- back). Any other window is of the past or of another period (the
  -- policy changed): its count does not carry.
  local same = sw ~= nil and (sw == w or (sw > w and sw - w <= max_ahead(P)))
  if same then w, count = sw, sc end
  local E = (w + 1) * P
  if cost < 0 then
    -- A refund: the window's count goes down by -cost, never below 0.
    if count == 0 then return 1, limit, 0, 0 end
    if -cost >= count then count = 0 else count = count + cost end
    local reset = 0
    if count > 0 then reset = E - now end
    -- count <= limit always (a charge needs count + cost <= limit).
    return 1, limit - count, reset, 0, fmt('%d %d', w, count), E, same
  end
  local remaining = limit - count
  if remaining < 0 then remaining = 0 end
  local reset_after = 0
  if count > 0 then reset_after = E - now end
  if cost > limit then return 0, remaining, reset_after, -1 end
  local need = cost
  if need == 0 then need = 1 end
  if count + need > limit then return 0, remaining, reset_after, E - now end
  if cost == 0 then return 1, remaining, reset_after, 0 end
  count = count + cost
  return 1, limit - count, E - now, 0, fmt('%d %d', w, count), E, same
end

-- Sliding-window counter (docs/algorithms.md): state
-- "<window> <curr> <prev>". The previous window is weighted in whole ms and
-- every comparison is multiplied through by Pm, so nothing rounds.
local function sliding_window(key, now, cost, limit, Pm)
  local P = Pm * 1000
  local w = idiv(now, P)
  local curr, prev = 0, 0
  local sw, sc, sp = load_state(key, '^(%d+) (%d+) (%d+)$')
  -- The state stays in its window: its expiry does not move.
  -- A window older than w - 1, or too far ahead to be a clock step back,
  -- is of the past or of another period (the policy changed): its counts
  -- do not carry.
  local ahead = sw ~= nil and sw > w and sw - w <= max_ahead(P)
  local same = sw ~= nil and (sw == w or ahead)
  if sw then
    if sw == w then
      curr, prev = sc, sp
    elseif sw == w - 1 then
      prev = sc
    elseif ahead then -- the clock stepped back: stay in that window
      w, curr, prev = sw, sc, sp
    end
  end
  local start = w * P
  local E = start + P
  -- Evaluated from the window's start if the clock is behind it; every
  -- duration is measured from the real now.
  local t = now
  if t < start then t = start end
  local rem = Pm - idiv(t - start, 1000) -- 1 .. Pm
  local cap = limit * Pm
  local refunded = false
  if cost < 0 and curr + prev > 0 then
    -- A refund: -cost units back from the current window's count, then
    -- from the previous one's, never below 0.
    local back = -cost
    if back >= curr then
      back, curr = back - curr, 0
    else
      back, curr = 0, curr - back
    end
    if back >= prev then prev = 0 else prev = prev - back end
    refunded = true
  end
  local used = prev * rem + curr * Pm
  local remaining = idiv(cap - used, Pm)
  if remaining < 0 then remaining = 0 end
  local reset_after = 0
  if curr > 0 then
    reset_after = E + P - now
  elseif prev > 0 then
    reset_after = E - now
  end
  if cost < 0 then
    if not refunded then return 1, remaining, reset_after, 0 end
    return 1, remaining, reset_after, 0, fmt('%d %d %d', w, curr, prev),
      E + P, same
  end
  if cost > limit then return 0, remaining, reset_after, -1 end
  local need = cost
  if need == 0 then need = 1 end
  if used + need * Pm > cap then
    -- The time until `need` fits with no further calls.
    local S = cap - (curr + need) * Pm
    if S >= 0 then -- prev > 0 here
      return 0, remaining, reset_after,
        start + (Pm - idiv(S, prev)) * 1000 - now
    end
    -- curr > 0 here, and the wait runs into the next window.
    return 0, remaining, reset_after,
      E + (Pm - idiv(cap - need * Pm, curr)) * 1000 - now
  end
  if cost == 0 then return 1, remaining, reset_after, 0 end
  curr = curr + cost
  remaining = idiv(cap - prev * rem - curr * Pm, Pm)
  if remaining < 0 then remaining = 0 end
  return 1, remaining, E + P - now, 0, fmt('%d %d %d', w, curr, prev), E + P,
    same
end

-- Token bucket (docs/algorithms.md): state "<tokens> <last>".
local function token_bucket(key, now, cost, limit, period_ms, C, T)
  local tokens, last = load_state(key, '^(%d+) (%d+)$')
  if not tokens then tokens, last = C, now end
  local t = now
  if last > t then t = last end
  local n = idiv(t - last, T)
  if n >= C - tokens then
    tokens, last = C, t
  else
    tokens, last = tokens + n, last + n * T
  end
  -- Durations run from the real now, which lies before t only if the
  -- clock stepped back behind the stored refill time.
  local skew = t - now
  local reset_after = 0
  if tokens < C then reset_after = (C - tokens) * T - (t - last) + skew end
  if cost < 0 then
    -- A refund: -cost tokens back, never above the capacity.
    if tokens == C then return 1, C, 0, 0 end
    -- Back to full forgets the partial refill time, as a refill does.
    if -cost >= C - tokens then
      tokens, last = C, t
    else
      tokens = tokens - cost
    end
    reset_after = 0
    if tokens < C then reset_after = (C - tokens) * T - (t - last) + skew end
    return 1, tokens, reset_after, 0, fmt('%d %d', tokens, last),
      last + (C - tokens) * T
  end
  if cost > C then return 0, tokens, reset_after, -1 end
  local need = cost
  if need == 0 then need = 1 end
  if tokens < need then
    return 0, tokens, reset_after, (need - tokens) * T - (t - last) + skew
  end
  if cost == 0 then return 1, tokens, reset_after, 0 end
  tokens = tokens - cost
  reset_after = 0
  if tokens < C then reset_after = (C - tokens) * T - (t - last) + skew end
  return 1, tokens, reset_after, 0,
    fmt('%d %d', tokens, last), last + (C - tokens) * T
end

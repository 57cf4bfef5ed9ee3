-- One policy: KEYS[1] its state; ARGV[1] nine numbers packed as
-- little-endian doubles (72 bytes): the cost, then the policy's limit,
-- period_ms, capacity, interval_us, block_us, strikes, strike_us and shadow
-- (the algorithm is the one this script is named after, and only its code
-- is in the script); then the pinned time. Packed, the numbers cost one
-- struct.unpack instead of nine tonumber calls, each a strtod (about 1 us
-- of Redis's time per check, docs/benchmarks.md). Every value is a whole
-- number under 2^53, so a double holds it exactly. Reply:
-- {all_allowed, allowed, remaining, reset_after_us, retry_after_us}, the
-- multi-policy layout with n = 1.
local function run_single(evaluate)
  local packed = ARGV[1]
  if #KEYS ~= 1 or #ARGV ~= 2 or #packed ~= 72 then
    return redis.error_reply(
      'ERR tollgate: expected 1 key and 2 arguments (72 bytes, the time)')
  end
  local cost, limit, period_ms, capacity, interval_us, block_us, strikes,
    strike_us, shadow = struct.unpack('<ddddddddd', packed)
  -- x % 1 is 0 only for a whole number (NaN and infinities give NaN).
  if cost % 1 ~= 0 or limit % 1 ~= 0 or period_ms % 1 ~= 0 or
      capacity % 1 ~= 0 or interval_us % 1 ~= 0 or block_us % 1 ~= 0 or
      strikes % 1 ~= 0 or strike_us % 1 ~= 0 or shadow % 1 ~= 0 then
    return redis.error_reply('ERR tollgate: the numbers must be integers')
  end
  local p = {evaluate, limit, period_ms, capacity, interval_us, block_us,
    strikes, strike_us, shadow}
  local reply = {0, 0, 0, 0, 0}
  run_check(KEYS, 0, 1, cost, {p}, nil, now_us(), reply, 0)
  return reply
end
